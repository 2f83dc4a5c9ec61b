// Pathway gradient (Khakzar et al.): every value is checked against an independent computation in float64 —
// the plain input gradient at κ = 0, NeuronMCT and NeuronIntGrad recomputed layer by layer, the κ-quantile,
// local linearity of the restricted model (Proposition 5) around the input, and the pruning counts.
#include <gtest/gtest.h>

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "galvani/path.h"
#include "galvani/tap.h"
#include "galvani/tensor_io.h"
#include "test_support.h"

using galvani::testing::large_fixture;
using galvani::testing::load_model;
using galvani::testing::run_config;
using galvani::testing::save_temp_tensor;
using torch::Tensor;

namespace {

const std::string kExamples = std::string(GALVANI_SOURCE_DIR) + "/docs/examples";

double max_abs(const Tensor& t) { return t.abs().max().item<double>(); }

// x [B, 6] → fc1 (6→12) → relu1 → fc2 (12→8) → relu2 → fc3 (8→3); seeded weights, biases that kill some units.
std::string save_mlp() {
  torch::manual_seed(3);
  torch::jit::Module root("__torch__.PathMlp");
  const std::vector<std::pair<std::string, std::pair<int, int>>> dense{{"fc1", {6, 12}}, {"fc2", {12, 8}}, {"fc3", {8, 3}}};
  for (const auto& [name, shape] : dense) {
    torch::jit::Module m("__torch__.PathMlp_" + name);
    m.register_parameter("w", torch::randn({shape.first, shape.second}, torch::kDouble), false);
    m.register_parameter("b", torch::randn({shape.second}, torch::kDouble) * 0.5 + 0.3, false);
    m.define("def forward(self, x):\n  return torch.matmul(x, self.w) + self.b\n");
    root.register_module(name, m);
  }
  for (const std::string name : {"relu1", "relu2"}) {
    torch::jit::Module m("__torch__.PathMlp_" + name);
    m.define("def forward(self, x):\n  return torch.relu(x)\n");
    root.register_module(name, m);
  }
  root.define(
      "def forward(self, x):\n  return self.fc3.forward(self.relu2.forward(self.fc2.forward(self.relu1.forward("
      "self.fc1.forward(x)))))\n");
  const auto path = galvani::testing::temp_dir() + "/path_mlp.pt";
  root.save(path);
  return path;
}

const std::string& mlp() {
  static const std::string path = save_mlp();
  return path;
}

Tensor mlp_inputs() {
  torch::manual_seed(5);
  return torch::randn({4, 6}, torch::kDouble);
}

galvani::testing::Run run(const std::string& model, const Tensor& x, const std::string& methods,
                          const std::string& run_extra = "") {
  const auto inputs = save_temp_tensor(x, "pathway_inputs.pt");
  return run_config("[model]\npath = \"" + model + "\"\ndtype = \"float64\"\n[data]\ninputs = \"" + inputs +
                    "\"\ntarget = \"predicted\"\n[run]\nprecision = \"double\"\nshard_size = 2\n" + run_extra + "\n" +
                    methods);
}

std::string pathway(const std::string& options, const std::string& name = "pathway-gradient",
                    const std::string& layers = "") {
  return "[[methods]]\nplugin = \"pathway-gradient\"\nname = \"" + name + "\"\n" +
         (layers.empty() ? "" : "layers = " + layers + "\n") + options + "\n";
}

const char* kMlpLayers = "[\"relu1\", \"relu2\"]";

// ∂F/∂x of the plain model, F the target's logit.
Tensor input_gradient(const galvani::Model& model, const Tensor& x, const Tensor& targets) {
  const auto xi = x.detach().requires_grad_(true);
  const auto f = model.forward(xi).gather(1, targets.view({-1, 1})).sum();
  return torch::autograd::grad({f}, {xi})[0];
}

// Activations and ∂F/∂a at `layers`, from a plain capture.
std::pair<std::vector<Tensor>, std::vector<Tensor>> activations(const galvani::Model& model,
                                                                const std::vector<std::string>& layers,
                                                                const Tensor& x, const Tensor& targets) {
  std::vector<Tensor> cap;
  // The input tracked, so that the captured activations are in the graph (the parameters are not tracked).
  const auto out = model.tapped(layers)->forward(x.detach().requires_grad_(true), galvani::taps::capture(cap));
  const auto g = torch::autograd::grad({out.gather(1, targets.view({-1, 1})).sum()}, cap);
  std::vector<Tensor> act;
  for (auto& a : cap) act.push_back(a.detach());
  return {act, g};
}

std::vector<std::string> relu_sites(const galvani::Model& model) {
  std::vector<std::string> names;
  for (const auto& l : model.layers())
    if (l.type == "ReLU") names.push_back(l.name);
  return names;
}

Tensor flat(const std::vector<Tensor>& per_layer) {
  std::vector<Tensor> f;
  for (const auto& t : per_layer) f.push_back(t.reshape({t.size(0), -1}));
  return torch::cat(f, 1);
}

std::vector<Tensor> masks(const galvani::MethodResult& r, const std::vector<std::string>& layers) {
  std::vector<Tensor> m;
  for (const auto& l : layers) m.push_back(r.extras.at("mask." + l));
  return m;
}

}  // namespace

