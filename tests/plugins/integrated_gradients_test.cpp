// Integrated Gradients of the input: F(x) = Σ wᵢxᵢ² from a zero baseline has IGᵢ = ∫₀¹ 2wᵢαxᵢ·xᵢ dα = wᵢxᵢ²;
// the left Riemann sum with n steps gives wᵢxᵢ²·(n − 1)/n, an error that shrinks like 1/n.
#include <gtest/gtest.h>

#include "test_support.h"

using galvani::testing::run_config;
using galvani::testing::save_temp_tensor;

namespace {

std::string quadratic_model(const torch::Tensor& w) {
  torch::jit::Module root("__torch__.IgQuadratic");
  root.register_parameter("w", w, false);
  root.define("def forward(self, x):\n  return torch.sum(self.w * x * x, 1, keepdim=True)\n");
  const auto path = galvani::testing::temp_dir() + "/ig_quadratic.pt";
  root.save(path);
  return path;
}

galvani::testing::Run run(const std::string& model, const torch::Tensor& x, const std::string& rule, int steps) {
  return run_config("[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" + save_temp_tensor(x, "ig_x.pt") +
                    "\"\ntarget = \"0\"\n[[methods]]\nplugin = \"integrated-gradients\"\nrule = \"" + rule +
                    "\"\nsteps = " + std::to_string(steps) + "\n");
}

}  // namespace

TEST(IntegratedGradients, QuadraticModelExactAndRiemannErrorShrinks) {
  const auto w = torch::tensor({0.5, -1.5, 2.0}, torch::kDouble);
  const auto model = quadratic_model(w);
  const auto x = torch::tensor({{1.0, 2.0, -0.5}, {0.3, -1.0, 1.5}}, torch::kDouble);
  const auto exact = w * x * x;

  const auto gl = run(model, x, "gausslegendre", 4).get("integrated-gradients", "input");
  EXPECT_EQ(gl.space, galvani::Space::Input);
  EXPECT_LT((gl.values - exact).abs().max().item<double>(), 1e-12);
  EXPECT_LT(gl.delta.abs().max().item<double>(), 1e-12);

  for (int n : {10, 100}) {
    const auto left = run(model, x, "riemann_left", n).get("integrated-gradients", "input");
    EXPECT_LT((left.values - exact * (n - 1.0) / n).abs().max().item<double>(), 1e-12) << n;
    // delta = Σ IG − (F(x) − F(0)) = −F(x)/n.
    EXPECT_LT((left.delta + exact.sum(1) / n).abs().max().item<double>(), 1e-12) << n;
  }
}

TEST(IntegratedGradients, SharesThePassWithLayerMethodsOnTheExampleCnn) {
  const std::string examples = std::string(GALVANI_SOURCE_DIR) + "/docs/examples";
  const auto r = run_config("[model]\npath = \"" + examples + "/fashion_cnn.pt\"\ndtype = \"float64\"\n[data]\ninputs = \"" +
                            examples + "/fashion_test.pt\"\nlimit = 4\n"
                            "[[methods]]\nplugin = \"integrated-gradients\"\nsteps = 64\n"
                            "[[methods]]\nplugin = \"conductance\"\nlayers = [\"features.4\"]\nsteps = 64\n");
  ASSERT_EQ(r.plan.groups.size(), 1u);  // one pass for both
  const auto& ig = r.get("integrated-gradients", "input");
  EXPECT_EQ(ig.values.sizes(), (std::vector<std::int64_t>{4, 1, 28, 28}));
  // Total conductance of a layer is the input IG of the same path summed (conductance paper, eq. 3): the
  // same quadrature, so the deltas agree, and they are small.
  EXPECT_LT((ig.delta - r.get("conductance", "features.4").delta).abs().max().item<double>(), 1e-6);
  EXPECT_LT(ig.delta.abs().max().item<double>(), 0.05 * (r.result.f_input - r.result.f_baseline).abs().max().item<double>());
}
