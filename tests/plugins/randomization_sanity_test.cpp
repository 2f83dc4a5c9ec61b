// Parameter randomisation: Model::randomized redraws only the named modules (reproducibly, on a copy), and the
// cascading sanity check tells a method that ignores the randomised part (the activation below it: rank
// correlation exactly 1) from one that depends on it (gradient × activation: much lower).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "galvani/tap.h"
#include "test_support.h"

using galvani::testing::run_config;
using galvani::testing::save_temp_tensor;

namespace {

std::string mlp() {
  torch::manual_seed(7);
  torch::jit::Module root("__torch__.RandMlp");
  const std::vector<std::pair<std::string, std::pair<int, int>>> dense{{"fc1", {4, 16}}, {"fc2", {16, 3}}};
  for (const auto& [name, shape] : dense) {
    torch::jit::Module m("__torch__.RandMlp_" + name);
    m.register_parameter("weight", torch::randn({shape.first, shape.second}, torch::kDouble), false);
    m.register_parameter("bias", torch::randn({shape.second}, torch::kDouble), false);
    m.define("def forward(self, x):\n  return torch.matmul(x, self.weight) + self.bias\n");
    root.register_module(name, m);
  }
  torch::jit::Module act("__torch__.RandMlp_act");
  act.define("def forward(self, x):\n  return torch.relu(x)\n");
  root.register_module("act", act);
  root.define("def forward(self, x):\n  return self.fc2.forward(self.act.forward(self.fc1.forward(x)))\n");
  const auto path = galvani::testing::temp_dir() + "/rand_mlp.pt";
  root.save(path);
  return path;
}

}  // namespace

TEST(Randomized, RedrawsOnlyTheNamedModulesReproducibly) {
  const auto model = galvani::testing::load_model(mlp());
  torch::manual_seed(1);
  const auto x = torch::randn({5, 4}, torch::kDouble);
  const auto before = model->forward(x);
  const auto a = model->randomized({"fc2"}, 3), b = model->randomized({"fc2"}, 3), c = model->randomized({"fc2"}, 4);
  EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
  EXPECT_GT((a->forward(x) - c->forward(x)).abs().max().item<double>(), 1e-3);
  EXPECT_GT((a->forward(x) - before).abs().max().item<double>(), 1e-3);
  EXPECT_TRUE(torch::equal(model->forward(x), before));  // the original is untouched
  // Below fc2 nothing changed: the activation after fc1 is the same.
  std::vector<torch::Tensor> original, randomised;
  model->tapped({"act"})->forward(x, galvani::taps::capture(original));
  a->tapped({"act"})->forward(x, galvani::taps::capture(randomised));
  EXPECT_TRUE(torch::equal(original[0], randomised[0]));
  try {
    model->randomized({"fc3"}, 0);
    FAIL() << "unknown module accepted";
  } catch (const galvani::ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("fc3"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("fc1"), std::string::npos);  // the valid names
  }
}

TEST(RandomizationSanity, ActivationBelowTheRandomisedModuleIsUnchangedGradientsAreNot) {
  torch::manual_seed(2);
  const auto x = torch::randn({12, 4}, torch::kDouble);
  const auto r = run_config("[model]\npath = \"" + mlp() + "\"\n[data]\ninputs = \"" + save_temp_tensor(x, "rand_x.pt") +
                            "\"\n[[methods]]\nplugin = \"activation\"\nlayers = [\"act\"]\n"
                            "[[methods]]\nplugin = \"gradient-x-activation\"\nlayers = [\"act\"]\n"
                            "[[evaluators]]\nplugin = \"randomization-sanity\"\nmodules = [\"fc2\", \"fc1\"]\ninputs = 8\n");
  std::map<std::string, std::map<std::string, double>> m;
  for (const auto& metric : r.result.evaluations.at(0).second.metrics) m[metric.method][metric.name] = metric.value;
  const auto& curves = r.result.evaluations.at(0).second.curves;
  // Step 1 randomises fc2 only: the activation after fc1 keeps its ranks exactly; step 2 (fc1 too) does not.
  const auto curve = std::find_if(curves.begin(), curves.end(), [](const galvani::Curve& c) {
    return c.method == "activation" && c.name == "spearman (abs)";
  });
  ASSERT_NE(curve, curves.end());
  ASSERT_EQ(curve->y.size(), 2u);
  EXPECT_NEAR(curve->y[0], 1.0, 1e-12);
  EXPECT_LT(curve->y[1], 0.9);
  EXPECT_LT(m.at("gradient-x-activation").at("spearman_abs_final"), 0.9);
  EXPECT_LT(m.at("gradient-x-activation").at("spearman_abs_mean"), m.at("activation").at("spearman_abs_mean"));
}

// One method instance explains every model it is run on: evaluators rerun it on randomised copies, each freed
// before the next is drawn (so the next may take the freed one's address). Every rerun must equal a fresh plan's
// result on the same model. pathway-gradient once kept its prepared forward keyed by the model's address and
// then explained the first randomised model at every later step.
TEST(RandomizationSanity, MethodsRerunOnSuccessiveModelsExplainEachOfThem) {
  torch::manual_seed(2);
  const auto x = torch::randn({6, 4}, torch::kDouble);
  const auto toml = "[model]\npath = \"" + mlp() + "\"\n[data]\ninputs = \"" + save_temp_tensor(x, "succ_x.pt") +
                    "\"\n[[methods]]\nplugin = \"pathway-gradient\"\nname = \"pathway-ops\"\nsparsity = 0.5\n"
                    "[[methods]]\nplugin = \"pathway-gradient\"\nname = \"pathway-layers\"\nlayers = [\"act\"]\n"
                    "sparsity = 0.5\n[[methods]]\nplugin = \"gradient-x-activation\"\nlayers = [\"act\"]\n";
  const auto cfg = galvani::core::parse_config_string(toml, ".");
  auto plan = galvani::core::make_plan(cfg, galvani::testing::plugins());
  const auto trained = plan.model;
  std::vector<std::vector<torch::Tensor>> per_seed;
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    plan.model.reset();  // the previous randomised model is freed before the next exists
    plan.model = trained->randomized({""}, seed);
    const auto rerun = galvani::core::execute(plan);
    auto fresh = galvani::core::make_plan(cfg, galvani::testing::plugins());
    fresh.model = plan.model;
    const auto expected = galvani::core::execute(fresh);
    ASSERT_EQ(rerun.results.size(), 3u);
    ASSERT_EQ(expected.results.size(), 3u);
    std::vector<torch::Tensor> values;
    for (std::size_t i = 0; i < rerun.results.size(); ++i) {
      SCOPED_TRACE(rerun.results[i].method + " at " + rerun.results[i].layer + ", seed " + std::to_string(seed));
      EXPECT_EQ(rerun.results[i].method, expected.results[i].method);
      EXPECT_EQ(rerun.results[i].layer, expected.results[i].layer);
      EXPECT_TRUE(torch::equal(rerun.results[i].values, expected.results[i].values));
      values.push_back(rerun.results[i].values);
    }
    per_seed.push_back(values);
  }
  // The models really differ: every method's attributions change from one seed to the next.
  for (std::size_t s = 1; s < per_seed.size(); ++s)
    for (std::size_t i = 0; i < per_seed[s].size(); ++i)
      EXPECT_GT((per_seed[s][i] - per_seed[s - 1][i]).abs().max().item<double>(), 1e-6) << "method " << i << ", seed " << s + 1;
}