// κ = 0 keeps every live neuron: the restricted model is the model, its gradient the plain input gradient, for
// every contribution kind and both off-path rules (dead neurons pass no gradient either way).
TEST(PathwayGradient, KappaZeroIsTheInputGradient) {
  const auto x = mlp_inputs();
  const auto r = run(mlp(), x,
                     pathway("sparsity = 0.0", "mct", kMlpLayers) +
                         pathway("sparsity = 0.0\ncontribution = \"intgrad\"\nsteps = 8", "intgrad", kMlpLayers) +
                         pathway("sparsity = 0.0\noff_path = \"zero\"", "zero", kMlpLayers));
  const auto model = load_model(mlp(), {torch::kCPU, torch::kDouble});
  const auto expected = input_gradient(*model, x, r.plan.targets);
  ASSERT_GT(max_abs(expected), 1e-3);
  for (const std::string name : {"mct", "intgrad", "zero"}) {
    SCOPED_TRACE(name);
    const auto& res = r.get(name, "input");
    EXPECT_EQ(res.space, galvani::Space::Input);
    EXPECT_LT(max_abs(res.values - expected), 1e-12);
    const auto sparsity = torch::cat({1 - flat(masks(res, {"relu1"})).sum(1, true) / 12.0,
                                      1 - flat(masks(res, {"relu2"})).sum(1, true) / 8.0}, 1);
    EXPECT_LT(max_abs(res.extras.at("sparsity") - sparsity), 1e-12);
  }
}

// The same on the example CNN with the default layers (every ReLU call site) and on resnet18.
TEST(PathwayGradient, KappaZeroOnExampleCnnAndResnet18) {
  {
    const auto x = galvani::load_tensor(kExamples + "/fashion_test.pt").narrow(0, 0, 4).to(torch::kDouble);
    const auto r = run(kExamples + "/fashion_cnn.pt", x, pathway("sparsity = 0.0"));
    const auto model = load_model(kExamples + "/fashion_cnn.pt", {torch::kCPU, torch::kDouble});
    const auto& res = r.get("pathway-gradient", "input");
    EXPECT_LT(max_abs(res.values - input_gradient(*model, x, r.plan.targets)), 1e-12);
    for (const std::string l : {"features.1", "features.4", "classifier.2"}) EXPECT_TRUE(res.extras.count("mask." + l)) << l;
  }
  GALVANI_SKIP_WITHOUT_LARGE_FIXTURES();
  const auto path = large_fixture("resnet18_traced.pt");
  torch::manual_seed(0);
  const auto x = torch::rand({2, 3, 64, 64}, torch::kDouble);
  const auto r = run(path, x, pathway("sparsity = 0.0"));
  const auto model = load_model(path, {torch::kCPU, torch::kDouble});
  const auto& res = r.get("pathway-gradient", "input");
  EXPECT_LT(max_abs(res.values - input_gradient(*model, x, r.plan.targets)), 1e-10);
  // A reused ReLU module counts once per call: 1 stem ReLU + 8 blocks × 2 calls.
  model->probe(x.narrow(0, 0, 1));
  const auto sites = relu_sites(*model);
  EXPECT_EQ(sites.size(), 17u);
  for (const auto& l : sites) EXPECT_TRUE(res.extras.count("mask." + l)) << l;
  EXPECT_EQ(res.extras.at("sparsity").size(1), 17);
}

