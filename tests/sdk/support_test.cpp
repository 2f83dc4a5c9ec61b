// The SDK's shared plugin helpers: unit kinds, result filters, statistics, file names, against hand values.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/forward_grad.h>

#include <cmath>

#include "galvani/support.h"
#include "galvani/tap.h"
#include "galvani/tensor_io.h"

using galvani::UnitKind;

namespace {

galvani::MethodResult result(const std::string& method, const std::string& layer) {
  galvani::MethodResult r;
  r.method = method;
  r.layer = layer;
  return r;
}

galvani::Options options(const std::string& path, std::map<std::string, galvani::OptionValue> table) {
  return galvani::Options(path, std::move(table));
}

galvani::OptionValue strings(const std::vector<std::string>& v) {
  std::vector<galvani::OptionValue> items;
  for (const auto& s : v) items.push_back(galvani::OptionValue::string(s));
  return galvani::OptionValue::list(std::move(items));
}

}  // namespace

TEST(Support, UnitKindsFollowTheLayerShape) {
  const std::vector<std::int64_t> conv{8, 14, 14}, dense{64}, scalar{1};
  EXPECT_EQ(galvani::unit_kind({8, 14, 14}, conv), UnitKind::Neuron);
  EXPECT_EQ(galvani::unit_kind({8}, conv), UnitKind::Filter);
  EXPECT_EQ(galvani::unit_kind({1}, conv), UnitKind::Layer);
  EXPECT_EQ(galvani::unit_kind({64}, dense), UnitKind::Neuron);
  EXPECT_EQ(galvani::unit_kind({1}, dense), UnitKind::Layer);
  EXPECT_EQ(galvani::unit_kind({1}, scalar), UnitKind::Neuron);
  EXPECT_FALSE(galvani::unit_kind({14, 14}, conv).has_value());
  EXPECT_FALSE(galvani::unit_kind({8}, dense).has_value());
  EXPECT_EQ(galvani::unit_count(UnitKind::Neuron, conv), 8 * 14 * 14);
  EXPECT_EQ(galvani::unit_count(UnitKind::Filter, conv), 8);
  EXPECT_EQ(galvani::unit_count(UnitKind::Layer, conv), 1);
  EXPECT_STREQ(galvani::to_string(UnitKind::Filter), "filter");
}

TEST(Support, ResultFilterSelectsAndRefusesNamesTheRunLacks) {
  const std::vector<galvani::MethodResult> run{result("nig", "fc1"), result("nig", "fc2"), result("deeplift", "fc1")};
  const galvani::ResultFilter all;
  for (const auto& r : run) EXPECT_TRUE(all.accepts(r));
  const galvani::ResultFilter nig_fc1(
      options("evaluators[1]", {{"methods", strings({"nig"})}, {"layers", strings({"fc1"})}}));
  EXPECT_TRUE(nig_fc1.accepts(run[0]));
  EXPECT_FALSE(nig_fc1.accepts(run[1]));
  EXPECT_FALSE(nig_fc1.accepts(run[2]));
  EXPECT_NO_THROW(nig_fc1.check(run));
  const galvani::ResultFilter typo(options("evaluators[1]", {{"layers", strings({"fc1", "fc3"})}}));
  try {
    typo.check(run);
    FAIL() << "a layer without results was accepted";
  } catch (const galvani::ConfigError& e) {
    EXPECT_STREQ(e.what(), "evaluators[1].layers: no layer \"fc3\" in this run; the run has \"fc1\", \"fc2\"");
  }
  // Without layers the key is not read, so check_all_used still refuses it.
  const auto o = options("evaluators[0]", {{"layers", strings({"fc1"})}});
  const galvani::ResultFilter methods_only(o, /*with_layers=*/false);
  EXPECT_TRUE(methods_only.accepts(run[1]));
  EXPECT_THROW(o.check_all_used(), galvani::ConfigError);
}

TEST(Support, LayerFileNames) {
  EXPECT_EQ(galvani::layer_file_name("layer1.0.conv2"), "layer1.0.conv2");
  EXPECT_EQ(galvani::layer_file_name("a/b\\c"), "a_b_c");
}

