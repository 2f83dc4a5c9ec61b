#include "galvani/path.h"

#include <cmath>
#include <numeric>

#include "galvani/tensor_io.h"

namespace galvani {
namespace {

// Gauss–Legendre nodes and weights on [-1, 1] by Newton iteration on the Legendre polynomial.
void gauss_legendre(int n, std::vector<double>& x, std::vector<double>& w) {
  x.assign(n, 0.0);
  w.assign(n, 0.0);
  const double pi = std::acos(-1.0);
  for (int i = 0; i < (n + 1) / 2; ++i) {
    double z = std::cos(pi * (i + 0.75) / (n + 0.5));
    double dp = 0.0;
    for (int iter = 0; iter < 100; ++iter) {
      double p0 = 1.0, p1 = 0.0;
      for (int k = 1; k <= n; ++k) {
        const double p2 = p1;
        p1 = p0;
        p0 = ((2.0 * k - 1.0) * z * p1 - (k - 1.0) * p2) / k;
      }
      dp = n * (z * p0 - p1) / (z * z - 1.0);
      const double dz = p0 / dp;
      z -= dz;
      if (std::fabs(dz) < 1e-15) break;
    }
    x[i] = -z;
    x[n - 1 - i] = z;
    w[i] = w[n - 1 - i] = 2.0 / ((1.0 - z * z) * dp * dp);
  }
}

}  // namespace

const std::vector<std::string>& quadrature_rules() {
  static const std::vector<std::string> rules{"riemann_left", "riemann_right", "riemann_middle",
                                              "riemann_trapezoid", "gausslegendre"};
  return rules;
}

Quadrature make_quadrature(const std::string& rule, int steps) {
  if (steps < 1) throw ConfigError("steps must be at least 1, got " + std::to_string(steps));
  Quadrature q;
  const double n = steps;
  if (rule == "riemann_left") {
    for (int k = 0; k < steps; ++k) q.alphas.push_back(k / n);
    q.weights.assign(steps, 1.0 / n);
  } else if (rule == "riemann_right") {
    for (int k = 1; k <= steps; ++k) q.alphas.push_back(k / n);
    q.weights.assign(steps, 1.0 / n);
  } else if (rule == "riemann_middle") {
    for (int k = 0; k < steps; ++k) q.alphas.push_back((k + 0.5) / n);
    q.weights.assign(steps, 1.0 / n);
  } else if (rule == "riemann_trapezoid") {
    if (steps < 2) throw ConfigError("the trapezoid rule needs at least 2 steps, got " + std::to_string(steps));
    const double h = 1.0 / (steps - 1);
    for (int k = 0; k < steps; ++k) q.alphas.push_back(k * h);
    q.weights.assign(steps, h);
    q.weights.front() = q.weights.back() = h / 2;
  } else if (rule == "captum_trapezoid") {
    // Captum's riemann_trapezoid: the trapezoid's points, but every weight 1/n (the ends 1/(2n)), so the weights
    // sum to 1 − 1/n. Kept only so that galvani.captum matches Captum; it is not a consistent quadrature.
    if (steps < 2) throw ConfigError("the trapezoid rule needs at least 2 steps, got " + std::to_string(steps));
    for (int k = 0; k < steps; ++k) q.alphas.push_back(k / (n - 1));
    q.weights.assign(steps, 1.0 / n);
    q.weights.front() = q.weights.back() = 0.5 / n;
  } else if (rule == "gausslegendre") {
    std::vector<double> x, w;
    gauss_legendre(steps, x, w);
    for (int k = 0; k < steps; ++k) {
      q.alphas.push_back((x[k] + 1.0) / 2.0);
      q.weights.push_back(w[k] / 2.0);
    }
  } else {
    std::string valid;
    for (const auto& r : quadrature_rules()) valid += (valid.empty() ? "\"" : ", \"") + r + "\"";
    throw ConfigError("unknown quadrature rule \"" + rule + "\"; valid rules: " + valid);
  }
  return q;
}

torch::Tensor PathGenerator::baseline(const torch::Tensor& /*input*/, const torch::Tensor& configured) const {
  return configured;
}

torch::Tensor PathGenerator::points(const torch::Tensor& input, const torch::Tensor& baseline,
                                    const std::vector<double>& alphas) const {
  if (input.sizes() != baseline.sizes())
    throw ShapeError("baseline shape " + shape_string(baseline.sizes()) + " differs from input shape " +
                     shape_string(input.sizes()));
  const auto a = torch::tensor(alphas, torch::TensorOptions().dtype(torch::kDouble))
                     .to(input.device(), input.scalar_type());
  std::vector<int64_t> view(input.dim() + 1, 1);
  view[0] = static_cast<int64_t>(alphas.size());
  const auto diff = (input - baseline).unsqueeze(0);
  const auto pts = baseline.unsqueeze(0) + a.view(view) * diff;
  auto sizes = input.sizes().vec();
  sizes[0] = static_cast<int64_t>(alphas.size()) * input.size(0);
  return pts.reshape(sizes);
}

torch::Tensor PathGenerator::velocity(const torch::Tensor& input, const torch::Tensor& baseline,
                                      const std::vector<double>& alphas) const {
  const auto diff = input - baseline;
  std::vector<int64_t> reps(input.dim(), 1);
  reps[0] = static_cast<int64_t>(alphas.size());
  return diff.repeat(reps);
}

}  // namespace galvani
