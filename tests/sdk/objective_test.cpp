#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "galvani/objective.h"

using galvani::Objective;
using galvani::OutputMode;

TEST(Objective, SelectsTheTargetInEveryMode) {
  const auto out = torch::tensor({{1.0, 2.0, 6.0}, {0.0, 0.0, 0.0}}, torch::kDouble);
  const auto targets = torch::tensor({2, 1}, torch::kLong);
  EXPECT_TRUE(torch::allclose(Objective{OutputMode::Logit}(out, targets), torch::tensor({6.0, 0.0}, torch::kDouble)));
  EXPECT_TRUE(torch::allclose(Objective{OutputMode::LogitMinusMean}(out, targets),
                              torch::tensor({6.0 - 3.0, 0.0}, torch::kDouble)));
  const double e = std::exp(1.0), e2 = std::exp(2.0), e6 = std::exp(6.0);
  EXPECT_TRUE(torch::allclose(Objective{OutputMode::Probability}(out, targets),
                              torch::tensor({e6 / (e + e2 + e6), 1.0 / 3}, torch::kDouble)));
}

TEST(Objective, ScalarOutputsAndBadShapes) {
  EXPECT_TRUE(torch::equal(Objective{}(torch::tensor({3.0, 4.0}), torch::zeros({2}, torch::kLong)),
                           torch::tensor({3.0, 4.0})));
  EXPECT_THROW(Objective{}(torch::zeros({2, 3, 4}), torch::zeros({2}, torch::kLong)), galvani::ShapeError);
  EXPECT_THROW(Objective{}(torch::zeros({2, 3}), torch::tensor({0, 3}, torch::kLong)), galvani::ShapeError);
  EXPECT_THROW(Objective{}(torch::zeros({2, 3}), torch::zeros({3}, torch::kLong)), galvani::ShapeError);
}

TEST(Objective, NonFiniteValuesAreNamed) {
  try {
    galvani::require_finite(torch::tensor({1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}), "the thing");
    FAIL();
  } catch (const galvani::NumericError& e) {
    EXPECT_NE(std::string(e.what()).find("the thing holds non-finite values (1 NaN, 1 inf)"), std::string::npos)
        << e.what();
  }
}

// Finite values whose sum overflows are finite; a single infinity or NaN among a million values is not.
TEST(Objective, FiniteCheckIsExact) {
  EXPECT_NO_THROW(galvani::require_finite(torch::full({4}, 3e38f), "large"));
  EXPECT_NO_THROW(galvani::require_finite(torch::empty({0}), "empty"));
  for (const float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN()}) {
    auto t = torch::rand({1000, 1000});
    t[517][3] = bad;
    EXPECT_THROW(galvani::require_finite(t, "one bad value"), galvani::NumericError);
  }
  auto both = torch::zeros({10});
  both[2] = std::numeric_limits<float>::infinity();
  both[7] = -std::numeric_limits<float>::infinity();
  EXPECT_THROW(galvani::require_finite(both, "opposite infinities"), galvani::NumericError);
}