TEST(Support, StatisticsAgainstHandValues) {
  using namespace galvani::stats;
  EXPECT_DOUBLE_EQ(mean({1.0, 2.0, 6.0}), 3.0);
  EXPECT_TRUE(std::isnan(mean({})));
  EXPECT_DOUBLE_EQ(quantile({4.0, 1.0, 3.0, 2.0}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(quantile({4.0, 1.0, 3.0, 2.0}, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(quantile({4.0, 1.0, 3.0, 2.0}, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(quantile({10.0, 20.0}, 0.25), 12.5);
  EXPECT_TRUE(std::isnan(quantile({}, 0.5)));
  // x = 1..4, y = 2, 4, 5, 4: r = Σ dx dy / sqrt(Σ dx² Σ dy²) = 3.5 / sqrt(5 · 4.75).
  EXPECT_NEAR(pearson({1, 2, 3, 4}, {2, 4, 5, 4}), 3.5 / std::sqrt(5.0 * 4.75), 1e-15);
  EXPECT_NEAR(pearson({1, 2, 3}, {-2, -4, -6}), -1.0, 1e-15);
  EXPECT_TRUE(std::isnan(pearson({1, 1, 1}, {1, 2, 3})));
  EXPECT_TRUE(std::isnan(pearson({2, 2}, {5, 5})));
  const auto r = ranks(torch::tensor({{3.0, 1.0, 3.0, 2.0}}, torch::kDouble));
  EXPECT_TRUE(torch::equal(r, torch::tensor({{2.5, 0.0, 2.5, 1.0}}, torch::kDouble))) << r;
  const auto a = torch::tensor({{1.0, 2.0, 3.0, 4.0}, {1.0, 2.0, 3.0, 4.0}, {5.0, 5.0, 5.0, 5.0}}, torch::kDouble);
  const auto b = torch::tensor({{10.0, 20.0, 30.0, 40.0}, {4.0, 3.0, 2.0, 1.0}, {1.0, 2.0, 3.0, 4.0}}, torch::kDouble);
  const auto rho = spearman(a, b);
  EXPECT_DOUBLE_EQ(rho[0].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(rho[1].item<double>(), -1.0);
  EXPECT_TRUE(std::isnan(rho[2].item<double>()));
  // With a tie: ranks (0, 1, 2.5, 2.5) against (0, 2, 1, 3): ρ = Σ(ra−1.5)(rb−1.5) / sqrt(4.5 · 5) = 3 / sqrt(22.5).
  const auto tie = spearman(torch::tensor({{1.0, 2.0, 7.0, 7.0}}, torch::kDouble),
                            torch::tensor({{0.1, 0.3, 0.2, 0.4}}, torch::kDouble));
  EXPECT_NEAR(tie[0].item<double>(), 3.0 / std::sqrt(22.5), 1e-15);
}

// galvani::linear (what the TorchScript backend runs in place of aten::linear): aten::linear's values, input
// gradients and tangents, across its blocks of 32 rows, for 2-D and 3-D inputs, with and without bias, and
// aten::linear itself for float64.
TEST(Support, DenseLinearIsAtenLinear) {
  torch::manual_seed(21);
  const auto w = torch::randn({10, 48});
  const auto b = torch::randn({10});
  for (const auto& shape : std::vector<std::vector<std::int64_t>>{{7, 48}, {75, 48}, {3, 30, 48}, {1, 48}}) {
    for (const bool with_bias : {true, false}) {
      SCOPED_TRACE(galvani::shape_string(shape) + (with_bias ? " with bias" : " without bias"));
      const auto x = torch::randn(shape, torch::requires_grad());
      const c10::optional<torch::Tensor> bias = with_bias ? c10::optional<torch::Tensor>(b) : c10::nullopt;
      const auto y = galvani::dense_linear(x, w, bias);
      const auto ref = at::linear(x, w, with_bias ? b : torch::Tensor());
      ASSERT_EQ(y.sizes(), ref.sizes());
      EXPECT_TRUE(torch::allclose(y, ref, 1e-4, 1e-5)) << (y - ref).abs().max();
      const auto probe = torch::randn(ref.sizes());
      const auto g = torch::autograd::grad({(y * probe).sum()}, {x})[0];
      const auto g_ref = torch::autograd::grad({(ref * probe).sum()}, {x})[0];
      EXPECT_TRUE(torch::allclose(g, g_ref, 1e-4, 1e-5)) << (g - g_ref).abs().max();
    }
  }
  {
    // Forward mode: the tangent of x·Wᵀ + b along v is v·Wᵀ.
    const auto x = torch::randn({40, 48});
    const auto v = torch::randn({40, 48});
    const auto level = static_cast<std::int64_t>(torch::autograd::ForwardADLevel::get_next_idx());
    torch::Tensor tangent;
    {
      torch::NoGradGuard no_grad;
      const auto y = galvani::dense_linear(at::_make_dual(x, v, level), w, b);
      tangent = std::get<1>(at::_unpack_dual(y, level)).clone();
    }
    torch::autograd::ForwardADLevel::release_idx(static_cast<std::uint64_t>(level));
    EXPECT_TRUE(torch::allclose(tangent, v.matmul(w.t()), 1e-4, 1e-5));
  }
  const auto xd = torch::randn({5, 48}, torch::kDouble);
  EXPECT_TRUE(torch::equal(galvani::dense_linear(xd, w.to(torch::kDouble), b.to(torch::kDouble)),
                           at::linear(xd, w.to(torch::kDouble), b.to(torch::kDouble))));
}
