// The toy networks of the conductance paper (Dhamdhere et al.), baseline 0, with their closed-form values.
#include <gtest/gtest.h>

#include <torch/csrc/autograd/autograd.h>

#include "galvani/path.h"
#include "galvani/tap.h"
#include "test_support.h"

using galvani::testing::run_config;
using galvani::testing::save_script_model;
using galvani::testing::save_temp_tensor;

namespace {

// Runs `methods` (TOML [[methods]] entries) on a one-hidden-layer toy model in float64.
galvani::testing::Run run_toy(const std::string& model, const torch::Tensor& x, const std::string& methods) {
  const auto inputs = save_temp_tensor(x, "toy_inputs.pt");
  return run_config("[model]\npath = \"" + model + "\"\ndtype = \"float64\"\n[data]\ninputs = \"" + inputs +
                    "\"\ntarget = 0\n[run]\nprecision = \"double\"\n" + methods);
}

double value(const galvani::testing::Run& run, const std::string& method, int64_t unit = 0) {
  return run.get(method, "hidden").values.flatten()[unit].item<double>();
}

const char* kAllMethods = R"(
[[methods]]
plugin = "conductance"
layers = ["hidden"]
steps = 1000
rule = "riemann_middle"
[[methods]]
plugin = "gradient-x-activation"
layers = ["hidden"]
[[methods]]
plugin = "internal-influence"
layers = ["hidden"]
steps = 1000
rule = "riemann_middle"
)";

}  // namespace

// y = 2x, z = min(y, 1) at x = 1: the unit saturates; gradient × activation says 0, conductance 1.
TEST(ConductancePaper, Saturation) {
  const auto model = save_script_model("saturation", {{"hidden", "def forward(self, x):\n  return 2.0 * x\n"}},
                                       "def forward(self, x):\n  return torch.clamp(self.hidden.forward(x), max=1.0)\n");
  const auto run = run_toy(model, torch::ones({1, 1}, torch::kDouble), kAllMethods);
  EXPECT_NEAR(value(run, "gradient-x-activation"), 0.0, 1e-12);
  // Midpoints of an even number of steps put exactly half the points below the kink at α = 1/2.
  EXPECT_NEAR(value(run, "conductance"), 1.0, 1e-12);
  EXPECT_NEAR(run.get("conductance", "hidden").delta.item<double>(), 0.0, 1e-12);
}

// y = x, z = max(y − 1, 0) at x = 1 + ε: output ε, gradient × activation 1 + ε, conductance ε.
TEST(ConductancePaper, Overshoot) {
  const double eps = 0.1;
  const auto model = save_script_model("overshoot", {{"hidden", "def forward(self, x):\n  return x * 1.0\n"}},
                                       "def forward(self, x):\n  return torch.relu(self.hidden.forward(x) - 1.0)\n");
  const auto run = run_toy(model, torch::full({1, 1}, 1 + eps, torch::kDouble), kAllMethods);
  EXPECT_NEAR(run.result.f_input.item<double>(), eps, 1e-12);
  EXPECT_NEAR(value(run, "gradient-x-activation"), 1 + eps, 1e-12);
  EXPECT_NEAR(value(run, "conductance"), eps, 1.1 / 1000);  // one step's width at the kink
}

// y = −x, z = y at x = 1: internal influence +1, conductance −1 (the sign of the unit's effect).
TEST(ConductancePaper, Sign) {
  const auto model = save_script_model("sign", {{"hidden", "def forward(self, x):\n  return -x\n"}},
                                       "def forward(self, x):\n  return self.hidden.forward(x)\n");
  const auto run = run_toy(model, torch::ones({1, 1}, torch::kDouble), kAllMethods);
  EXPECT_NEAR(value(run, "internal-influence"), 1.0, 1e-12);
  EXPECT_NEAR(value(run, "conductance"), -1.0, 1e-12);
}

// y = (x₁², x₂), z = √y₁·y₂ at (1, 1): conductance ½ for each unit; integrated gradients applied at the
// hidden layer (the layer treated as the input, straight line in y-space) gives ⅓ and ⅔.
TEST(ConductancePaper, PartitionConsistency) {
  const auto model = save_script_model(
      "partition",
      {{"hidden", "def forward(self, x):\n  return torch.cat([x[:, 0:1] * x[:, 0:1], x[:, 1:2]], 1)\n"}},
      "def forward(self, x):\n  y = self.hidden.forward(x)\n  return torch.sqrt(y[:, 0:1]) * y[:, 1:2]\n");
  const auto x = torch::ones({1, 2}, torch::kDouble);
  const auto run = run_toy(model, x, R"(
[[methods]]
plugin = "conductance"
layers = ["hidden"]
steps = 64
rule = "gausslegendre"
)");
  EXPECT_NEAR(value(run, "conductance", 0), 0.5, 1e-12);  // integrands are polynomials in α
  EXPECT_NEAR(value(run, "conductance", 1), 0.5, 1e-12);

  // IG at the hidden layer: replace y by β·y(x) and integrate ∂z/∂y over β.
  auto m = galvani::testing::load_model(model, {torch::kCPU, torch::kDouble});
  auto tapped = m->tapped({"hidden"});
  const auto q = galvani::make_quadrature("riemann_middle", 20000);
  torch::Tensor y_x;
  {
    std::vector<torch::Tensor> cap;
    tapped->forward(x, galvani::taps::capture(cap));
    y_x = cap[0].detach();
  }
  auto ig = torch::zeros({2}, torch::kDouble);
  for (std::size_t k = 0; k < q.alphas.size(); k += 1) {
    auto leaf = (y_x * q.alphas[k]).requires_grad_(true);
    auto out = tapped->forward(x, [&](std::size_t, const torch::Tensor&) { return leaf * 1; });
    ig += torch::autograd::grad({out.sum()}, {leaf})[0][0] * q.weights[k];
  }
  ig *= y_x[0];
  EXPECT_NEAR(ig[0].item<double>(), 1.0 / 3, 1e-4);
  EXPECT_NEAR(ig[1].item<double>(), 2.0 / 3, 1e-4);
}