// NeuronMCT is |a·∂F/∂a|; the pathway keeps c ≥ c_κ (the ⌊κ(n−1)⌋-th smallest contribution of the input over
// the whole network), never a dead neuron, and κ > 0 changes the gradient.
TEST(PathwayGradient, MctQuantileSelectionNeverKeepsDeadNeurons) {
  const auto x = galvani::load_tensor(kExamples + "/fashion_test.pt").narrow(0, 0, 4).to(torch::kDouble);
  const auto model = load_model(kExamples + "/fashion_cnn.pt", {torch::kCPU, torch::kDouble});
  const std::vector<std::string> layers{"features.1", "features.4", "classifier.2"};
  for (const double kappa : {0.3, 0.7, 0.95}) {
    SCOPED_TRACE(kappa);
    const auto r = run(kExamples + "/fashion_cnn.pt", x,
                       pathway("sparsity = " + std::to_string(kappa)) +
                           pathway("sparsity = " + std::to_string(kappa) + "\nper_layer = true", "per-layer"));
    const auto [act, grad] = activations(*model, layers, x, r.plan.targets);
    const auto& res = r.get("pathway-gradient", "input");
    std::vector<Tensor> mct;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      mct.push_back((act[l] * grad[l]).abs());
      EXPECT_LT(max_abs(res.extras.at("contribution." + layers[l]) - mct.back()), 1e-12) << layers[l];
    }
    const auto c = flat(mct);
    const auto live = flat(act) != 0;
    ASSERT_GT((~live).sum().item<int64_t>(), 0);  // the CNN has dead neurons to avoid
    const auto n = c.size(1);
    const auto t = std::get<0>(c.sort(1)).select(1, static_cast<int64_t>(std::floor(kappa * (n - 1))));
    EXPECT_LT(max_abs(res.extras.at("threshold") - t), 1e-15);
    const auto m = flat(masks(res, layers)) != 0;
    EXPECT_TRUE(torch::equal(m, (c >= t.unsqueeze(1)) & live));
    EXPECT_EQ((m & ~live).sum().item<int64_t>(), 0);
    EXPECT_LT(max_abs(res.extras.at("dead_fraction")), 1e-15);
    // With c_κ = 0 (more than a fraction κ of the contributions are zero) every live neuron is on the pathway and
    // the gradient is the plain one; with c_κ > 0 the restriction changes it.
    const auto plain = input_gradient(*model, x, r.plan.targets);
    for (int64_t b = 0; b < 4; ++b) {
      const double diff = max_abs(res.values[b] - plain[b]);
      if (t[b].item<double>() == 0)
        EXPECT_LT(diff, 1e-15) << b;
      else
        EXPECT_GT(diff, 1e-6) << b;
    }
    if (kappa == 0.95) EXPECT_GT(t.min().item<double>(), 0.0);
    // Per layer: each layer's own quantile.
    const auto& pl = r.get("per-layer", "input");
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto cl = mct[l].reshape({4, -1});
      const auto tl = std::get<0>(cl.sort(1)).select(1, static_cast<int64_t>(std::floor(kappa * (cl.size(1) - 1))));
      EXPECT_LT(max_abs(pl.extras.at("threshold").select(1, l) - tl), 1e-15);
      EXPECT_TRUE(torch::equal(pl.extras.at("mask." + layers[l]).reshape({4, -1}) != 0,
                               (cl >= tl.unsqueeze(1)) & (act[l].reshape({4, -1}) != 0)));
    }
  }
}

