// Shared path passes: layer activations and gradients along a path, computed once for every method that
// asks for the same (model, layers, inputs, baselines, path, target).
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

#include "galvani/error.h"
#include "galvani/model.h"
#include "galvani/objective.h"
#include "galvani/path.h"

namespace galvani {

/// What a shared pass computes.
struct GALVANI_API PathPassSpec {
  std::vector<std::string> layers;
  const PathGenerator* path = nullptr;  ///< null: endpoints (α = 0 and 1) only
  int steps = 0;
  bool tangents = false;      ///< dy/dα at every point, by forward-mode AD (a Jacobian–vector product)
  bool input_grads = false;   ///< ∂F/∂x at every point
  std::int64_t internal_batch = 0;  ///< points per forward/backward; 0 = choose
  bool double_accumulate = false;   ///< store layer data in float64
};

/// Per-layer data of a pass. Tensors are [T, B, *layer shape] over the pass's grid `t` (see PathPass).
struct GALVANI_API LayerPathData {
  torch::Tensor act;      ///< y(γ(tᵢ))
  torch::Tensor grad;     ///< ∂F/∂y at γ(tᵢ)
  torch::Tensor tangent;  ///< dy/dα at γ(tᵢ) (when asked for)
};

/// The result of a pass for one shard of B inputs. The grid `t` is the union of {0, 1} and the quadrature's
/// alphas, sorted; `quad_index[k]` is where alphas[k] sits in it. Index 0 is the baseline, the last the input.
struct GALVANI_API PathPass {
  std::vector<double> t;
  Quadrature quadrature;
  std::vector<std::size_t> quad_index;
  torch::Tensor f;           ///< F at every grid point: [T, B]
  torch::Tensor input_grad;  ///< ∂F/∂x at every grid point: [T, B, *input shape] (when asked for)
  torch::Tensor inputs, baselines;  ///< [B, ...] (baselines after the path's override)
  std::map<std::string, LayerPathData> layers;

  std::size_t last() const { return t.size() - 1; }
  const LayerPathData& layer(const std::string& name) const;
  /// F(x) and F(x′): [B].
  torch::Tensor f_input() const;
  torch::Tensor f_baseline() const;
};

/// Runs a pass: the grid points in chunks of `internal_batch` points, one forward and one backward per
/// chunk (the backward stops at the tapped layers unless input gradients are asked for).
GALVANI_API PathPass compute_path_pass(const Model& model, const PathPassSpec& spec, const torch::Tensor& inputs,
                                       const torch::Tensor& baselines, const torch::Tensor& targets,
                                       const Objective& objective);

/// The floor of a pass, for benchmarks (`galvani bench`, benchmarks/): the same grid points as
/// compute_path_pass in the same chunks, one forward with the layers captured and one backward to them (and to the
/// input where the spec asks for input gradients) per chunk, nothing kept and no tangents. Returns the number of
/// points it ran.
GALVANI_API std::int64_t floor_pass(const Model& model, const PathPassSpec& spec, const torch::Tensor& inputs,
                                    const torch::Tensor& baselines, const torch::Tensor& targets,
                                    const Objective& objective);

/// The default number of grid points per chunk for a model, chosen by measurement (docs/benchmarks.md).
GALVANI_API std::int64_t default_internal_batch(std::int64_t sample_numel);
/// The same for a device: on CUDA, chunks of up to 2^24 values (at most 1024 points), enough rows per kernel to
/// fill the device; on the CPU the measured default above.
GALVANI_API std::int64_t default_internal_batch(std::int64_t sample_numel, const torch::Device& device);

}  // namespace galvani
