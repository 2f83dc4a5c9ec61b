#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "galvani/path.h"

using galvani::make_quadrature;

namespace {
double integrate(const galvani::Quadrature& q, double (*f)(double)) {
  double s = 0;
  for (std::size_t k = 0; k < q.alphas.size(); ++k) s += q.weights[k] * f(q.alphas[k]);
  return s;
}
}  // namespace

TEST(Quadrature, EveryRuleIntegratesConstantsExactly) {
  for (const auto& rule : galvani::quadrature_rules())
    for (int steps : {2, 3, 7, 50}) {
      const auto q = make_quadrature(rule, steps);
      ASSERT_EQ(q.alphas.size(), static_cast<std::size_t>(steps));
      EXPECT_NEAR(integrate(q, [](double) { return 1.0; }), 1.0, 1e-13) << rule << " " << steps;
      for (std::size_t k = 1; k < q.alphas.size(); ++k) EXPECT_LT(q.alphas[k - 1], q.alphas[k]);
      EXPECT_GE(q.alphas.front(), 0.0);
      EXPECT_LE(q.alphas.back(), 1.0);
    }
}

TEST(Quadrature, RiemannPointsAreWhereTheirNamesSay) {
  EXPECT_DOUBLE_EQ(make_quadrature("riemann_left", 4).alphas.front(), 0.0);
  EXPECT_DOUBLE_EQ(make_quadrature("riemann_right", 4).alphas.back(), 1.0);
  EXPECT_DOUBLE_EQ(make_quadrature("riemann_middle", 4).alphas.front(), 0.125);
  const auto t = make_quadrature("riemann_trapezoid", 5);
  EXPECT_DOUBLE_EQ(t.weights.front(), 0.125);
  EXPECT_DOUBLE_EQ(t.weights[1], 0.25);
}

TEST(Quadrature, GaussLegendreIsExactForPolynomialsOfDegree2nMinus1) {
  const auto q = make_quadrature("gausslegendre", 5);
  EXPECT_NEAR(integrate(q, [](double a) { return std::pow(a, 9); }), 0.1, 1e-14);
  EXPECT_NEAR(integrate(q, [](double a) { return std::exp(a); }), std::exp(1.0) - 1.0, 1e-12);
}

TEST(Quadrature, ErrorShrinksWithSteps) {
  for (const auto& rule : galvani::quadrature_rules()) {
    double previous = 1e9;
    for (int steps : {4, 16, 64}) {
      const double err = std::fabs(integrate(make_quadrature(rule, steps), [](double a) { return std::sin(3 * a); }) -
                                   (1 - std::cos(3.0)) / 3);
      EXPECT_TRUE(err < previous || err < 1e-13) << rule << " " << steps << ": " << err << " after " << previous;
      previous = err;
    }
  }
}

TEST(Quadrature, BadRuleOrStepsIsAConfigError) {
  EXPECT_THROW(make_quadrature("simpson", 10), galvani::ConfigError);
  EXPECT_THROW(make_quadrature("riemann_left", 0), galvani::ConfigError);
  EXPECT_THROW(make_quadrature("riemann_trapezoid", 1), galvani::ConfigError);
}

TEST(Quadrature, CaptumTrapezoidHasCaptumsWeightsSummingToOneMinusOneOverN) {
  // Not among quadrature_rules() (its weights do not integrate constants exactly); galvani.captum uses it.
  const auto q = make_quadrature("captum_trapezoid", 5);
  ASSERT_EQ(q.alphas.size(), 5u);
  EXPECT_DOUBLE_EQ(q.alphas[1], 0.25);
  EXPECT_DOUBLE_EQ(q.alphas.back(), 1.0);
  EXPECT_DOUBLE_EQ(q.weights.front(), 0.1);
  EXPECT_DOUBLE_EQ(q.weights[2], 0.2);
  EXPECT_NEAR(integrate(q, [](double) { return 1.0; }), 0.8, 1e-15);
  const auto& rules = galvani::quadrature_rules();
  EXPECT_EQ(std::find(rules.begin(), rules.end(), "captum_trapezoid"), rules.end());
}