// NeuronIntGrad of layer l: a·Σₖ wₖ ∂F/∂a evaluated with aˡ scaled by αₖ (other layers as the scaled input makes
// them), recomputed here one layer and one α at a time; per layer it sums to F(x) − F(x; aˡ ← 0) up to the
// quadrature error, which shrinks with the steps.
TEST(PathwayGradient, IntGradMatchesPerLayerPathsAndCompleteness) {
  const auto x = mlp_inputs();
  const std::vector<std::string> layers{"relu1", "relu2"};
  const auto model = load_model(mlp(), {torch::kCPU, torch::kDouble});
  double previous = 1e9;
  for (const int steps : {16, 256}) {
    SCOPED_TRACE(steps);
    // internal_batch = 5 puts chunk borders inside groups and chunks across the two layers' groups.
    const auto r = run(mlp(), x,
                       pathway("contribution = \"intgrad\"\nrule = \"riemann_middle\"\ninternal_batch = 5\nsteps = " +
                                   std::to_string(steps),
                               "pathway-gradient", kMlpLayers));
    const auto& res = r.get("pathway-gradient", "input");
    const auto tapped = model->tapped(layers);
    const auto q = galvani::make_quadrature("riemann_middle", steps);
    const auto [act, grad] = activations(*model, layers, x, r.plan.targets);
    const auto f = model->forward(x).gather(1, r.plan.targets.view({-1, 1})).squeeze(1).detach();
    double worst = 0;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      auto integral = torch::zeros_like(act[l]);
      for (std::size_t k = 0; k < q.alphas.size(); ++k) {
        std::vector<Tensor> leaf(1);
        const auto out = tapped->forward(x, [&](std::size_t i, const Tensor& y) -> Tensor {
          if (i != l) return y.clone();
          leaf[0] = (y.detach() * q.alphas[k]).requires_grad_(true);
          return leaf[0] * 1;
        });
        integral += torch::autograd::grad({out.gather(1, r.plan.targets.view({-1, 1})).sum()}, leaf)[0] * q.weights[k];
      }
      const auto expected = act[l] * integral;
      EXPECT_LT(max_abs(res.extras.at("contribution." + layers[l]) - expected), 1e-12) << layers[l];
      // F(x; aˡ ← 0).
      std::vector<Tensor> zero(2);
      zero[l] = torch::zeros_like(act[l]);
      const auto f0 = model->tapped(layers)->forward(x, galvani::taps::replace(zero)).gather(1, r.plan.targets.view({-1, 1})).squeeze(1);
      const auto delta = expected.reshape({4, -1}).sum(1) - (f - f0.detach());
      EXPECT_LT(max_abs(res.extras.at("intgrad_delta").select(1, l) - delta), 1e-12) << layers[l];
      worst = std::max(worst, max_abs(delta) / max_abs(f - f0.detach()));
    }
    EXPECT_LT(worst, steps == 16 ? 0.2 : 0.02);
    EXPECT_LE(worst, previous);
    previous = worst;
  }
}

// Proposition 5: with c_κ > 0, the restricted model (off-path neurons fixed to their values at x) is linear in
// the ℓ₂ ball of radius ε̂ = min |z|/‖∇ₓz‖ over the pathway's neurons: its gradient at random points of the ball
// is the pathway gradient at x, and its output changes by exactly that gradient times the displacement.
TEST(PathwayGradient, LocalLinearityInsideTheBall) {
  const auto x = mlp_inputs();
  const std::vector<std::string> layers{"relu1", "relu2"};
  const auto r = run(mlp(), x, pathway("sparsity = 0.6", "pathway-gradient", kMlpLayers));
  const auto& res = r.get("pathway-gradient", "input");
  const auto model = load_model(mlp(), {torch::kCPU, torch::kDouble});
  const auto tapped = model->tapped(layers);
  const auto [act, grad] = activations(*model, layers, x, r.plan.targets);
  const auto plain = input_gradient(*model, x, r.plan.targets);
  torch::manual_seed(9);
  for (int64_t b = 0; b < x.size(0); ++b) {
    SCOPED_TRACE(b);
    ASSERT_GT(res.extras.at("threshold")[b].item<double>(), 0.0);
    const auto xb = x.narrow(0, b, 1);
    const auto target = r.plan.targets.narrow(0, b, 1);
    std::vector<Tensor> m, constants;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      m.push_back(res.extras.at("mask." + layers[l]).narrow(0, b, 1));
      constants.push_back(act[l].narrow(0, b, 1));
    }
    // The restricted model at x′, and the pre-activations z (= a for the live pathway neurons) on the way.
    const auto restricted = [&](const Tensor& xp, std::vector<Tensor>& z) {
      const auto blend = galvani::taps::blend(m, constants);
      return tapped->forward(xp, [&](std::size_t i, const Tensor& y) {
        z[i] = y;
        return blend(i, y);
      }).gather(1, target.view({-1, 1})).sum();
    };
    const auto x0 = xb.detach().requires_grad_(true);
    std::vector<Tensor> z(2);
    const auto f0 = restricted(x0, z);
    double eps = std::numeric_limits<double>::infinity();
    Tensor closest;  // ∇ₓz of the pathway neuron closest to switching off
    int64_t on_path = 0;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto ml = m[l].flatten();
      for (int64_t j = 0; j < ml.size(0); ++j) {
        if (ml[j].item<double>() == 0) continue;
        ++on_path;
        const auto zj = z[l].flatten()[j];
        const auto gz = torch::autograd::grad({zj}, {x0}, {}, /*retain_graph=*/true)[0];
        const double e = std::abs(zj.item<double>()) / gz.norm().item<double>();
        if (e < eps) {
          eps = e;
          closest = gz;
        }
      }
    }
    ASSERT_GT(on_path, 0);
    const auto g0 = torch::autograd::grad({f0}, {x0})[0];
    EXPECT_LT(max_abs(g0 - res.values.narrow(0, b, 1)), 1e-12);  // the plugin's gradient is the restricted one
    EXPECT_GT(max_abs(res.values.narrow(0, b, 1) - plain.narrow(0, b, 1)), 1e-6);
    for (int trial = 0; trial < 20; ++trial) {
      auto u = torch::randn_like(xb);
      u /= u.norm();
      const double radius = 0.999 * eps * std::pow(torch::rand({1}).item<double>(), 1.0 / 6);
      const auto xp = (xb + radius * u).detach().requires_grad_(true);
      std::vector<Tensor> zp(2);
      const auto fp = restricted(xp, zp);
      const auto gp = torch::autograd::grad({fp}, {xp})[0];
      EXPECT_LT(max_abs(gp - g0), 1e-12);
      EXPECT_NEAR(fp.item<double>() - f0.item<double>(), (g0 * (xp - xb)).sum().item<double>(), 1e-12);
    }
    // The radius is tight: just past ε̂ along −∇z of the neuron that attains it, that neuron switches off (it is on
    // the pathway, so ∂F/∂a ≠ 0 there) and the gradient changes.
    const auto xp = (xb - 1.01 * eps * closest / closest.norm()).detach().requires_grad_(true);
    std::vector<Tensor> zp(2);
    EXPECT_GT(max_abs(torch::autograd::grad({restricted(xp, zp)}, {xp})[0] - g0), 1e-6);
  }
}

