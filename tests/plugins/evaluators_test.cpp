// The ablation evaluators on models small enough that every metric is known by hand: a linear network (path
// methods lose nothing to ablation), F = Σ wⱼaⱼ after a ReLU (single-unit ablation scores are wⱼaⱼ), a
// two-class readout with a constant competitor (labels flip after a known number of units), and a conv layer
// (a filter's ablation zeroes its whole channel).
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "galvani/tensor_io.h"
#include "test_support.h"

using galvani::testing::run_config;
using galvani::testing::save_temp_tensor;
using torch::Tensor;

namespace {

// x [B, I] → fc1 (matmul + bias) → act (relu, or identity when `relu` is false) → fc2 → [B, C]; float64
// parameters, so the run is float64 throughout.
std::string save_mlp(const std::string& name, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2,
                     bool relu = true) {
  torch::jit::Module root("__torch__.Eval_" + name);
  const std::vector<std::tuple<std::string, Tensor, Tensor>> dense{{"fc1", w1, b1}, {"fc2", w2, b2}};
  for (const auto& [n, w, b] : dense) {
    torch::jit::Module m("__torch__.Eval_" + name + "_" + n);
    m.register_parameter("w", w.to(torch::kDouble), false);
    m.register_parameter("b", b.to(torch::kDouble), false);
    m.define("def forward(self, x):\n  return torch.matmul(x, self.w) + self.b\n");
    root.register_module(n, m);
  }
  torch::jit::Module act("__torch__.Eval_" + name + "_act");
  act.define(relu ? "def forward(self, x):\n  return torch.relu(x)\n" : "def forward(self, x):\n  return x * 1.0\n");
  root.register_module("act", act);
  root.define("def forward(self, x):\n  return self.fc2.forward(self.act.forward(self.fc1.forward(x)))\n");
  const auto path = galvani::testing::temp_dir() + "/" + name + ".pt";
  root.save(path);
  return path;
}

galvani::testing::Run run(const std::string& model, const Tensor& x, const std::string& methods,
                          const std::string& evaluators, const std::string& data = "") {
  return run_config("[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" + save_temp_tensor(x, "eval_x.pt") +
                    "\"\n" + data + "\n" + methods + evaluators);
}

// metric name → value for (evaluator, method, layer).
std::map<std::string, double> metrics(const galvani::testing::Run& r, const std::string& evaluator,
                                      const std::string& method, const std::string& layer) {
  std::map<std::string, double> out;
  for (const auto& [name, e] : r.result.evaluations)
    if (name == evaluator)
      for (const auto& m : e.metrics)
        if (m.method == method && m.layer == layer) out[m.name] = m.value;
  return out;
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ma += a[i] / a.size(), mb += b[i] / b.size();
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    sab += (a[i] - ma) * (b[i] - mb), saa += (a[i] - ma) * (a[i] - ma), sbb += (b[i] - mb) * (b[i] - mb);
  return sab / std::sqrt(saa * sbb);
}

const char* kLayerMethods =
    "[[methods]]\nplugin = \"conductance\"\nlayers = [\"act\"]\nsteps = 16\n"
    "[[methods]]\nplugin = \"gradient-x-delta\"\nlayers = [\"act\"]\n"
    "[[methods]]\nplugin = \"gradient-x-activation\"\nlayers = [\"act\"]\n"
    "[[methods]]\nplugin = \"activation\"\nlayers = [\"act\"]\n";

}  // namespace

// A linear network: every path method's attributions are exact, so ablating the top 10 % (here 2 of 20 units,
// by |a(x) − a(x′)|) to the reference changes F by exactly the sum of their attributions.
TEST(Evaluators, LinearModelHasNoAblationSubsetOrCompletenessError) {
  torch::manual_seed(1);
  const auto model = save_mlp("linear", torch::randn({5, 20}), torch::randn({20}), torch::randn({20, 3}),
                              torch::randn({3}), /*relu=*/false);
  const auto x = torch::randn({6, 5}, torch::kDouble);
  const auto r = run(model, x, kLayerMethods,
                     "[[evaluators]]\nplugin = \"ablation-subset\"\n[[evaluators]]\nplugin = \"completeness\"\n",
                     "baselines = \"mean\"");
  for (const std::string m : {"conductance", "gradient-x-delta"}) {
    const auto subset = metrics(r, "ablation-subset", m, "act");
    EXPECT_LT(subset.at("mean_abs_error"), 1e-9) << m;
    EXPECT_GT(subset.at("mean_abs_change"), 1e-3) << m;  // the ablation did change F
    EXPECT_LT(metrics(r, "completeness", m, "act").at("max_abs_error"), 1e-9) << m;
  }
  // gradient × activation is exact for F(x) − F(0), not for the ablation to the mean baseline: a real error.
  EXPECT_GT(metrics(r, "ablation-subset", "gradient-x-activation", "act").at("mean_abs_error"), 1e-3);
  // `activation` has no completeness delta: it is listed as skipped, with no metrics.
  EXPECT_TRUE(metrics(r, "completeness", "activation", "act").empty());
  bool listed = false;
  for (const auto& [name, e] : r.result.evaluations)
    for (const auto& t : e.tables)
      if (name == "completeness" && t.name == "skipped")
        for (const auto& row : t.rows) listed |= std::get<std::string>(row[0]) == "activation";
  EXPECT_TRUE(listed);
}

