// The run's data on the model's device: inputs, baselines and targets, loaded and checked against each other.
#pragma once

#include <torch/types.h>

#include "galvani/core/config.h"
#include "galvani/model.h"
#include "galvani/objective.h"

namespace galvani::core {

class PathLayerModel;

/// Loads `data.inputs` (limited to `data.limit`) on the model's device: floating point in the model's dtype, or
/// integer token ids as int64 (only with data.path_layer: integer inputs are never interpolated).
torch::Tensor load_input_tensor(const DataConfig& data, const Model& model);

/// The baselines for floating-point `inputs` in the model's space: zeros, the mean input, or a file.
torch::Tensor make_baselines(const DataConfig& data, const torch::Tensor& inputs, const Model& model);

/// The baselines in the space of a path layer, given the model's own inputs `original` (token ids) and their
/// layer outputs `inputs`: zeros and mean in the layer's space; "pad:N" and files shaped like the inputs are
/// inputs of the model, embedded; other files are values in the layer's space.
torch::Tensor make_layer_baselines(const DataConfig& data, const torch::Tensor& original, const torch::Tensor& inputs,
                                   const PathLayerModel& model);

/// The token id that pads sentences: the N of baselines = "pad:N", else 0.
std::int64_t padding_token(const BaselineSpec& baselines);

/// For each row of token ids [N, ...] (each row read flat), how many tokens it has before its trailing run of `pad`
/// (0 for a row of padding only).
std::vector<std::int64_t> unpadded_lengths(const torch::Tensor& ids, std::int64_t pad);

/// Resolves `data.target` into per-input classes [N] on the model's device, given the model's outputs on the
/// inputs ([N, C] or [N]): the predicted class, one class for all, or a file of classes, each checked to be in
/// range.
torch::Tensor resolve_targets(const TargetSpec& target, const torch::Tensor& outputs);

}  // namespace galvani::core