// Another method's layer attributions as contributions: saved |a·∂F/∂a| files give the MCT pathway (rows taken
// at each shard's offset), so the Jaccard overlap with the MCT pathway is 1 and the gradients agree.
TEST(PathwayGradient, SavedAttributionsAsContributionsAndJaccard) {
  const auto x = galvani::load_tensor(kExamples + "/fashion_test.pt").narrow(0, 0, 6).to(torch::kDouble);
  const auto model = load_model(kExamples + "/fashion_cnn.pt", {torch::kCPU, torch::kDouble});
  const std::vector<std::string> layers{"features.1", "features.4", "classifier.2"};
  const auto targets = model->forward(x).argmax(1);
  const auto [act, grad] = activations(*model, layers, x, targets);
  const auto dir = galvani::testing::temp_dir() + "/saved_attributions";
  std::filesystem::create_directories(dir);
  for (std::size_t l = 0; l < layers.size(); ++l) galvani::save_tensor((act[l] * grad[l]).abs(), dir + "/" + layers[l] + ".pt");
  const auto r = run(kExamples + "/fashion_cnn.pt", x,
                     pathway("contribution = \"attributions\"\nattributions = \"" + dir +
                             "\"\ncompare = [\"mct\", \"intgrad\"]\nsteps = 4") +
                         pathway("reduce = \"sum\"", "sum") + pathway("reduce = \"max-abs\"", "max-abs") +
                         pathway("contribution = \"intgrad\"\nsteps = 4", "intgrad"));
  const auto& res = r.get("pathway-gradient", "input");
  const auto& mct = r.get("sum", "input");
  EXPECT_LT(max_abs(res.extras.at("jaccard.mct") - 1), 1e-15);
  EXPECT_LT(max_abs(res.values.sum(1, true) - mct.values), 1e-12);
  EXPECT_LT(max_abs(res.values.abs().amax(1, true) - r.get("max-abs", "input").values), 1e-12);
  // Jaccard against the IntGrad pathway, from the masks of the IntGrad run.
  const auto a = flat(masks(res, layers)) != 0, b = flat(masks(r.get("intgrad", "input"), layers)) != 0;
  const auto jac = (a & b).sum(1).to(torch::kDouble) / (a | b).sum(1).to(torch::kDouble);
  EXPECT_LT(max_abs(res.extras.at("jaccard.intgrad") - jac), 1e-15);
  EXPECT_LT(jac.max().item<double>(), 1.0);  // the two kinds do pick different neurons
  EXPECT_GT(jac.min().item<double>(), 0.0);
}

