// DeepLIFT: summation-to-delta at every layer cut, the hand-computed RevealCancel case, implementation
// dependence (DeepLIFT paper vs path methods), resnet18, the paired batch against separate forwards, errors.
#include <gtest/gtest.h>

#include "galvani/tensor_io.h"
#include "test_support.h"

using galvani::testing::large_fixture;
using galvani::testing::run_config;
using galvani::testing::save_script_model;
using galvani::testing::save_temp_tensor;

namespace {

const std::string kExamples = std::string(GALVANI_SOURCE_DIR) + "/docs/examples";

// A run of `methods` on `model` in float64 with baselines zeros (or `baselines`, a tensor file).
galvani::testing::Run run(const std::string& model, const torch::Tensor& x, const std::string& methods,
                          const std::string& extra_data = "", const std::string& output = "logit") {
  const auto inputs = save_temp_tensor(x, "deeplift_inputs.pt");
  return run_config("[model]\npath = \"" + model + "\"\ndtype = \"float64\"\noutput = \"" + output +
                    "\"\n[data]\ninputs = \"" + inputs + "\"\n" + extra_data + "\n[run]\nprecision = \"double\"\n" +
                    methods);
}

std::string deeplift(const std::vector<std::string>& layers, const std::string& options = "",
                     const std::string& name = "deeplift") {
  std::string list;
  for (const auto& l : layers) list += (list.empty() ? "\"" : ", \"") + l + "\"";
  return "[[methods]]\nplugin = \"deeplift\"\nname = \"" + name + "\"\nlayers = [" + list + "]\n" + options + "\n";
}

// A 4-3-3-2 MLP with fixed weights: linear → relu → linear → sigmoid → linear.
std::string mlp() {
  static const std::string path = save_script_model(
      "mlp",
      {{"fc1", "def forward(self, x):\n  return torch.linear(x, torch.tensor([[0.5, -1.0, 0.3, 0.8], [-0.7, 0.4, 1.1, "
               "-0.2], [0.9, 0.6, -0.5, 0.1]]).double(), torch.tensor([0.1, -0.2, 0.05]).double())\n"},
       {"act1", "def forward(self, x):\n  return torch.relu(x)\n"},
       {"fc2", "def forward(self, x):\n  return torch.linear(x, torch.tensor([[1.2, -0.8, 0.5], [-0.3, 0.9, 0.7], "
               "[0.4, 0.2, -1.0]]).double(), torch.tensor([0.0, 0.1, -0.1]).double())\n"},
       {"act2", "def forward(self, x):\n  return torch.sigmoid(x)\n"},
       {"fc3", "def forward(self, x):\n  return torch.linear(x, torch.tensor([[1.5, -2.0, 0.7], [-0.4, 0.3, 1.2]])"
               ".double(), torch.tensor([0.2, -0.1]).double())\n"}},
      "def forward(self, x):\n  return self.fc3.forward(self.act2.forward(self.fc2.forward(self.act1.forward("
      "self.fc1.forward(x)))))\n");
  return path;
}

torch::Tensor mlp_inputs() {
  torch::manual_seed(3);
  return torch::randn({6, 4}, torch::kDouble) * 2;
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

const std::vector<std::string> kMlpLayers{"fc1", "act1", "fc2", "act2", "fc3"};

}  // namespace

TEST(DeepLift, SumsToDeltaAtEveryLayerOfAnMlp) {
  for (const std::string rule : {"rescale", "reveal-cancel", "default"}) {
    SCOPED_TRACE(rule);
    // RevealCancel merges each dense layer into the nonlinearity after it, so the pre-activations fc1 and fc2
    // are not cuts it attributes to; the post-activations and the input are.
    const std::vector<std::string> layers =
        rule == "rescale" ? kMlpLayers : std::vector<std::string>{"act1", "act2", "fc3"};
    const auto r = run(mlp(), mlp_inputs(), deeplift(layers, "nonlinear_rule = \"" + rule + "\"\ninput = true"));
    const auto change = r.result.f_input - r.result.f_baseline;
    ASSERT_GT(max_abs(change), 0.1);
    for (const auto& l : layers) {
      SCOPED_TRACE(l);
      const auto& res = r.get("deeplift", l);
      EXPECT_LT(max_abs(res.delta), 1e-10);
      EXPECT_LT(max_abs(res.values.sum(1) - change), 1e-10);
    }
    EXPECT_LT(max_abs(r.get("deeplift", "input").delta), 1e-10);
  }
}

// The paired batch [x; r] gives what DeepLIFT's definition gives from separate forwards of x and r: Rescale
// multipliers Δy/Δx at each nonlinearity, chained back through the weights by hand.
TEST(DeepLift, PairedBatchMatchesSeparateForwards) {
  const auto x = mlp_inputs();
  const auto r = run(mlp(), x, deeplift(kMlpLayers, "nonlinear_rule = \"rescale\"\ninput = true"));
  // The model's tensor literals are float32 converted to float64: the same rounding here.
  const auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat).to(torch::kDouble); };
  const auto w1 = f32(torch::tensor({{0.5, -1.0, 0.3, 0.8}, {-0.7, 0.4, 1.1, -0.2}, {0.9, 0.6, -0.5, 0.1}}, torch::kDouble));
  const auto b1 = f32(torch::tensor({0.1, -0.2, 0.05}, torch::kDouble));
  const auto w2 = f32(torch::tensor({{1.2, -0.8, 0.5}, {-0.3, 0.9, 0.7}, {0.4, 0.2, -1.0}}, torch::kDouble));
  const auto b2 = f32(torch::tensor({0.0, 0.1, -0.1}, torch::kDouble));
  const auto w3 = f32(torch::tensor({{1.5, -2.0, 0.7}, {-0.4, 0.3, 1.2}}, torch::kDouble));
  const auto forward = [&](const torch::Tensor& in) {
    const auto z1 = torch::linear(in, w1, b1), a1 = torch::relu(z1);
    const auto z2 = torch::linear(a1, w2, b2), a2 = torch::sigmoid(z2);
    return std::vector<torch::Tensor>{z1, a1, z2, a2};
  };
  const auto xi = forward(x), xr = forward(torch::zeros_like(x));
  const auto rescale = [](const torch::Tensor& dy, const torch::Tensor& dx) { return dy / dx; };
  const auto targets = r.plan.targets;
  auto m = w3.index_select(0, targets);  // ∂F/∂a2 per input
  const auto c_act2 = m * (xi[3] - xr[3]);
  m = m * rescale(xi[3] - xr[3], xi[2] - xr[2]);
  const auto c_fc2 = m * (xi[2] - xr[2]);
  m = m.matmul(w2);
  const auto c_act1 = m * (xi[1] - xr[1]);
  m = m * rescale(xi[1] - xr[1], xi[0] - xr[0]);
  const auto c_fc1 = m * (xi[0] - xr[0]);
  const auto c_input = m.matmul(w1) * x;
  EXPECT_TRUE(torch::allclose(r.get("deeplift", "act2").values, c_act2, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(r.get("deeplift", "fc2").values, c_fc2, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(r.get("deeplift", "act1").values, c_act1, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(r.get("deeplift", "fc1").values, c_fc1, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(r.get("deeplift", "input").values, c_input, 1e-12, 1e-12));
}

// Several references: the attributions are the mean of the runs against each reference alone (DeepSHAP).
TEST(DeepLift, SeveralReferencesAverage) {
  const auto x = mlp_inputs();
  torch::manual_seed(5);
  const auto refs = torch::randn({3, 4}, torch::kDouble);
  const auto file = save_temp_tensor(refs, "deeplift_refs.pt");
  const auto averaged = run(mlp(), x, deeplift({"act1"}, "nonlinear_rule = \"rescale\"\nreferences = \"" + file + "\""));
  torch::Tensor sum = torch::zeros({x.size(0), 3}, torch::kDouble);
  for (int k = 0; k < 3; ++k) {
    const auto base = save_temp_tensor(refs[k], "deeplift_ref_" + std::to_string(k) + ".pt");
    const auto single = run(mlp(), x, deeplift({"act1"}, "nonlinear_rule = \"rescale\""), "baselines = \"" + base + "\"");
    sum += single.get("deeplift", "act1").values;
  }
  EXPECT_TRUE(torch::allclose(averaged.get("deeplift", "act1").values, sum / 3, 1e-12, 1e-12));
  EXPECT_LT(max_abs(averaged.get("deeplift", "act1").delta), 1e-10);
}

// out = x₁ − relu(x₁ − x₂) (= min(x₁, x₂)) at x = (3, 1), reference 0. The hidden unit's Δz = 2 splits into
// Δz⁺ = 3 (from x₁) and Δz⁻ = −1 (from x₂).
//  Rescale: m = 1, so x₁ gets 3 − 3 = 0 and x₂ gets 1.
//  RevealCancel: Δh⁺ = ½(relu(3) − relu(0)) + ½(relu(2) − relu(−1)) = 2.5, Δh⁻ = ½(relu(−1) − relu(0)) +
//  ½(relu(2) − relu(3)) = −0.5; m⁺ = 2.5/3, m⁻ = 0.5; x₁ gets 3 − 2.5 = 0.5 and x₂ gets 0.5.
// The hidden unit's own contribution, −Δh = −2, is the same under both rules.
TEST(DeepLift, RevealCancelHandComputed) {
  const auto model = save_script_model(
      "min_net",
      {{"hidden", "def forward(self, x):\n  return torch.linear(x, torch.tensor([[1.0, -1.0]]).double())\n"},
       {"act", "def forward(self, x):\n  return torch.relu(x)\n"}},
      "def forward(self, x):\n  return x.narrow(1, 0, 1) - self.act.forward(self.hidden.forward(x))\n");
  const auto x = torch::tensor({{3.0, 1.0}}, torch::kDouble);
  const auto r = run(model, x,
                     deeplift({"act"}, "nonlinear_rule = \"rescale\"\ninput = true", "rescale") +
                         deeplift({"act"}, "nonlinear_rule = \"reveal-cancel\"\ninput = true", "reveal-cancel") +
                         deeplift({"act"}, "input = true", "default"),
                     "target = 0");
  EXPECT_TRUE(torch::allclose(r.get("rescale", "input").values, torch::tensor({{0.0, 1.0}}, torch::kDouble)));
  EXPECT_TRUE(torch::allclose(r.get("reveal-cancel", "input").values, torch::tensor({{0.5, 0.5}}, torch::kDouble)));
  // The default rule uses RevealCancel after a dense layer.
  EXPECT_TRUE(torch::allclose(r.get("default", "input").values, torch::tensor({{0.5, 0.5}}, torch::kDouble)));
  for (const std::string m : {"rescale", "reveal-cancel"}) {
    EXPECT_NEAR(r.get(m, "act").values.item<double>(), -2.0, 1e-12);
    EXPECT_NEAR(r.get(m, "input").delta.item<double>(), 0.0, 1e-12);
  }
}

// f = relu(relu(x₁) − 1 − relu(x₂)) and f′ = relu(relu(x₁ − 1) − relu(x₂)) are one function; at x = (3, 1),
// baseline 0, Rescale gives (1.5, −0.5) for f and (2, −1) for f′, while conductance at an identity layer on
// the input (= integrated gradients) gives the same for both.
TEST(DeepLift, ImplementationDependenceUnlikePathMethods) {
  const std::vector<std::pair<std::string, std::string>> inp{{"inp", "def forward(self, x):\n  return x * 1.0\n"}};
  const auto f = save_script_model(
      "f_impl", inp,
      "def forward(self, x):\n  h = self.inp.forward(x)\n"
      "  return torch.relu(torch.relu(h.narrow(1, 0, 1)) - 1.0 - torch.relu(h.narrow(1, 1, 1)))\n");
  const auto f2 = save_script_model(
      "f2_impl", inp,
      "def forward(self, x):\n  h = self.inp.forward(x)\n"
      "  return torch.relu(torch.relu(h.narrow(1, 0, 1) - 1.0) - torch.relu(h.narrow(1, 1, 1)))\n");
  const auto x = torch::tensor({{3.0, 1.0}}, torch::kDouble);
  const std::string methods = deeplift({"inp"}, "nonlinear_rule = \"rescale\"") +
                              "[[methods]]\nplugin = \"conductance\"\nlayers = [\"inp\"]\nsteps = 2000\n"
                              "rule = \"riemann_middle\"\n";
  const auto a = run(f, x, methods, "target = 0");
  const auto b = run(f2, x, methods, "target = 0");
  EXPECT_TRUE(torch::allclose(a.get("deeplift", "inp").values, torch::tensor({{1.5, -0.5}}, torch::kDouble)));
  EXPECT_TRUE(torch::allclose(b.get("deeplift", "inp").values, torch::tensor({{2.0, -1.0}}, torch::kDouble)));
  const auto ig_a = a.get("conductance", "inp").values, ig_b = b.get("conductance", "inp").values;
  EXPECT_LT(max_abs(ig_a - ig_b), 1e-3);
  EXPECT_NEAR(ig_a.sum().item<double>(), 1.0, 1e-3);
}

TEST(DeepLift, ExampleCnnSumsToDeltaThroughMaxPools) {
  const auto x = galvani::load_tensor(kExamples + "/fashion_test.pt").narrow(0, 0, 6).to(torch::kDouble);
  const std::vector<std::string> layers{"features.0", "features.1", "features.2", "features.3", "features.4",
                                        "features.5", "classifier.1", "classifier.2", "classifier.3"};
  std::vector<std::string> above_dense = layers;
  above_dense.erase(std::find(above_dense.begin(), above_dense.end(), "classifier.1"));
  const auto r = run(kExamples + "/fashion_cnn.pt", x,
                     deeplift(layers, "input = true\nnonlinear_rule = \"rescale\"") +
                         deeplift(above_dense, "input = true", "default") +
                         deeplift(layers, "maxpool = \"gradient\"\nnonlinear_rule = \"rescale\"", "gradient-pool"));
  // The default rule merges classifier.1 (dense) into the relu after it: every other layer is a cut it covers.
  for (const auto& l : above_dense) {
    SCOPED_TRACE(l);
    EXPECT_LT(max_abs(r.get("default", l).delta), 1e-6);
  }
  EXPECT_LT(max_abs(r.get("default", "input").delta), 1e-6);
  for (const auto& l : layers) {
    SCOPED_TRACE(l);
    EXPECT_LT(max_abs(r.get("deeplift", l).delta), 1e-6);
  }
  EXPECT_LT(max_abs(r.get("deeplift", "input").delta), 1e-6);
  // The reference implementation's gradient rule through the pools loses part of the difference below them.
  EXPECT_GT(max_abs(r.get("gradient-pool", "features.1").delta), 1e-3);
  EXPECT_LT(max_abs(r.get("gradient-pool", "classifier.2").delta), 1e-6);  // above the pools nothing is lost
}

// A baseline shared by all inputs runs once ([x; x′] of N + 1 rows); per-input baselines run paired (2N rows).
// Both give every input the same values: the shared case against the paired one, on inputs whose baseline is
// the same in both runs (only the last input's differs). Max pools (fused rule), Rescale and RevealCancel.
TEST(DeepLift, SharedBaselineRunsOnceWithTheSameValues) {
  torch::manual_seed(11);
  struct Case {
    std::string model;
    torch::Tensor x, baseline;
    std::vector<std::string> layers;
  };
  const std::vector<Case> cases{
      {kExamples + "/fashion_cnn.pt", galvani::load_tensor(kExamples + "/fashion_test.pt").narrow(0, 0, 5).to(torch::kDouble),
       torch::rand({1, 28, 28}, torch::kDouble) * 0.3, {"features.1", "features.4", "classifier.2"}},
      {mlp(), mlp_inputs().narrow(0, 0, 5), torch::randn({4}, torch::kDouble), {"act1", "act2"}}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.model);
    const auto n = c.x.size(0);
    std::vector<int64_t> shape{n};
    shape.insert(shape.end(), c.baseline.sizes().begin(), c.baseline.sizes().end());
    const auto shared = c.baseline.unsqueeze(0).expand(shape).contiguous();
    auto paired = shared.clone();
    paired[n - 1] = -paired[n - 1];
    const std::string methods = deeplift(c.layers, "input = true\nnonlinear_rule = \"rescale\"", "rescale") +
                                deeplift(c.layers, "input = true", "default");
    const auto one = run(c.model, c.x, methods, "baselines = \"" + save_temp_tensor(shared, "shared.pt") + "\"");
    const auto two = run(c.model, c.x, methods, "baselines = \"" + save_temp_tensor(paired, "paired.pt") + "\"");
    auto layers = c.layers;
    layers.push_back("input");
    for (const std::string method : {"rescale", "default"})
      for (const auto& l : layers) {
        SCOPED_TRACE(method + " " + l);
        const auto& a = one.get(method, l);
        const auto& b = two.get(method, l);
        EXPECT_GT(max_abs(a.values), 1e-3);
        EXPECT_TRUE(torch::allclose(a.values.narrow(0, 0, n - 1), b.values.narrow(0, 0, n - 1), 1e-10, 1e-12));
        EXPECT_TRUE(torch::allclose(a.delta.narrow(0, 0, n - 1), b.delta.narrow(0, 0, n - 1), 1e-10, 1e-12));
        EXPECT_FALSE(torch::allclose(a.values[n - 1], b.values[n - 1], 1e-6, 1e-6));  // its baseline differs
        EXPECT_LT(max_abs(a.delta), 1e-6);
        EXPECT_LT(max_abs(b.delta), 1e-6);
      }
    EXPECT_TRUE(torch::allclose(one.result.f_baseline.narrow(0, 0, n - 1), two.result.f_baseline.narrow(0, 0, n - 1),
                                1e-12, 1e-12));
  }
}

// Without `input = true` the tapped layers are the backward's leaves and the ops below the shallowest one run
// without rules; the values are those of a run that attributes the input too (where every op has its rule).
// One deep layer, layers on both sides of a max pool and a dense layer, and resnet18's residual blocks.
TEST(DeepLift, LayersAloneMatchTheRunWithTheInput) {
  struct Case {
    std::string model;
    torch::Tensor x;
    std::vector<std::vector<std::string>> layer_sets;
    std::string baselines;
  };
  torch::manual_seed(5);
  std::vector<Case> cases{{kExamples + "/fashion_cnn.pt",
                           galvani::load_tensor(kExamples + "/fashion_test.pt").narrow(0, 0, 4).to(torch::kDouble),
                           {{"features.4"}, {"features.1", "features.5", "classifier.2"}},
                           save_temp_tensor(torch::rand({4, 1, 28, 28}, torch::kDouble) * 0.3, "cnn_refs.pt")}};
  if (galvani::testing::large_fixtures_enabled())
    cases.push_back({large_fixture("resnet18_traced.pt"), torch::rand({2, 3, 64, 64}, torch::kDouble),
                     {{"layer2"}, {"layer1.0", "layer3"}},
                     save_temp_tensor(torch::rand({2, 3, 64, 64}, torch::kDouble) * 0.5, "resnet_layer_refs.pt")});
  for (const auto& c : cases) {
    SCOPED_TRACE(c.model);
    for (const auto& layers : c.layer_sets) {
      SCOPED_TRACE(layers.front());
      const auto r = run(c.model, c.x,
                         deeplift(layers, "", "alone") + deeplift(layers, "input = true", "with-input") +
                             deeplift(layers, "nonlinear_rule = \"rescale\"", "rescale-alone") +
                             deeplift(layers, "nonlinear_rule = \"rescale\"\ninput = true", "rescale-with-input"),
                         "baselines = \"" + c.baselines + "\"");
      for (const std::string rule : {"", "rescale-"})
        for (const auto& l : layers) {
          SCOPED_TRACE(rule + l);
          const auto& alone = r.get(rule + "alone", l);
          const auto& with_input = r.get(rule + "with-input", l);
          EXPECT_GT(max_abs(alone.values), 1e-3);
          EXPECT_TRUE(torch::allclose(alone.values, with_input.values, 1e-10, 1e-12));
          EXPECT_TRUE(torch::allclose(alone.delta, with_input.delta, 1e-10, 1e-12));
          EXPECT_LT(max_abs(alone.delta), 1e-6);
        }
    }
  }
}

// In float32 the CPU runs RevealCancel's dense products through oneDNN and the pool rule in float: the values are
// those of the float64 run to float32 precision, and still sum to delta. One shard of 70 inputs: the products
// run in several blocks of rows.
TEST(DeepLift, Float32MatchesFloat64) {
  const auto x = galvani::load_tensor(kExamples + "/fashion_test.pt").narrow(0, 0, 70);
  const auto inputs = save_temp_tensor(x, "deeplift_f32_inputs.pt");
  const std::vector<std::string> layers{"features.1", "features.4", "classifier.2"};
  const auto config = [&](const std::string& dtype) {
    return "[model]\npath = \"" + kExamples + "/fashion_cnn.pt\"\ndtype = \"" + dtype + "\"\n[data]\ninputs = \"" +
           inputs + "\"\n[run]\nthreads = 1\nshard_size = 70\n" + deeplift(layers, "input = true", "default") +
           deeplift(layers, "nonlinear_rule = \"reveal-cancel\"", "reveal-cancel");
  };
  const auto single = run_config(config("float32"));
  const auto twice = run_config(config("float64"));
  for (const std::string method : {"default", "reveal-cancel"})
    for (const auto& l : layers) {
      SCOPED_TRACE(method + " " + l);
      const auto a = single.get(method, l).values.to(torch::kDouble), b = twice.get(method, l).values;
      EXPECT_GT(max_abs(b), 1e-2);
      EXPECT_LT(max_abs(a - b), 1e-4 * max_abs(b));
      EXPECT_LT(max_abs(single.get(method, l).delta), 1e-3);
    }
}

TEST(DeepLift, Resnet18TracedAndScriptedSumToDelta) {
  GALVANI_SKIP_WITHOUT_LARGE_FIXTURES();
  torch::manual_seed(0);
  const auto x = torch::rand({2, 3, 64, 64}, torch::kDouble);
  // A non-constant reference: against a constant one the pool's winners carry the whole difference anyway.
  const auto baselines = save_temp_tensor(torch::rand({2, 3, 64, 64}, torch::kDouble) * 0.5, "resnet_refs.pt");
  const std::vector<std::string> layers{"conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"};
  for (const std::string kind : {"traced", "scripted"}) {
    SCOPED_TRACE(kind);
    const auto r = run(large_fixture("resnet18_" + kind + ".pt"), x,
                       deeplift(layers, "input = true") + deeplift({"conv1"}, "maxpool = \"gradient\"", "gradient-pool"),
                       "baselines = \"" + baselines + "\"");
    for (const auto& l : layers) {
      SCOPED_TRACE(l);
      EXPECT_LT(max_abs(r.get("deeplift", l).delta), 1e-6);
      EXPECT_TRUE(r.get("deeplift", l).notes.empty());  // every op has its rule, scripted pools included
    }
    EXPECT_LT(max_abs(r.get("deeplift", "input").delta), 1e-6);
    // Below the stem's max pool the gradient rule loses part of the difference; the error is reported.
    EXPECT_GT(max_abs(r.get("gradient-pool", "conv1").delta), 1e-6);
  }
}

TEST(DeepLift, UnsupportedOpsAreNamedOrFallBackToTheGradient) {
  const auto model = save_script_model(
      "exp_net", {{"body", "def forward(self, x):\n  return torch.exp(x) * 0.5\n"}},
      "def forward(self, x):\n  return torch.relu(self.body.forward(x))\n");
  const auto x = torch::tensor({{0.5, -1.0}}, torch::kDouble);
  try {
    run(model, x, deeplift({"body"}), "target = 0");
    FAIL() << "no error";
  } catch (const galvani::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("aten::exp in 'body'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unsupported = \"gradient\""), std::string::npos) << msg;
  }
  const auto r = run(model, x, deeplift({"body"}, "unsupported = \"gradient\""), "target = 0");
  const auto& res = r.get("deeplift", "body");
  ASSERT_EQ(res.notes.size(), 1u);
  EXPECT_NE(res.notes[0].find("aten::exp in 'body'"), std::string::npos) << res.notes[0];
  EXPECT_LT(max_abs(res.delta), 1e-12);  // the exp is below the layer: the cut still sums to delta
}

TEST(DeepLift, ProbabilityOutputIsRefused) {
  EXPECT_THROW(run(mlp(), mlp_inputs(), deeplift({"act1"}), "", "probability"), galvani::Error);
}

// Overlapping 1-d max-pool windows (kernel 3, stride 2): a position can win two windows, so the pool rule adds
// the shares of both. Contributions still sum to the output difference, and match the rule written out by hand.
TEST(DeepLift, OverlappingOneDimensionalPoolSumsToDelta) {
  const auto model = save_script_model(
      "pool1d",
      {{"pool", "def forward(self, x):\n  return torch.max_pool1d(x, [3], [2])\n"},
       {"fc", "def forward(self, x):\n  return torch.linear(x.flatten(1), torch.tensor([[0.7, -1.3, 0.4], "
              "[0.2, 0.5, -0.9]]).double())\n"}},
      "def forward(self, x):\n  return self.fc.forward(self.pool.forward(x))\n");
  // The model has no parameters, so it runs in float32 (hence 1e-6). One channel of 7 values. Windows {0,1,2}, {2,3,4}, {4,5,6}.
  const auto x = torch::tensor({0.1, 0.4, 2.0, 1.0, 0.3, -0.5, 0.2}, torch::kDouble).view({1, 1, 7});
  const auto xr = torch::tensor({0.5, 0.0, 0.0, -1.0, 0.6, 0.0, 0.0}, torch::kDouble).view({1, 1, 7});
  const auto r = run(model, x, deeplift({"pool"}, "input = true"), "target = \"0\"\nbaselines = \"" + save_temp_tensor(xr, "pool1d_ref.pt") + "\"");
  EXPECT_LT(max_abs(r.get("deeplift", "input").delta), 1e-6);
  EXPECT_LT(max_abs(r.get("deeplift", "pool").delta), 1e-6);
  // Target 0: pooled y = (2.0, 2.0, 0.3), y′ = (0.5, 0.6, 0.6); F = 0.7·y₀ − 1.3·y₁ + 0.4·y₂, ΔF = −0.89.
  // Per window, high = max(y, y′): x's winner gets high − y′, x′'s winner gets y − high.
  // Window 0: x wins at 2 (2.0), x′ at 0 (0.5): position 2 gets 1.5, position 0 gets 0.
  // Window 1: x wins at 2 (2.0), x′ at 4 (0.6): position 2 gets 1.4, position 4 gets 0.
  // Window 2: x wins at 4 (0.3), x′ at 4 (0.6): high = 0.6, position 4 gets 0 + (0.3 − 0.6) = −0.3.
  // Contribution at position k = Σ over windows of w_window · share; the multiplier is share / Δx there.
  const auto c = r.get("deeplift", "input").values.view({7});
  const double expected[7] = {0.0, 0.0, 0.7 * 1.5 + -1.3 * 1.4, 0.0, 0.4 * -0.3, 0.0, 0.0};
  for (int k = 0; k < 7; ++k) EXPECT_NEAR(c[k].item<double>(), expected[k], 1e-6) << k;
}

// The sum-to-delta pool rule on 2-d and 3-d pools, two channels: each window's share goes to the input's and
// the reference's winners as ATen's own pool picks them. 2-d pools on 7 × 6: one with padding, stride, dilation
// and ceil mode, and the plain 2 × 2 pool (the last row dropped), which has a loop of its own; a 3-d pool on
// 5 × 7 × 6 with all of those in every dimension.
TEST(DeepLift, PoolSendsSharesToTheWinners) {
  struct Pool {
    std::vector<int64_t> kernel, stride, padding, dilation;
    bool ceil;
    std::string args;
  };
  const std::vector<Pool> pools{{{3, 2}, {2, 1}, {1, 0}, {1, 2}, true, "[3, 2], [2, 1], [1, 0], [1, 2], True"},
                                {{2, 2}, {2, 2}, {0, 0}, {1, 1}, false, "[2, 2], [2, 2], [0, 0], [1, 1], False"},
                                {{2, 3, 2}, {2, 2, 1}, {1, 1, 0}, {1, 1, 2}, true,
                                 "[2, 3, 2], [2, 2, 1], [1, 1, 0], [1, 1, 2], True"}};
  torch::manual_seed(8);
  for (const auto& p : pools) {
    SCOPED_TRACE(p.args);
    const bool three = p.kernel.size() == 3;
    const std::vector<int64_t> shape = three ? std::vector<int64_t>{1, 2, 5, 7, 6} : std::vector<int64_t>{1, 2, 7, 6};
    const auto x = torch::randn(shape, torch::kDouble), xr = torch::randn(shape, torch::kDouble);
    const auto pool = [&](const torch::Tensor& t) {
      return three ? at::max_pool3d_with_indices(t, p.kernel, p.stride, p.padding, p.dilation, p.ceil)
                   : at::max_pool2d_with_indices(t, p.kernel, p.stride, p.padding, p.dilation, p.ceil);
    };
    const auto [yi, ii] = pool(x);
    const auto [yr, ir] = pool(xr);
    const auto outputs = yi.numel();
    const auto w6 = torch::round(torch::randn({outputs}, torch::kDouble) * 1e6) / 1e6;  // exactly as printed below
    std::string literal;
    for (int64_t k = 0; k < outputs; ++k) literal += (k ? ", " : "") + std::to_string(w6[k].item<double>());
    const auto w = w6.to(torch::kFloat).to(torch::kDouble);  // a tensor literal is float32 in the model
    const auto model = save_script_model(
        "pool_" + std::to_string(outputs),
        {{"pool", std::string("def forward(self, x):\n  return torch.max_pool") + (three ? "3d" : "2d") + "(x, " +
                      p.args + ")\n"},
         {"fc", "def forward(self, x):\n  return torch.linear(x.flatten(1), torch.tensor([[" + literal +
                    "]]).double())\n"}},
        "def forward(self, x):\n  return self.fc.forward(self.pool.forward(x))\n");
    const auto r = run(model, x, deeplift({"pool"}, "input = true"),
                       "target = \"0\"\nbaselines = \"" + save_temp_tensor(xr, "pool_ref.pt") + "\"");
    const auto g = w.view_as(yi), high = torch::maximum(yi, yr);
    const auto plane = x.numel() / 2;
    const auto shares = torch::zeros({1, 2, plane}, torch::kDouble)
                            .scatter_add(2, ii.flatten(2), (g * (high - yr)).flatten(2))
                            .scatter_add(2, ir.flatten(2), (g * (yi - high)).flatten(2));
    EXPECT_GT(max_abs(shares), 0.1);
    EXPECT_TRUE(torch::allclose(r.get("deeplift", "input").values, shares.view_as(x), 1e-10, 1e-10));
    EXPECT_LT(max_abs(r.get("deeplift", "input").delta), 1e-10);
  }
}
