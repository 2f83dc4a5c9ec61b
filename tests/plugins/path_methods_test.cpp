// Path methods on a small MLP: completeness within the quadrature error (shrinking with steps), exact
// conductance against Neuron Integrated Gradients, neuron conductance against total conductance, and
// shared passes between methods.
#include <gtest/gtest.h>

#include <cmath>

#include "test_support.h"

using galvani::testing::run_config;
using galvani::testing::save_temp_tensor;

namespace {

// x [B, 6] → fc1 (6→8) → act (tanh) → fc2 (8→3); seeded weights.
std::string save_mlp() {
  torch::manual_seed(7);
  torch::jit::Module root("__torch__.Mlp");
  torch::jit::Module fc1("__torch__.Linear1"), act("__torch__.Tanh"), fc2("__torch__.Linear2");
  fc1.register_parameter("w", torch::randn({6, 8}, torch::kDouble), false);
  fc1.register_parameter("b", torch::randn({8}, torch::kDouble) * 0.1, false);
  fc1.define("def forward(self, x):\n  return torch.matmul(x, self.w) + self.b\n");
  act.define("def forward(self, x):\n  return torch.tanh(x)\n");
  fc2.register_parameter("w", torch::randn({8, 3}, torch::kDouble), false);
  fc2.register_parameter("b", torch::randn({3}, torch::kDouble) * 0.1, false);
  fc2.define("def forward(self, x):\n  return torch.matmul(x, self.w) + self.b\n");
  root.register_module("fc1", fc1);
  root.register_module("act", act);
  root.register_module("fc2", fc2);
  root.define("def forward(self, x):\n  return self.fc2.forward(self.act.forward(self.fc1.forward(x)))\n");
  const auto path = galvani::testing::temp_dir() + "/mlp.pt";
  root.save(path);
  return path;
}

const std::string& mlp() {
  static const std::string path = save_mlp();
  return path;
}

const std::string& mlp_inputs() {
  static const std::string path = [] {
    torch::manual_seed(11);
    return save_temp_tensor(torch::randn({5, 6}, torch::kDouble), "mlp_inputs.pt");
  }();
  return path;
}

std::string header(const std::string& baselines = "zeros") {
  return "[model]\npath = \"" + mlp() + "\"\n[data]\ninputs = \"" + mlp_inputs() + "\"\nbaselines = \"" + baselines +
         "\"\ntarget = \"predicted\"\n[run]\nprecision = \"double\"\nshard_size = 2\n";
}

std::string method(const std::string& plugin, const std::string& layers, int steps, const std::string& rule,
                   const std::string& extra = "") {
  return "[[methods]]\nplugin = \"" + plugin + "\"\nname = \"" + plugin + "-" + rule + "-" + std::to_string(steps) +
         "\"\nlayers = " + layers + "\nsteps = " + std::to_string(steps) + "\nrule = \"" + rule + "\"\n" + extra;
}

double max_abs_delta(const galvani::testing::Run& run, const std::string& name, const std::string& layer) {
  return run.get(name, layer).delta.abs().max().item<double>();
}

}  // namespace

TEST(PathMethods, ConductanceCompletenessShrinksWithStepsForEveryRule) {
  for (const auto& rule : galvani::quadrature_rules()) {
    std::string toml = header();
    for (int steps : {4, 16, 64}) toml += method("conductance", "[\"act\"]", steps, rule);
    const auto run = run_config(toml);
    const double d4 = max_abs_delta(run, "conductance-" + rule + "-4", "act");
    const double d16 = max_abs_delta(run, "conductance-" + rule + "-16", "act");
    const double d64 = max_abs_delta(run, "conductance-" + rule + "-64", "act");
    // The error shrinks at the rule's order: first for left/right Riemann sums (4× the steps, ~¼ the error),
    // second for midpoint and trapezoid (~1/16), spectrally for Gauss–Legendre on this smooth path.
    const bool first_order = rule == "riemann_left" || rule == "riemann_right";
    if (rule == "gausslegendre") {
      EXPECT_LT(d16, 1e-6) << rule;
      EXPECT_LT(d64, 1e-10) << rule;
    } else {
      EXPECT_LT(d16, d4 * (first_order ? 0.4 : 0.15)) << rule << ": " << d4 << " → " << d16;
      EXPECT_LT(d64, d16 * (first_order ? 0.4 : 0.15)) << rule << ": " << d16 << " → " << d64;
    }
  }
}