// Greedy pruning removes exactly ⌊κ·n⌋ neurons per input; unlike contribution pathways it keeps neurons that
// are dead in the original network (the paper's finding), measured by dead_fraction.
TEST(PathwayGradient, GreedyPruningKeepsDeadNeurons) {
  const auto x = galvani::load_tensor(kExamples + "/fashion_test.pt").narrow(0, 0, 4).to(torch::kDouble);
  const auto model = load_model(kExamples + "/fashion_cnn.pt", {torch::kCPU, torch::kDouble});
  const std::vector<std::string> layers{"features.1", "features.4", "classifier.2"};
  const auto r = run(kExamples + "/fashion_cnn.pt", x,
                     pathway("selection = \"greedy-pruning\"\nprune_rounds = 20", "prune") +
                         pathway("compare = [\"greedy-pruning\"]\nprune_rounds = 20", "mct"));
  const auto& prune = r.get("prune", "input");
  const auto [act, grad] = activations(*model, layers, x, r.plan.targets);
  const auto m = flat(masks(prune, layers)) != 0;
  const auto n = m.size(1);
  const auto kept = n - static_cast<int64_t>(std::floor(0.7 * n));
  for (int64_t b = 0; b < 4; ++b) EXPECT_EQ(m[b].sum().item<int64_t>(), kept);
  const auto dead = flat(act) == 0;
  const auto dead_fraction = (m & dead).sum(1).to(torch::kDouble) / m.sum(1).to(torch::kDouble);
  EXPECT_LT(max_abs(prune.extras.at("dead_fraction") - dead_fraction), 1e-15);
  EXPECT_GT(dead_fraction.min().item<double>(), 0.0);
  const auto& mct = r.get("mct", "input");
  EXPECT_LT(max_abs(mct.extras.at("dead_fraction.greedy-pruning") - dead_fraction), 1e-15);
  EXPECT_LT(max_abs(mct.extras.at("dead_fraction")), 1e-15);
  const auto c = flat(masks(mct, layers)) != 0;
  EXPECT_LT(max_abs(mct.extras.at("jaccard.greedy-pruning") -
                    (c & m).sum(1).to(torch::kDouble) / (c | m).sum(1).to(torch::kDouble)),
            1e-15);
}

// NeuronIntGrad on resnet18: the shared passes over 17 ReLU call sites (reused modules included) give, for the
// second call of a reused ReLU, the contribution of a per-layer path computed here.
TEST(PathwayGradient, Resnet18IntGradAtReusedRelu) {
  GALVANI_SKIP_WITHOUT_LARGE_FIXTURES();
  const auto path = large_fixture("resnet18_traced.pt");
  torch::manual_seed(1);
  const auto x = torch::rand({2, 3, 64, 64}, torch::kDouble);
  const auto r = run(path, x, pathway("contribution = \"intgrad\"\nsteps = 2\nrule = \"gausslegendre\""));
  const auto& res = r.get("pathway-gradient", "input");
  const auto model = load_model(path, {torch::kCPU, torch::kDouble});
  const auto q = galvani::make_quadrature("gausslegendre", 2);
  const std::vector<std::string> check{"layer1.0.relu#0", "layer1.0.relu#1"};
  const auto [act, grad] = activations(*model, check, x, r.plan.targets);
  const auto tapped = model->tapped(check);
  for (std::size_t l = 0; l < check.size(); ++l) {
    auto integral = torch::zeros_like(act[l]);
    for (std::size_t k = 0; k < q.alphas.size(); ++k) {
      std::vector<Tensor> leaf(1);
      const auto out = tapped->forward(x, [&](std::size_t i, const Tensor& y) -> Tensor {
        if (i != l) return y.clone();
        leaf[0] = (y.detach() * q.alphas[k]).requires_grad_(true);
        return leaf[0] * 1;
      });
      integral += torch::autograd::grad({out.gather(1, r.plan.targets.view({-1, 1})).sum()}, leaf)[0] * q.weights[k];
    }
    EXPECT_LT(max_abs(res.extras.at("contribution." + check[l]) - act[l] * integral), 1e-10) << check[l];
  }
  EXPECT_EQ((flat(masks(res, relu_sites(*model))) != 0).logical_and(flat(activations(*model, relu_sites(*model), x,
                                                                                        r.plan.targets).first) == 0)
                .sum()
                .item<int64_t>(),
            0);
}

