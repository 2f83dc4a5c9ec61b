// Input degradation on F(x) = w·x with Integrated Gradients (exactly wᵢxᵢ from a zero baseline): removing
// feature i to zero lowers F by wᵢxᵢ, so the MoRF and LeRF curves are partial sums of the sorted contributions.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "test_support.h"

using galvani::testing::run_config;
using galvani::testing::save_temp_tensor;

namespace {

std::map<std::string, double> metrics(const galvani::testing::Run& r, const std::string& method) {
  std::map<std::string, double> out;
  for (const auto& [name, e] : r.result.evaluations)
    for (const auto& m : e.metrics)
      if (m.method == method) out[m.name] = m.value;
  return out;
}

}  // namespace

TEST(InputDegradation, LinearModelCurvesAreSortedPartialSums) {
  torch::jit::Module root("__torch__.DegradeLinear");
  const auto w = torch::tensor({{2.0}, {-1.0}, {0.5}, {3.0}}, torch::kDouble);
  root.register_parameter("w", w, false);
  root.define("def forward(self, x):\n  return torch.matmul(x, self.w)\n");
  const auto model = galvani::testing::temp_dir() + "/degrade_linear.pt";
  root.save(model);
  const auto x = torch::tensor({{1.0, 1.0, 2.0, -1.0}, {0.5, -2.0, 1.0, 1.0}}, torch::kDouble);
  const auto r = run_config("[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" + save_temp_tensor(x, "deg_x.pt") +
                            "\"\ntarget = \"0\"\n[[methods]]\nplugin = \"integrated-gradients\"\nsteps = 2\n"
                            "[[evaluators]]\nplugin = \"input-degradation\"\nsteps = 4\nreplacement = \"zero\"\n");
  // Per input: contributions wᵢxᵢ, the curve after removing the k largest (MoRF) or smallest (LeRF).
  std::vector<double> morf(5, 0.0), lerf(5, 0.0);
  for (std::int64_t i = 0; i < 2; ++i) {
    std::vector<double> c;
    for (std::int64_t j = 0; j < 4; ++j) c.push_back(w[j][0].item<double>() * x[i][j].item<double>());
    std::sort(c.begin(), c.end());
    double down = 0, up = 0;
    for (int k = 1; k <= 4; ++k) {
      up += c[4 - k];
      down += c[k - 1];
      morf[k] += up / 2;
      lerf[k] += down / 2;
    }
  }
  double aopc_morf = 0, aopc_lerf = 0;
  for (int k = 0; k <= 4; ++k) aopc_morf += morf[k] / 5, aopc_lerf += lerf[k] / 5;
  const auto m = metrics(r, "integrated-gradients");
  EXPECT_NEAR(m.at("aopc_morf"), aopc_morf, 1e-12);
  EXPECT_NEAR(m.at("aopc_lerf"), aopc_lerf, 1e-12);
  EXPECT_GT(m.at("aopc_morf_minus_lerf"), 0.0);
  const auto& curves = r.result.evaluations.at(0).second.curves;
  bool found = false;
  for (const auto& c : curves)
    if (c.method == "integrated-gradients" && c.name == "MoRF") {
      found = true;
      ASSERT_EQ(c.y.size(), 5u);
      for (int k = 0; k <= 4; ++k) EXPECT_NEAR(c.y[k], morf[k], 1e-12) << k;
      EXPECT_DOUBLE_EQ(c.x.back(), 1.0);
    }
  EXPECT_TRUE(found);
  // Removing everything gives F(x) − F(0) whatever the order: the random curve ends where MoRF ends.
  // The random reference is in both plots, once each.
  std::vector<std::string> random_plots;
  for (const auto& c : curves)
    if (c.method == "random") {
      random_plots.push_back(c.name);
      ASSERT_FALSE(c.y.empty());
      EXPECT_NEAR(c.y.back(), morf[4], 1e-12);
    }
  EXPECT_EQ(random_plots, (std::vector<std::string>{"MoRF", "LeRF"}));
}

TEST(InputDegradation, ImagesLoseWholePixelsAndLayerResultsAreIgnored) {
  const std::string examples = std::string(GALVANI_SOURCE_DIR) + "/docs/examples";
  const auto r = run_config("[model]\npath = \"" + examples + "/fashion_cnn.pt\"\n[data]\ninputs = \"" + examples +
                            "/fashion_test.pt\"\nlimit = 6\n"
                            "[[methods]]\nplugin = \"integrated-gradients\"\nsteps = 16\n"
                            "[[methods]]\nplugin = \"activation\"\nlayers = [\"features.4\"]\n"
                            "[[evaluators]]\nplugin = \"input-degradation\"\nsteps = 10\n");
  const auto m = metrics(r, "integrated-gradients");
  EXPECT_EQ(m.size(), 4u);
  EXPECT_TRUE(metrics(r, "activation").empty());
  // Taking the most relevant pixels away first lowers F faster than a random order, and faster than least first.
  EXPECT_GT(m.at("aopc_morf"), m.at("aopc_random"));
  EXPECT_GT(m.at("aopc_morf"), m.at("aopc_lerf"));
}
