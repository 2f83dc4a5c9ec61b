// Path generators: the points between a baseline x′ and an input x, and the quadrature over them.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "galvani/error.h"

namespace galvani {

/// A quadrature on [0, 1]: ∫₀¹ f(α) dα ≈ Σₖ weights[k]·f(alphas[k]). Alphas are strictly increasing;
/// the weights integrate constants exactly (they sum to 1).
struct GALVANI_API Quadrature {
  std::vector<double> alphas;
  std::vector<double> weights;
};

/// The standard rules, shared by every path plugin. `rule` is one of "riemann_left", "riemann_right",
/// "riemann_middle", "riemann_trapezoid", "gausslegendre"; steps ≥ 1 (trapezoid ≥ 2).
GALVANI_API Quadrature make_quadrature(const std::string& rule, int steps);
GALVANI_API const std::vector<std::string>& quadrature_rules();

/// A path γ(α), α ∈ [0, 1], from the baseline (α = 0) to the input (α = 1), with its quadrature.
/// Implementations are immutable after construction and thread-safe: passes call them concurrently. Inputs
/// and baselines are [B, ...] on the model's device; results stay on that device and dtype. `points` must be
/// exact at α = 0 and 1, and `velocity` must be dγ/dα (conductance's tangents and completeness rely on it).
class GALVANI_API PathGenerator {
 public:
  virtual ~PathGenerator();
  /// The quadrature for `steps` points.
  virtual Quadrature quadrature(int steps) const = 0;
  /// The baseline the path starts from, given the configured one (a preset may override it, e.g. zeros).
  virtual torch::Tensor baseline(const torch::Tensor& input, const torch::Tensor& configured) const;
  /// Points γ(αₖ) for every α and sample: [K·B, ...], α-major (all samples at α₀, then at α₁, ...).
  virtual torch::Tensor points(const torch::Tensor& input, const torch::Tensor& baseline,
                               const std::vector<double>& alphas) const;
  /// dγ/dα at each point, same layout as `points` (x − x′ for the straight line).
  virtual torch::Tensor velocity(const torch::Tensor& input, const torch::Tensor& baseline,
                                 const std::vector<double>& alphas) const;
  /// A short description for summaries, e.g. "straight line, gausslegendre".
  virtual std::string describe() const = 0;
};

}  // namespace galvani