TEST(PathwayGradient, ConfigErrorsNameTheOption) {
  const auto x = mlp_inputs();
  const auto expect_error = [&](const std::string& options, const std::string& fragment) {
    try {
      run(mlp(), x, pathway(options, "pathway-gradient", kMlpLayers));
      ADD_FAILURE() << "no error for " << options;
    } catch (const galvani::Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error("compare = [\"saliency\"]", "methods[0].compare");
  expect_error("contribution = \"attributions\"", "methods[0].attributions");
  expect_error("selection = \"greedy-pruning\"\ncontribution = \"mct\"", "methods[0].contribution");
  expect_error("reduce = \"sum\"", "reduce = \"none\"");
  expect_error("sparsity = 1.5", "methods[0].sparsity");
}

// A functional relu in the root forward (no module) is a call site like a ReLU module: by default the pathway
// covers both, named `:relu` and `relu2:relu`; contributions and the restricted gradient match a hand computation.
TEST(PathwayGradient, FunctionalReluIsACallSite) {
  torch::manual_seed(11);
  const auto w1 = torch::randn({6, 12}, torch::kDouble), b1 = torch::randn({12}, torch::kDouble) * 0.5;
  const auto w2 = torch::randn({12, 8}, torch::kDouble), b2 = torch::randn({8}, torch::kDouble) * 0.5;
  const auto w3 = torch::randn({8, 3}, torch::kDouble);
  torch::jit::Module root("__torch__.FunctionalRelu");
  root.register_parameter("w1", w1, false);
  root.register_parameter("b1", b1, false);
  root.register_parameter("w2", w2, false);
  root.register_parameter("b2", b2, false);
  root.register_parameter("w3", w3, false);
  torch::jit::Module relu2("__torch__.FunctionalRelu_relu2");
  relu2.define("def forward(self, x):\n  return torch.relu(x)\n");
  root.register_module("relu2", relu2);
  root.define(
      "def forward(self, x):\n  h = torch.relu(torch.matmul(x, self.w1) + self.b1)\n"
      "  return torch.matmul(self.relu2.forward(torch.matmul(h, self.w2) + self.b2), self.w3)\n");
  const auto path = galvani::testing::temp_dir() + "/functional_relu.pt";
  root.save(path);

  const auto x = mlp_inputs();
  const auto r = run(path, x, pathway("contribution = \"mct\"\nsparsity = 0.6"));
  const auto& res = r.get("pathway-gradient", "input");
  ASSERT_TRUE(res.extras.count("mask.:relu"));
  ASSERT_TRUE(res.extras.count("mask.relu2:relu"));
  EXPECT_EQ(res.extras.at("sparsity").size(1), 2);

  const auto t = r.plan.targets;
  const auto z1 = torch::matmul(x, w1) + b1, a1 = torch::relu(z1);
  const auto z2 = torch::matmul(a1, w2) + b2, a2 = torch::relu(z2);
  const auto w3t = w3.t().index_select(0, t);                       // [B, 8]: ∂F/∂a2
  const auto g1 = torch::matmul(w3t * (z2 > 0).to(torch::kDouble), w2.t());  // ∂F/∂a1
  EXPECT_LT(max_abs(res.extras.at("contribution.:relu") - (a1 * g1).abs()), 1e-12);
  EXPECT_LT(max_abs(res.extras.at("contribution.relu2:relu") - (a2 * w3t).abs()), 1e-12);

  // Off-path neurons are constants: the gradient flows through on-path, active units only.
  const auto m1 = res.extras.at("mask.:relu") * (z1 > 0).to(torch::kDouble);
  const auto m2 = res.extras.at("mask.relu2:relu") * (z2 > 0).to(torch::kDouble);
  const auto selected = (m1.sum() + m2.sum()).item<double>();
  EXPECT_GT(selected, 0.0);
  EXPECT_LT(selected, static_cast<double>(x.size(0) * 20));  // some units dropped
  const auto expected = torch::matmul(torch::matmul(w3t * m2, w2.t()) * m1, w1.t());
  EXPECT_LT(max_abs(res.values - expected), 1e-12);
}
