// The shapley-sampling method: exact enumeration against a brute-force permutation average computed here with
// full forwards, sampling against exact values, the Shapley axioms, variance behaviour, reproducibility.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "galvani/tap.h"
#include "test_support.h"

using galvani::testing::large_fixture;
using galvani::testing::load_model;
using galvani::testing::run_config;
using galvani::testing::save_script_model;
using galvani::testing::save_temp_tensor;

namespace {

// Six hidden units; units 0 and 1 have the same incoming and outgoing weights (symmetric players), unit 5
// has zero outgoing weights (a null player). The tail is nonlinear (tanh), so units interact.
const std::string& six_units() {
  static const std::string path = save_script_model(
      "shapley_six",
      {{"hidden",
        "def forward(self, x):\n"
        "  w = torch.tensor([[1.0, 1.0, -0.5, 0.8, 0.3, 0.6], [0.5, 0.5, 1.0, -0.4, 0.9, 0.2]]).double()\n"
        "  b = torch.tensor([0.2, 0.2, 0.1, 0.3, -0.1, 0.4]).double()\n"
        "  return torch.relu(torch.matmul(x, w) + b)\n"}},
      "def forward(self, x):\n"
      "  h = self.hidden.forward(x)\n"
      "  w2 = torch.tensor([[0.9, -0.4, 0.6], [0.9, -0.4, 0.6], [-0.7, 0.8, 0.5], [0.5, 0.3, -0.9], "
      "[1.1, 0.6, 0.2], [0.0, 0.0, 0.0]]).double()\n"
      "  b2 = torch.tensor([-0.2, 0.1, 0.3]).double()\n"
      "  w3 = torch.tensor([[1.5, -1.0], [1.0, 0.5], [-0.8, 1.0]]).double()\n"
      "  return torch.matmul(torch.tanh(torch.matmul(h, w2) + b2), w3)\n");
  return path;
}

// A hidden layer of shape [3, 2] (three "filters" of two values each).
const std::string& grid_model() {
  static const std::string path = save_script_model(
      "shapley_grid",
      {{"hidden",
        "def forward(self, x):\n"
        "  w = torch.tensor([[1.0, -0.5, 0.8, 0.3, 0.6, -0.2], [0.5, 1.0, -0.4, 0.9, 0.2, 0.7]]).double()\n"
        "  return torch.relu(torch.matmul(x, w) + 0.1).view(-1, 3, 2)\n"}},
      "def forward(self, x):\n"
      "  h = self.hidden.forward(x).reshape(-1, 6)\n"
      "  w2 = torch.tensor([[0.9, -0.4], [0.2, 0.6], [-0.7, 0.8], [0.5, 0.3], [1.1, 0.6], [-0.3, 0.4]]).double()\n"
      "  return torch.tanh(torch.matmul(h, w2) - 0.2) * 2.0\n");
  return path;
}

const torch::Tensor& inputs() {
  static const torch::Tensor x = torch::tensor({{1.0, 0.5}, {0.3, 1.2}, {2.0, -0.5}}, torch::kDouble);
  return x;
}
const torch::Tensor& baselines() {
  static const torch::Tensor b = torch::tensor({{0.1, 0.2}, {-0.3, 0.1}, {0.0, 0.4}}, torch::kDouble);
  return b;
}

std::string toml(const std::string& model, const torch::Tensor& x, const torch::Tensor& xb,
                 const std::string& method, const std::string& run = "") {
  static int counter = 0;
  const auto id = std::to_string(counter++);
  return "[model]\npath = \"" + model + "\"\ndtype = \"float64\"\n[data]\ninputs = \"" +
         save_temp_tensor(x, "shapley_x" + id + ".pt") + "\"\nbaselines = \"" +
         save_temp_tensor(xb, "shapley_b" + id + ".pt") + "\"\ntarget = 0\n[run]\nprecision = \"double\"\n" + run +
         "[[methods]]\nplugin = \"shapley-sampling\"\nlayers = [\"hidden\"]\n" + method;
}

galvani::MethodResult shapley(const std::string& model, const std::string& method, const std::string& run = "",
                              const torch::Tensor& x = inputs(), const torch::Tensor& xb = baselines()) {
  return run_config(toml(model, x, xb, method, run)).get("shapley-sampling", "hidden");
}

// The game computed independently of the plugin: every coalition (a 0/1 mask over `players` element masks)
// evaluated by a full forward with the layer replaced, then v per coalition bitmask for input b.
std::vector<double> brute_force_game(const std::string& model_path, const torch::Tensor& players, int64_t b) {
  auto model = load_model(model_path, {torch::kCPU, torch::kDouble});
  torch::NoGradGuard ng;
  auto tapped = model->tapped({"hidden"});
  std::vector<torch::Tensor> cap;
  tapped->forward(torch::cat({inputs().narrow(0, b, 1), baselines().narrow(0, b, 1)}), galvani::taps::capture(cap));
  const auto a = cap[0][0], r = cap[0][1];
  const int64_t n = players.size(0);
  std::vector<double> v;
  for (int64_t m = 0; m < (int64_t{1} << n); ++m) {
    auto mask = torch::zeros_like(a);
    for (int64_t u = 0; u < n; ++u)
      if (m >> u & 1) mask += players[u];
    std::vector<torch::Tensor> replacement{(a * mask + r * (1 - mask)).unsqueeze(0)};
    v.push_back(tapped->forward(inputs().narrow(0, b, 1), galvani::taps::replace(replacement))[0][0].item<double>());
  }
  return v;
}

// Shapley values as the average marginal contribution over all n! orderings.
std::vector<double> permutation_average(const std::vector<double>& v, int64_t n) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::vector<double> phi(n, 0.0);
  double count = 0;
  do {
    int64_t m = 0;
    for (auto u : order) {
      phi[u] += v[m | (int64_t{1} << u)] - v[m];
      m |= int64_t{1} << u;
    }
    ++count;
  } while (std::next_permutation(order.begin(), order.end()));
  for (auto& p : phi) p /= count;
  return phi;
}

