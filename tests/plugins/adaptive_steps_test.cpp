// steps = "auto": each input's path refined level by level until its attributions stop moving. It meets its
// tolerance against converged values, spends fewer points where the integrand is smooth than where ReLUs kink it,
// takes each row from the level where it converged (the same numbers as fixed steps there), and is refused where
// there is no shared pass to refine.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "test_support.h"

using galvani::testing::run_config;
using galvani::testing::run_error;
using galvani::testing::save_temp_tensor;

namespace {

// x [B, 6] → fc1 (6→16) → act → fc2 (16→16) → act2 → fc3 (16→3), float64, seeded weights; both activations are
// tanh (smooth along any path) or relu (kinks wherever a unit crosses zero between x′ and x).
std::string save_mlp(const std::string& act_source, const std::string& name) {
  torch::manual_seed(3);
  torch::jit::Module root("__torch__.Mlp");
  const auto linear = [&](const std::string& n, int64_t in, int64_t out) {
    torch::jit::Module fc("__torch__." + n);
    fc.register_parameter("w", torch::randn({in, out}, torch::kDouble) / std::sqrt(static_cast<double>(in)), false);
    fc.register_parameter("b", torch::randn({out}, torch::kDouble) * 0.5, false);
    fc.define("def forward(self, x):\n  return torch.matmul(x, self.w) + self.b\n");
    root.register_module(n, fc);
  };
  const auto activation = [&](const std::string& n) {
    torch::jit::Module act("__torch__." + n);
    act.define("def forward(self, x):\n  return " + act_source + "\n");
    root.register_module(n, act);
  };
  linear("fc1", 6, 16);
  activation("act");
  linear("fc2", 16, 16);
  activation("act2");
  linear("fc3", 16, 3);
  root.define("def forward(self, x):\n  return self.fc3.forward(self.act2.forward(self.fc2.forward(self.act.forward("
              "self.fc1.forward(x)))))\n");
  const auto path = galvani::testing::temp_dir() + "/" + name + ".pt";
  root.save(path);
  return path;
}

const std::string& inputs() {
  static const std::string path = [] {
    torch::manual_seed(11);
    return save_temp_tensor(torch::randn({12, 6}, torch::kDouble) * 2, "adaptive_inputs.pt");
  }();
  return path;
}

std::string header(const std::string& model) {
  return "[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" + inputs() +
         "\"\nbaselines = \"zeros\"\ntarget = \"predicted\"\n[run]\nprecision = \"double\"\nshard_size = 5\n";
}

std::string entry(const std::string& name, const std::string& plugin, const std::string& steps,
                  const std::string& extra = "") {
  return "[[methods]]\nname = \"" + name + "\"\nplugin = \"" + plugin + "\"\nlayers = [\"act\"]\nsteps = " + steps +
         "\nrule = \"gausslegendre\"\n" + extra;
}

// Per input: Σ_units |a − b| / |F(x) − F(x′)|.
torch::Tensor relative_l1(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& df) {
  return (a - b).abs().flatten(1).sum(1) / df.abs();
}

}  // namespace

TEST(AdaptiveSteps, MeetsItsToleranceAgainstConvergedValues) {
  // nig's segment sums converge like 1/n on any model, integrated gradients with Gauss–Legendre nodes much faster
  // on the smooth one: both meet the tolerance, against 8,192 fixed steps.
  for (const auto& [model, act] : {std::pair{save_mlp("torch.tanh(x)", "tanh_mlp"), "tanh"},
                                   std::pair{save_mlp("torch.relu(x)", "relu_mlp"), "relu"}}) {
    for (const auto& [plugin, layer] : {std::pair{"nig", "act"}, std::pair{"integrated-gradients", "input"}}) {
      for (double tol : {1e-1, 2e-2}) {
        std::ostringstream keys;
        keys << "tolerance = " << tol << "\nmax_steps = 2048\n";
        const auto run = run_config(header(model) + entry("auto", plugin, "\"auto\"", keys.str()) +
                                    entry("ref", plugin, "8192"));
        const auto& a = run.get("auto", layer);
        const auto df = run.result.f_input - run.result.f_baseline;
        const auto err = relative_l1(a.values, run.get("ref", layer).values, df);
        EXPECT_LE(err.max().item<double>(), tol) << act << " " << plugin << " tolerance " << tol << ": " << err;
        // Every input's points: the levels it ran (8, 16, ... steps, each with the two endpoints).
        const auto points = a.extras.at("points");
        ASSERT_EQ(points.sizes(), (std::vector<int64_t>{12}));
        EXPECT_GE(points.min().item<int64_t>(), 10 + 18) << act;
        EXPECT_LT(points.max().item<int64_t>(), 2 * 2048 + 2 * 9) << act;
      }
    }
  }
}

TEST(AdaptiveSteps, SmoothPathsStopEarlierThanKinkedOnes) {
  const auto keys = "tolerance = 1e-2\nmax_steps = 1024\n";
  const auto smooth = run_config(header(save_mlp("torch.tanh(x)", "tanh_mlp2")) +
                                 entry("auto", "integrated-gradients", "\"auto\"", keys));
  const auto kinked = run_config(header(save_mlp("torch.relu(x)", "relu_mlp2")) +
                                 entry("auto", "integrated-gradients", "\"auto\"", keys));
  const auto ps = smooth.get("auto", "input").extras.at("points").to(torch::kDouble);
  const auto pk = kinked.get("auto", "input").extras.at("points").to(torch::kDouble);
  // Gauss–Legendre on an analytic integrand: 8 and 16 steps already agree for every input.
  EXPECT_EQ(ps.max().item<double>(), 10 + 18) << ps;
  EXPECT_GT(pk.mean().item<double>(), 4 * ps.mean().item<double>()) << pk;
  // The points differ between inputs: refinement is per input, not per run.
  EXPECT_LT(pk.min().item<double>(), pk.max().item<double>()) << pk;
}