// F = Σⱼ w_{j,c} aⱼ + b_c after the ReLU: zeroing unit j changes F by exactly w_{j,c}·aⱼ, which is what
// gradient × activation reports, so the correlation is 1; `activation` ranks by aⱼ and correlates as computed here.
TEST(Evaluators, AblationCorrelationAndSignAgreementMatchHandComputedScores) {
  torch::manual_seed(2);
  const auto w1 = torch::randn({3, 6}), b1 = torch::randn({6}) + 0.8;
  const auto w2 = torch::randn({6, 2}), b2 = torch::randn({2});
  const auto model = save_mlp("readout", w1, b1, w2, b2);
  const auto x = torch::randn({5, 3}, torch::kDouble);
  const auto r = run(model, x, kLayerMethods,
                     "[[evaluators]]\nplugin = \"ablation-correlation\"\ntop_k = 6\n"
                     "[[evaluators]]\nplugin = \"sign-agreement\"\ntop_k = 6\n");
  EXPECT_NEAR(metrics(r, "ablation-correlation", "gradient-x-activation", "act").at("pearson_mean"), 1.0, 1e-9);

  const auto a = torch::relu(torch::matmul(x, w1.to(torch::kDouble)) + b1.to(torch::kDouble));
  const auto targets = r.plan.targets;
  std::vector<double> correlations, agreements;
  for (std::int64_t i = 0; i < x.size(0); ++i) {
    std::vector<double> act, score;
    double sum = 0, sum_abs = 0;
    for (std::int64_t j = 0; j < 6; ++j) {
      act.push_back(a[i][j].item<double>());
      score.push_back(w2[j][targets[i].item<std::int64_t>()].item<double>() * a[i][j].item<double>());
      sum += score.back();
      sum_abs += std::abs(score.back());
    }
    const double p = pearson(act, score);
    if (std::isfinite(p)) correlations.push_back(p);
    if (sum_abs > 0) agreements.push_back(std::abs(sum) / sum_abs);
  }
  double mean_p = 0, mean_a = 0;
  for (double p : correlations) mean_p += p / correlations.size();
  for (double v : agreements) mean_a += v / agreements.size();
  const auto act_metrics = metrics(r, "ablation-correlation", "activation", "act");
  EXPECT_NEAR(act_metrics.at("pearson_mean"), mean_p, 1e-9);
  EXPECT_EQ(act_metrics.at("inputs"), static_cast<double>(correlations.size()));
  // With top_k = all units, every method sees the same scores.
  EXPECT_NEAR(metrics(r, "sign-agreement", "activation", "act").at("mean"), mean_a, 1e-9);
  EXPECT_NEAR(metrics(r, "sign-agreement", "gradient-x-activation", "act").at("mean"), mean_a, 1e-9);
}