torch::Tensor neuron_players(int64_t n) { return torch::eye(n, torch::kDouble); }

void expect_error(const std::string& config, const std::string& needle) {
  try {
    run_config(config);
    ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
  } catch (const galvani::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(ShapleySampling, ExactEnumerationMatchesBruteForcePermutationAverage) {
  const auto r = shapley(six_units(), "exact = true\n");
  ASSERT_EQ(r.values.sizes(), (std::vector<int64_t>{3, 6}));
  for (int64_t b = 0; b < 3; ++b) {
    const auto phi = permutation_average(brute_force_game(six_units(), neuron_players(6), b), 6);
    for (int64_t u = 0; u < 6; ++u) EXPECT_NEAR(r.values[b][u].item<double>(), phi[u], 1e-12) << b << "," << u;
  }
  EXPECT_TRUE(torch::equal(r.extras.at("stderr"), torch::zeros({3, 6}, torch::kDouble)));
  EXPECT_TRUE(torch::equal(r.extras.at("permutations"), torch::full({3}, 720, torch::kLong)));
  EXPECT_LT(r.extras.at("efficiency").abs().max().item<double>(), 1e-12);
  // v(all) and v(∅) are F(x) and F(x′): the delta against the full forwards vanishes too.
  EXPECT_LT(r.delta.abs().max().item<double>(), 1e-12);
  // Symmetry and null player, exactly.
  EXPECT_NEAR((r.values.select(1, 0) - r.values.select(1, 1)).abs().max().item<double>(), 0.0, 1e-14);
  EXPECT_LT(r.values.select(1, 5).abs().max().item<double>(), 1e-14);
  EXPECT_GT(r.values.select(1, 0).abs().min().item<double>(), 1e-3);  // not trivially zero
}

// A baseline shared by all inputs runs through the head once (N + 1 rows, not 2N): the same values, errors and
// deltas as per-input baselines for the inputs whose baseline is the same (only the last one's differs).
TEST(ShapleySampling, SharedBaselineRunsOnceWithTheSameValues) {
  const auto shared = baselines().narrow(0, 0, 1).expand({3, 2}).contiguous();
  auto paired = shared.clone();
  paired[2] = torch::tensor({0.5, -0.6}, torch::kDouble);
  for (const std::string method : {"exact = true\n", "max_permutations = 6\nseed = 4\n"}) {
    SCOPED_TRACE(method);
    const auto one = shapley(six_units(), method, "", inputs(), shared);
    const auto two = shapley(six_units(), method, "", inputs(), paired);
    EXPECT_TRUE(torch::allclose(one.values.narrow(0, 0, 2), two.values.narrow(0, 0, 2), 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(one.delta.narrow(0, 0, 2), two.delta.narrow(0, 0, 2), 1e-12, 1e-12));
    EXPECT_FALSE(torch::allclose(one.values[2], two.values[2], 1e-6, 1e-6));
    EXPECT_GT(one.values.abs().max().item<double>(), 1e-3);
    EXPECT_LT(one.delta.abs().max().item<double>(), 1e-12);
    EXPECT_LT(two.delta.abs().max().item<double>(), 1e-12);
  }
}

TEST(ShapleySampling, LinearTailGivesWeightTimesDifferenceWithZeroError) {
  // F = Σ wᵢ·hᵢ: every marginal contribution is wᵢ·(aᵢ − rᵢ), whatever the coalition.
  const auto model = save_script_model(
      "shapley_linear", {{"hidden", "def forward(self, x):\n  return x * 2.0 + 1.0\n"}},
      "def forward(self, x):\n  return torch.matmul(self.hidden.forward(x), torch.tensor([[3.0], [-0.5]]).double())\n");
  const auto w = torch::tensor({3.0, -0.5}, torch::kDouble);
  const auto a = inputs() * 2 + 1;
  auto r = shapley(model, "max_permutations = 8\nseed = 3\n");
  EXPECT_TRUE(torch::allclose(r.values, w * (a - (baselines() * 2 + 1)), 1e-12, 1e-12));
  EXPECT_LT(r.extras.at("stderr").abs().max().item<double>(), 1e-12);
  // Against zero activations, no delta (the reference is no input's activation).
  r = shapley(model, "max_permutations = 8\nreference = \"zero\"\n");
  EXPECT_TRUE(torch::allclose(r.values, w * a, 1e-12, 1e-12));
  EXPECT_FALSE(r.delta.defined());
  EXPECT_LT(r.extras.at("efficiency").abs().max().item<double>(), 1e-12);
}

TEST(ShapleySampling, SamplingIsWithinThreeStandardErrorsOfExactAndEfficient) {
  const auto exact = shapley(six_units(), "exact = true\n").values;
  for (const bool antithetic : {true, false}) {
    SCOPED_TRACE(antithetic);
    const auto r = shapley(six_units(), "max_permutations = 200\nseed = 1\nantithetic = " +
                                            std::string(antithetic ? "true" : "false") + "\n");
    const auto se = r.extras.at("stderr");
    EXPECT_TRUE(torch::equal(r.extras.at("permutations"), torch::full({3}, 200, torch::kLong)));
    EXPECT_TRUE(((r.values - exact).abs() <= 3 * se).all().item<bool>()) << r.values - exact << se;
    // Errors are real: the estimate is not exact and the standard errors are not zero.
    EXPECT_GT((r.values - exact).abs().max().item<double>(), 1e-6);
    EXPECT_GT(se.narrow(1, 0, 5).min().item<double>(), 1e-6);
    // Efficiency holds for every permutation, hence exactly for the estimate.
    EXPECT_LT(r.extras.at("efficiency").abs().max().item<double>(), 1e-12);
    EXPECT_LT(r.delta.abs().max().item<double>(), 1e-12);
    // A null player contributes nothing along any permutation.
    EXPECT_LT(r.values.select(1, 5).abs().max().item<double>(), 1e-14);
    EXPECT_LT(se.select(1, 5).abs().max().item<double>(), 1e-14);
    // Symmetric units agree within their standard errors.
    const auto d = (r.values.select(1, 0) - r.values.select(1, 1)).abs();
    EXPECT_TRUE((d <= 3 * (se.select(1, 0) + se.select(1, 1))).all().item<bool>());
  }
}

namespace {

// Many independent estimates of the same values: one input repeated, each row seeded by its own index.
struct Spread {
  double variance = 0;  // empirical variance of the estimates, mean over units
  double mean_se = 0;   // reported standard error, mean over rows and units
  double mean_se2 = 0;  // reported variance of the estimate, mean over rows and units
};

Spread spread(const std::string& options) {
  const int64_t rows = 300;
  const auto x = inputs().narrow(0, 0, 1).expand({rows, 2}).contiguous();
  const auto xb = baselines().narrow(0, 0, 1).expand({rows, 2}).contiguous();
  const auto r = shapley(six_units(), options, "", x, xb);
  const auto v = r.values.narrow(1, 0, 5), se = r.extras.at("stderr").narrow(1, 0, 5);  // unit 5 is null
  return {v.var(0).mean().item<double>(), se.mean().item<double>(), se.pow(2).mean().item<double>()};
}

}  // namespace

TEST(ShapleySampling, AntitheticPairsHaveLowerVarianceThanPlainSampling) {
  const auto antithetic = spread("max_permutations = 8\nantithetic = true\n");
  const auto plain = spread("max_permutations = 8\nantithetic = false\n");
  // Same number of permutations (and tail forwards) per estimate; measured here: a fifth of the variance.
  EXPECT_LT(antithetic.variance, 0.5 * plain.variance) << antithetic.variance << " vs " << plain.variance;
  // The reported standard errors estimate the spread they describe.
  for (const auto& s : {antithetic, plain}) {
    EXPECT_GT(s.mean_se2 / s.variance, 0.7);
    EXPECT_LT(s.mean_se2 / s.variance, 1.4);
  }
}

TEST(ShapleySampling, StandardErrorShrinksLikeOneOverSquareRootOfN) {
  const auto few = spread("max_permutations = 16\n");
  const auto many = spread("max_permutations = 256\n");  // 16× the permutations: errors 4× smaller
  EXPECT_NEAR(few.mean_se / many.mean_se, 4.0, 0.5);
  EXPECT_NEAR(std::sqrt(few.variance / many.variance), 4.0, 0.8);
}

TEST(ShapleySampling, SameSeedSameValuesWhateverThreadsAndShards) {
  const std::string method = "max_permutations = 12\nseed = 5\n";
  const auto one = shapley(six_units(), method, "threads = 1\n");
  for (const std::string run : {"threads = 2\nshard_size = 1\n", "threads = 2\nshard_size = 2\n"}) {
    SCOPED_TRACE(run);
    const auto other = shapley(six_units(), method, run);
    EXPECT_TRUE(torch::equal(one.values, other.values));
    EXPECT_TRUE(torch::equal(one.extras.at("stderr"), other.extras.at("stderr")));
  }
  const auto reseeded = shapley(six_units(), "max_permutations = 12\nseed = 6\n");
  EXPECT_FALSE(torch::allclose(one.values, reseeded.values, 1e-9, 1e-9));
}

TEST(ShapleySampling, TargetStandardErrorStopsEarly) {
  auto r = shapley(six_units(), "max_permutations = 100000\ntarget_se = 0.01\n");
  auto used = r.extras.at("permutations");
  EXPECT_LT(used.max().item<int64_t>(), 100000);
  EXPECT_TRUE((r.extras.at("stderr").amax(1) <= 0.01).all().item<bool>());
  // Checked every 16 permutations: one check earlier the target was not met (it took more than one round).
  EXPECT_GT(used.min().item<int64_t>(), 16);
  // Relative to the range of the values of each input.
  r = shapley(six_units(), "max_permutations = 100000\ntarget_se = 0.02\ntarget_se_relative = true\n");
  const auto range = r.values.amax(1) - r.values.amin(1);
  EXPECT_TRUE((r.extras.at("stderr").amax(1) <= 0.02 * range).all().item<bool>());
  EXPECT_LT(r.extras.at("permutations").max().item<int64_t>(), 100000);
  // Without a target every input runs to max_permutations.
  r = shapley(six_units(), "max_permutations = 20\ncheck_every = 4\n");
  EXPECT_TRUE(torch::equal(r.extras.at("permutations"), torch::full({3}, 20, torch::kLong)));
}

TEST(ShapleySampling, FiltersGroupsAndWholeLayer) {
  // Filters: the three rows of the [3, 2] layer are the players.
  auto filters = torch::zeros({3, 3, 2}, torch::kDouble);
  for (int64_t c = 0; c < 3; ++c) filters[c][c].fill_(1);
  const auto by_filter = shapley(grid_model(), "exact = true\nunit = \"filter\"\n");
  ASSERT_EQ(by_filter.values.sizes(), (std::vector<int64_t>{3, 3}));
  for (int64_t b = 0; b < 3; ++b) {
    const auto phi = permutation_average(brute_force_game(grid_model(), filters, b), 3);
    for (int64_t u = 0; u < 3; ++u) EXPECT_NEAR(by_filter.values[b][u].item<double>(), phi[u], 1e-12);
  }
  // The same players given as group ids and as masks.
  const auto ids = save_temp_tensor(torch::tensor({{0, 0}, {1, 1}, {2, 2}}, torch::kLong), "grid_ids.pt");
  const auto masks = save_temp_tensor(filters, "grid_masks.pt");
  for (const auto& file : {ids, masks}) {
    const auto g = shapley(grid_model(), "exact = true\ngroups = \"" + file + "\"\n");
    EXPECT_TRUE(torch::allclose(g.values, by_filter.values, 1e-14, 1e-14));
  }
  // Groups across filters, sampled: within 3 standard errors of the brute-force values.
  auto mixed = torch::zeros({3, 3, 2}, torch::kDouble);
  mixed[0][0][0] = mixed[0][1][1] = 1;
  mixed[1][0][1] = mixed[1][2][0] = 1;
  mixed[2][1][0] = mixed[2][2][1] = 1;
  const auto g = shapley(grid_model(), "max_permutations = 64\ngroups = \"" +
                                           save_temp_tensor(mixed.to(torch::kBool), "grid_mixed.pt") + "\"\n");
  for (int64_t b = 0; b < 3; ++b) {
    const auto phi = permutation_average(brute_force_game(grid_model(), mixed, b), 3);
    for (int64_t u = 0; u < 3; ++u)
      EXPECT_LE(std::abs(g.values[b][u].item<double>() - phi[u]), 3 * g.extras.at("stderr")[b][u].item<double>());
  }
  // Neurons keep the layer's shape; the whole layer as one player gets F(x) − F(x′).
  EXPECT_EQ(shapley(grid_model(), "max_permutations = 4\n").values.sizes(), (std::vector<int64_t>{3, 3, 2}));
  const auto whole = run_config(toml(grid_model(), inputs(), baselines(), "max_permutations = 4\nunit = \"layer\"\n"));
  const auto& w = whole.get("shapley-sampling", "hidden");
  EXPECT_TRUE(torch::allclose(w.values.flatten(), whole.result.f_input - whole.result.f_baseline, 1e-12, 1e-12));
}

TEST(ShapleySampling, ResNetChannelGroupsWithAndWithoutACleanCut) {
  GALVANI_SKIP_WITHOUT_LARGE_FIXTURES();
  const auto path = large_fixture("resnet18_traced.pt");
  torch::manual_seed(0);
  const auto x = torch::rand({1, 3, 16, 16}, torch::kDouble);
  const auto xb = torch::rand({1, 3, 16, 16}, torch::kDouble) * 0.1;
  const std::string cfg = "[model]\npath = \"" + path + "\"\ndtype = \"float64\"\n[data]\ninputs = \"" +
                          save_temp_tensor(x, "rn_x.pt") + "\"\nbaselines = \"" + save_temp_tensor(xb, "rn_b.pt") +
                          "\"\ntarget = 3\n[run]\nprecision = \"double\"\n";
  auto model = load_model(path, {torch::kCPU, torch::kDouble});
  // Eight players of eight channels each keep the float64 tails few (7 coalitions per permutation).
  const auto groups = save_temp_tensor(
      torch::arange(64, torch::kLong).div(8, "floor").view({64, 1, 1}).expand({64, 4, 4}).contiguous(), "rn_groups.pt");
  for (const std::string layer : {"layer1", "layer1.0.conv2"}) {
    SCOPED_TRACE(layer);
    const auto run = run_config(cfg + "[[methods]]\nplugin = \"shapley-sampling\"\nlayers = [\"" + layer +
                                "\"]\ngroups = \"" + groups + "\"\nmax_permutations = 4\n");
    const auto& r = run.get("shapley-sampling", layer);
    ASSERT_EQ(r.values.sizes(), (std::vector<int64_t>{1, 8}));
    EXPECT_GT(r.values.abs().max().item<double>(), 1e-6);
    const auto efficiency = r.extras.at("efficiency");
    EXPECT_LT(efficiency.abs().max().item<double>(), 1e-10);
    // delta − efficiency = (v(all) − v(∅)) − (F(x) − F(x′)) with v(all) = F(x); v(∅) runs x with the layer at
    // its activation on x′, computed here by a full forward with the layer replaced.
    torch::NoGradGuard ng;
    auto tapped = model->tapped({layer});
    std::vector<torch::Tensor> cap;
    tapped->forward(xb, galvani::taps::capture(cap));
    const auto v_none = tapped->forward(x, galvani::taps::replace(cap)).select(1, 3);
    const auto expected = run.result.f_baseline - v_none;
    EXPECT_TRUE(torch::allclose(r.delta - efficiency, expected, 1e-9, 1e-9)) << r.delta << expected;
    if (layer == "layer1") {
      // A clean cut: nothing bypasses the layer, so v(∅) = F(x′) and the delta vanishes.
      EXPECT_TRUE(r.notes.empty());
      EXPECT_LT(r.delta.abs().max().item<double>(), 1e-9);
    } else {
      // The identity branch around conv2 still carries x: full forwards, a note, and v(∅) ≠ F(x′).
      ASSERT_EQ(r.notes.size(), 1u);
      EXPECT_NE(r.notes[0].find("cannot be cut cleanly"), std::string::npos);
      EXPECT_GT(expected.abs().max().item<double>(), 1e-6);
    }
  }
}

TEST(ShapleySampling, ConfigurationErrorsNameTheOption) {
  expect_error(toml(six_units(), inputs(), baselines(), "max_permutations = 5\n"), "max_permutations");
  expect_error(toml(six_units(), inputs(), baselines(), "check_every = 3\n"), "check_every");
  expect_error(toml(six_units(), inputs(), baselines(), "max_permutations = 2\n"), "at least 2 antithetic pairs");
  expect_error(toml(six_units(), inputs(), baselines(), "reference = \"mean\"\n"), "reference");
  expect_error(toml(six_units(), inputs(), baselines(), "max_permutation = 8\n"), "max_permutation");
  const auto ids = save_temp_tensor(torch::zeros({6}, torch::kLong), "six_ids.pt");
  expect_error(toml(six_units(), inputs(), baselines(), "unit = \"filter\"\ngroups = \"" + ids + "\"\n"),
               "either unit or groups");
  expect_error(toml(grid_model(), inputs(), baselines(), "groups = \"" + ids + "\"\n"), "does not fit");
  const auto gap = save_temp_tensor(torch::tensor({0, 0, 2, 2, 2, 2}, torch::kLong), "gap_ids.pt");
  expect_error(toml(six_units(), inputs(), baselines(), "groups = \"" + gap + "\"\n"), "no element in group 1");
  const auto overlap = save_temp_tensor(torch::ones({2, 6}, torch::kDouble), "overlap.pt");
  expect_error(toml(six_units(), inputs(), baselines(), "groups = \"" + overlap + "\"\n"), "exactly one group");
  // 13 units are too many to enumerate.
  const auto wide = save_script_model("shapley_wide", {{"hidden", "def forward(self, x):\n  return x.repeat(1, 7)[:, 0:13]\n"}},
                                      "def forward(self, x):\n  return self.hidden.forward(x).sum(1, keepdim=True)\n");
  expect_error(toml(wide, inputs(), baselines(), "exact = true\n"), "limited to 12 units");
}