TEST(AdaptiveSteps, EachRowIsTheLevelWhereItConverged) {
  const auto model = save_mlp("torch.relu(x)", "relu_mlp3");
  // A tolerance every input meets at once: every row is level 2's (16 steps), computed over all rows of the shard.
  const auto loose = run_config(header(model) + entry("auto", "nig", "\"auto\"", "tolerance = 1.0\n") +
                                entry("fixed16", "nig", "16"));
  EXPECT_TRUE(torch::equal(loose.get("auto", "act").values, loose.get("fixed16", "act").values));
  EXPECT_TRUE(torch::equal(loose.get("auto", "act").delta, loose.get("fixed16", "act").delta));
  EXPECT_TRUE(loose.get("auto", "act").extras.at("points").eq(10 + 18).all().item<bool>());
  // Two levels: the last takes every row.
  const auto two = run_config(header(model) + entry("auto", "nig", "\"auto\"", "min_steps = 16\nmax_steps = 32\n") +
                              entry("fixed32", "nig", "32"));
  EXPECT_TRUE(torch::allclose(two.get("auto", "act").values, two.get("fixed32", "act").values, 1e-12, 1e-12));
  EXPECT_TRUE(two.get("auto", "act").extras.at("points").eq(18 + 34).all().item<bool>());
  // In between, each row equals the fixed-steps result of the level it stopped at.
  const auto mid = run_config(header(model) +
                              entry("auto", "integrated-gradients", "\"auto\"", "tolerance = 1e-1\nmax_steps = 64\n") +
                              entry("s16", "integrated-gradients", "16") + entry("s32", "integrated-gradients", "32") +
                              entry("s64", "integrated-gradients", "64"));
  const auto points = mid.get("auto", "input").extras.at("points");
  const auto values = mid.get("auto", "input").values;
  const std::map<int64_t, std::string> level_of_points{{28, "s16"}, {28 + 34, "s32"}, {28 + 34 + 66, "s64"}};
  std::set<int64_t> seen;
  for (int64_t i = 0; i < values.size(0); ++i) {
    const auto p = points[i].item<int64_t>();
    ASSERT_TRUE(level_of_points.count(p)) << p;
    seen.insert(p);
    EXPECT_TRUE(torch::allclose(values[i], mid.get(level_of_points.at(p), "input").values[i], 1e-12, 1e-12)) << i;
  }
  EXPECT_GE(seen.size(), 2u) << "every input stopped at the same level: the case checks little";
}

TEST(AdaptiveSteps, MethodsOnOnePassShareItsLevels) {
  const auto model = save_mlp("torch.relu(x)", "relu_mlp4");
  const auto run = run_config(header(model) + entry("nig", "nig", "\"auto\"") +
                              entry("ii", "internal-influence", "\"auto\"") +
                              entry("gxa", "gradient-x-activation", "50"));
  // One shared pass: both path methods and the endpoint method, the same points per input.
  ASSERT_EQ(run.plan.groups.size(), 1u);
  EXPECT_NE(run.plan.groups[0].key.find("steps=auto (tolerance 0.2, 8 to 512 steps)"), std::string::npos)
      << run.plan.groups[0].key;
  EXPECT_TRUE(torch::equal(run.get("nig", "act").extras.at("points"), run.get("ii", "act").extras.at("points")));
  EXPECT_NE(run.plan.describe().find("up to 1030 points per input (levels of up to 514 points"), std::string::npos) << run.plan.describe();
  // The endpoint method is exact at any level.
  const auto fixed = run_config(header(model) + entry("gxa", "gradient-x-activation", "50"));
  EXPECT_TRUE(torch::allclose(run.get("gxa", "act").values, fixed.get("gxa", "act").values, 1e-14, 1e-14));
}

TEST(AdaptiveSteps, BadKeysAreClearErrors) {
  const auto h = header(save_mlp("torch.relu(x)", "relu_mlp5"));
  EXPECT_EQ(run_error(h + entry("a", "nig", "\"many\"")),
            "methods[0].steps: expected an integer or \"auto\", got \"many\"");
  EXPECT_EQ(run_error(h + entry("a", "nig", "32", "tolerance = 1e-3\n")),
            "methods[0].tolerance: only with steps = \"auto\" (it sets how far each input's path is refined)");
  EXPECT_EQ(run_error(h + entry("a", "nig", "\"auto\"", "min_steps = 16\nmax_steps = 20\n")),
            "methods[0].max_steps: 20 leaves no level after min_steps = 16 to compare with; give at least 32");
  EXPECT_NE(run_error(h + entry("a", "nig", "\"auto\"", "tolerance = 0\n")).find("methods[0].tolerance"),
            std::string::npos);
  EXPECT_EQ(run_error(h + entry("a", "deeplift", "\"auto\"")),
            "methods[0].steps: \"auto\" refines the shared pass along a path, and method 'a' runs passes of its "
            "own; give a number of steps");
  EXPECT_EQ(run_error(h + entry("a", "gradient-x-activation", "\"auto\"")),
            "methods[0].steps: \"auto\" refines the shared pass along a path, and method 'a' needs its endpoints "
            "only; give a number of steps");
  EXPECT_NE(run_error(h + entry("a", "conductance", "\"auto\"", "neurons = [0]\n")).find("chosen neurons"),
            std::string::npos);
}