// logit₀ = Σ aⱼ, logit₁ = 2: ablating the largest activations first, input (1, 0.9, 0.8, 0.7) flips after 2
// units (3.4 → 2.4 → 1.5), input (5, 0, 0, 0) after 1, input (2.5, 2.5, 2.5, 2.5) not within max_units = 2.
TEST(Evaluators, PredictionFlipCountsUnitsUntilTheLabelChanges) {
  const auto model = save_mlp("flip", torch::eye(4), torch::zeros({4}),
                              torch::tensor({{1.0, 0.0}, {1.0, 0.0}, {1.0, 0.0}, {1.0, 0.0}}), torch::tensor({0.0, 2.0}));
  const auto x = torch::tensor({{1.0, 0.9, 0.8, 0.7}, {5.0, 0.0, 0.0, 0.0}, {2.5, 2.5, 2.5, 2.5}}, torch::kDouble);
  const auto r = run(model, x, "[[methods]]\nplugin = \"activation\"\nlayers = [\"act\"]\n",
                     "[[evaluators]]\nplugin = \"prediction-flip\"\nmax_units = 2\n");
  const auto m = metrics(r, "prediction-flip", "activation", "act");
  EXPECT_DOUBLE_EQ(m.at("mean_units"), 1.5);
  EXPECT_DOUBLE_EQ(m.at("max_units"), 2.0);
  EXPECT_NEAR(m.at("fraction_not_flipped"), 1.0 / 3.0, 1e-12);
  const auto& curves = r.result.evaluations.at(0).second.curves;
  ASSERT_EQ(curves.size(), 1u);
  EXPECT_EQ(curves[0].x, (std::vector<double>{1.0, 2.0}));
  EXPECT_NEAR(curves[0].y[0], 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(curves[0].y[1], 2.0 / 3.0, 1e-12);
}

// A filter is ablated as a whole channel: with filter units, ablation-subset moves the filter with the larger
// |Σ (a(x) − a(x′))| to its reference activation; the change of F matches a hand-run of the network.
TEST(Evaluators, FilterAblationSetsTheWholeChannel) {
  torch::manual_seed(4);
  const auto conv_w = torch::randn({2, 1, 3, 3}, torch::kDouble), conv_b = torch::randn({2}, torch::kDouble);
  const auto fc_w = torch::randn({32, 3}, torch::kDouble);
  torch::jit::Module root("__torch__.EvalConv");
  torch::jit::Module conv("__torch__.EvalConv_conv");
  conv.register_parameter("w", conv_w, false);
  conv.register_parameter("b", conv_b, false);
  conv.define("def forward(self, x):\n  return torch.conv2d(x, self.w, self.b, [1, 1], [1, 1])\n");
  torch::jit::Module act("__torch__.EvalConv_act");
  act.define("def forward(self, x):\n  return torch.relu(x)\n");
  torch::jit::Module fc("__torch__.EvalConv_fc");
  fc.register_parameter("w", fc_w, false);
  fc.define("def forward(self, x):\n  return torch.matmul(x.flatten(1), self.w)\n");
  root.register_module("conv", conv);
  root.register_module("act", act);
  root.register_module("fc", fc);
  root.define("def forward(self, x):\n  return self.fc.forward(self.act.forward(self.conv.forward(x)))\n");
  const auto model = galvani::testing::temp_dir() + "/conv.pt";
  root.save(model);

  const auto x = torch::randn({1, 1, 4, 4}, torch::kDouble);
  const auto r = run(model, x, "[[methods]]\nplugin = \"gradient-x-delta\"\nlayers = [\"act\"]\nunit = \"filter\"\n",
                     "[[evaluators]]\nplugin = \"ablation-subset\"\nfraction = 0.5\n");
  const auto a = torch::relu(torch::conv2d(x, conv_w, conv_b, 1, 1));
  const auto a_ref = torch::relu(torch::conv2d(torch::zeros_like(x), conv_w, conv_b, 1, 1));
  const auto c = (a - a_ref).sum({2, 3}).abs().argmax(1).item<std::int64_t>();
  auto ablated = a.clone();
  ablated.select(1, c).copy_(a_ref.select(1, c));
  const auto t = r.plan.targets[0].item<std::int64_t>();
  const auto f = [&](const Tensor& act_) { return torch::matmul(act_.flatten(1), fc_w)[0][t].item<double>(); };
  EXPECT_NEAR(metrics(r, "ablation-subset", "gradient-x-delta", "act").at("mean_abs_change"),
              std::abs(f(a) - f(ablated)), 1e-9);
}

TEST(Evaluators, OptionErrorsNameTheKey) {
  const auto model = save_mlp("errors", torch::eye(2), torch::zeros({2}), torch::eye(2), torch::zeros({2}));
  const auto x = torch::ones({2, 2}, torch::kDouble);
  const std::string methods = "[[methods]]\nplugin = \"activation\"\nlayers = [\"act\"]\n";
  try {
    run(model, x, methods, "[[evaluators]]\nplugin = \"ablation-correlation\"\ntop_kk = 3\n");
    FAIL() << "unknown key accepted";
  } catch (const galvani::Error& e) {
    EXPECT_NE(std::string(e.what()).find("top_kk"), std::string::npos) << e.what();
  }
  try {
    run(model, x, methods, "[[evaluators]]\nplugin = \"prediction-flip\"\nablation = \"mean\"\n");
    FAIL() << "bad ablation value accepted";
  } catch (const galvani::Error& e) {
    EXPECT_NE(std::string(e.what()).find("reference"), std::string::npos) << e.what();
  }
}
