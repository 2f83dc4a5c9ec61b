// The run's data on the model's device: inputs, baselines and targets, loaded and checked against each other.
#pragma once

#include <torch/types.h>

#include "galvani/core/config.h"
#include "galvani/model.h"
#include "galvani/objective.h"

namespace galvani::core {

struct RunInputs {
  torch::Tensor inputs;     ///< [N, ...] in the model's dtype, contiguous
  torch::Tensor baselines;  ///< [N, ...], like inputs
  torch::Tensor targets;    ///< [N] int64
};

/// Loads `data.inputs` (limited to `data.limit`) and the baselines, in the model's dtype on its device. Throws
/// ShapeError / ConfigError naming the key and the file for a wrong dtype, shape or non-finite value.
RunInputs load_inputs(const DataConfig& data, const Model& model);

/// Resolves `data.target` into per-input classes [N] on the model's device, given the model's outputs on the
/// inputs ([N, C] or [N]): the predicted class, one class for all, or a file of classes, each checked to be in
/// range.
torch::Tensor resolve_targets(const TargetSpec& target, const torch::Tensor& outputs);

}  // namespace galvani::core