TEST(PathMethods, CompletenessHoldsAtEveryLayerCutOfOnePass) {
  const auto run = run_config(header("mean") + method("conductance", "[\"fc1\", \"act\", \"fc2\"]", 32, "gausslegendre"));
  for (const char* layer : {"fc1", "act", "fc2"}) EXPECT_LT(max_abs_delta(run, "conductance-gausslegendre-32", layer), 1e-9) << layer;
  // At the output layer total conductance is the logit difference of the target itself.
  const auto& out = run.get("conductance-gausslegendre-32", "fc2").values;
  const auto targets = run.plan.targets;
  const auto own = out.gather(1, targets.unsqueeze(1)).squeeze(1);
  EXPECT_TRUE(torch::allclose(own, run.result.f_input - run.result.f_baseline, 1e-9, 1e-9));
  EXPECT_EQ(run.plan.groups.size(), 1u);
}

TEST(PathMethods, NeuronIntegratedGradientsConvergesToExactConductance) {
  double previous = 1e9;
  double first = 0;
  for (int steps : {8, 32, 128, 512}) {
    const auto run = run_config(header() + method("conductance", "[\"act\"]", steps, "riemann_right") +
                                method("nig", "[\"act\"]", steps, "riemann_right"));
    const auto diff = (run.get("conductance-riemann_right-" + std::to_string(steps), "act").values -
                       run.get("nig-riemann_right-" + std::to_string(steps), "act").values)
                          .abs()
                          .max()
                          .item<double>();
    EXPECT_LT(diff, previous * 0.4) << steps;  // first order in the step width
    if (first == 0) first = diff;
    previous = diff;
    // NIG telescopes exactly along the chain rule's finite differences: its completeness is near exact.
    EXPECT_LT(max_abs_delta(run, "nig-riemann_right-" + std::to_string(steps), "act"), 0.05) << steps;
  }
  EXPECT_LT(previous, first / 30);
}

TEST(PathMethods, NeuronConductanceSumsToTotalConductanceOfTheUnit) {
  const auto run = run_config(header("mean") + method("conductance", "[\"act\"]", 16, "gausslegendre") +
                              "[[methods]]\nplugin = \"conductance\"\nname = \"neuron\"\nlayers = [\"act\"]\n"
                              "steps = 16\nrule = \"gausslegendre\"\nneurons = [0, 3, 7]\ninternal_batch = 7\n");
  const auto& total = run.get("conductance-gausslegendre-16", "act").values;  // [B, 8]
  const auto& per_feature = run.get("neuron", "act");                         // [B, 3, 6]
  ASSERT_EQ(per_feature.values.sizes(), (std::vector<int64_t>{5, 3, 6}));
  const auto sums = per_feature.values.sum(2);
  const std::vector<int64_t> units{0, 3, 7};
  for (std::size_t u = 0; u < units.size(); ++u)
    EXPECT_TRUE(torch::allclose(sums.select(1, u), total.select(1, units[u]), 1e-10, 1e-10)) << units[u];
}

TEST(PathMethods, FiveMethodsShareOnePass) {
  const auto run = run_config(header() + method("conductance", "[\"act\"]", 20, "gausslegendre") +
                              method("nig", "[\"act\"]", 20, "gausslegendre") +
                              method("internal-influence", "[\"act\"]", 20, "gausslegendre") +
                              "[[methods]]\nplugin = \"gradient-x-activation\"\nlayers = [\"act\"]\n"
                              "[[methods]]\nplugin = \"activation\"\nlayers = [\"act\", \"fc1\"]\n");
  ASSERT_EQ(run.plan.groups.size(), 1u);
  EXPECT_EQ(run.plan.groups[0].methods.size(), 5u);
  EXPECT_TRUE(run.plan.groups[0].tangents);
  int passes = 0;
  for (const auto& [stage, seconds] : run.result.timings) passes += stage.rfind("pass [", 0) == 0;
  EXPECT_EQ(passes, 1);
}

TEST(PathMethods, EndpointMethodsMatchHandComputedValues) {
  const auto run = run_config(header("mean") + "[[methods]]\nplugin = \"activation\"\nlayers = [\"act\"]\n"
                                               "[[methods]]\nplugin = \"gradient-x-activation\"\nlayers = [\"act\"]\n"
                                               "[[methods]]\nplugin = \"gradient-x-delta\"\nlayers = [\"act\"]\n");
  auto model = torch::jit::load(mlp());
  const auto x = run.plan.inputs;
  const auto xb = run.plan.baselines;
  const auto w1 = model.attr("fc1").toModule().attr("w").toTensor();
  const auto b1 = model.attr("fc1").toModule().attr("b").toTensor();
  const auto w2 = model.attr("fc2").toModule().attr("w").toTensor();
  const auto y = torch::tanh(x.matmul(w1) + b1);
  const auto yb = torch::tanh(xb.matmul(w1) + b1);
  const auto grad = w2.t().index_select(0, run.plan.targets);  // ∂F/∂y = row of W2ᵀ for the target
  EXPECT_TRUE(torch::allclose(run.get("activation", "act").values, y, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(run.get("gradient-x-activation", "act").values, grad * y, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(run.get("gradient-x-delta", "act").values, grad * (y - yb), 1e-12, 1e-12));
  // The layer after `act` is linear, so gradient × (y − y′) is complete there.
  EXPECT_LT(run.get("gradient-x-delta", "act").delta.abs().max().item<double>(), 1e-12);
}

TEST(PathMethods, InteriorGradientPathStartsAtZero) {
  const auto run = run_config(header("mean") +
                              "[[methods]]\nplugin = \"conductance\"\nname = \"ig-path\"\nlayers = [\"act\"]\n"
                              "path = \"interior-gradient\"\nsteps = 32\nrule = \"gausslegendre\"\n");
  // Its completeness is against F(0), not F(mean baseline).
  const auto& r = run.get("ig-path", "act");
  auto model = galvani::testing::load_model(mlp());
  const auto f0 = model->forward(torch::zeros_like(run.plan.inputs)).gather(1, run.plan.targets.unsqueeze(1)).squeeze(1);
  const auto sums = r.values.sum(1);
  EXPECT_TRUE(torch::allclose(sums, run.result.f_input - f0, 1e-9, 1e-9));
}

TEST(PathMethods, ProbabilityOutputAndPerInputTargetsKeepCompleteness) {
  const auto targets = save_temp_tensor(torch::tensor({0, 1, 2, 0, 1}, torch::kLong), "targets.pt");
  const auto toml = "[model]\npath = \"" + mlp() + "\"\noutput = \"probability\"\n[data]\ninputs = \"" + mlp_inputs() +
                    "\"\ntarget = \"" + targets + "\"\n[run]\nprecision = \"double\"\n" +
                    method("conductance", "[\"act\"]", 64, "gausslegendre");
  const auto run = run_config(toml);
  EXPECT_TRUE(torch::equal(run.plan.targets, torch::tensor({0, 1, 2, 0, 1}, torch::kLong)));
  EXPECT_LT(max_abs_delta(run, "conductance-gausslegendre-64", "act"), 1e-8);
  // F is a probability: F(x) within (0, 1).
  EXPECT_GT(run.result.f_input.min().item<double>(), 0.0);
  EXPECT_LT(run.result.f_input.max().item<double>(), 1.0);
}

TEST(PathMethods, FilterConductanceSumsToTheFiltersTotalConductance) {
  // On the tiny CNN: neuron conductance of whole filters of conv2, summed over input features, equals total
  // conductance summed over the filter's spatial positions (same quadrature, so exactly).
  torch::manual_seed(4);
  const auto inputs = save_temp_tensor(torch::rand({3, 1, 8, 8}), "cnn_inputs.pt");
  const auto toml = "[model]\npath = \"" + galvani::testing::fixture("tiny_cnn_scripted.pt") +
                    "\"\ndtype = \"float64\"\n[data]\ninputs = \"" + inputs + "\"\n[run]\nprecision = \"double\"\n" +
                    method("conductance", "[\"conv2\"]", 24, "gausslegendre", "unit = \"filter\"\n") +
                    "[[methods]]\nplugin = \"conductance\"\nname = \"filters\"\nlayers = [\"conv2\"]\nsteps = 24\n"
                    "rule = \"gausslegendre\"\nfilters = [1, 3]\n";
  const auto run = run_config(toml);
  const auto& per_filter = run.get("conductance-gausslegendre-24", "conv2").values;  // [3, 4] after unit = filter
  ASSERT_EQ(per_filter.sizes(), (std::vector<int64_t>{3, 4}));
  const auto& maps = run.get("filters", "conv2").values;  // [3, 2, 1, 8, 8]
  ASSERT_EQ(maps.sizes(), (std::vector<int64_t>{3, 2, 1, 8, 8}));
  const auto sums = maps.reshape({3, 2, -1}).sum(2);
  EXPECT_TRUE(torch::allclose(sums.select(1, 0), per_filter.select(1, 1), 1e-10, 1e-10));
  EXPECT_TRUE(torch::allclose(sums.select(1, 1), per_filter.select(1, 3), 1e-10, 1e-10));
}

// Endpoints with one baseline for all inputs compute it once per distinct target; what they return is what
// computing it for every input gives (input gradients force that), at α = 0 as at α = 1.
TEST(PathMethods, SharedBaselineEndpointsEqualTheBaselinePerInput) {
  auto model = galvani::testing::load_model(mlp());
  torch::manual_seed(12);
  const auto x = torch::randn({7, 6}, torch::kDouble);
  const auto xb = torch::full({7, 6}, 0.3, torch::kDouble);
  const auto targets = torch::tensor({2, 0, 2, 1, 0, 2, 2}, torch::kLong);
  galvani::Objective objective;
  objective.mode = galvani::OutputMode::Probability;  // ∂F/∂y(x′) differs between targets
  galvani::PathPassSpec spec;
  spec.layers = {"fc1", "act"};
  spec.internal_batch = 3;  // the K + B rows cross chunk boundaries
  const auto shared = galvani::compute_path_pass(*model, spec, x, xb, targets, objective);
  spec.input_grads = true;
  const auto per_input = galvani::compute_path_pass(*model, spec, x, xb, targets, objective);
  ASSERT_EQ(shared.f.sizes(), (std::vector<std::int64_t>{2, 7}));
  EXPECT_TRUE(torch::allclose(shared.f, per_input.f, 1e-12, 1e-14));
  for (const auto& layer : spec.layers) {
    SCOPED_TRACE(layer);
    const auto& a = shared.layer(layer);
    const auto& b = per_input.layer(layer);
    ASSERT_EQ(a.act.sizes(), b.act.sizes());
    EXPECT_TRUE(torch::allclose(a.act, b.act, 1e-12, 1e-14));
    EXPECT_TRUE(torch::allclose(a.grad, b.grad, 1e-12, 1e-14));
  }
  // The baseline's gradients really differ by target (what one row for all inputs would get wrong).
  EXPECT_FALSE(torch::allclose(shared.layer("act").grad[0][0], shared.layer("act").grad[0][1]));
}
