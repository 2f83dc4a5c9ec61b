// The objective F: which scalar of the model output attributions explain.
#pragma once

#include <torch/types.h>

#include <string>

#include "galvani/error.h"

namespace galvani {

/// F is the target's logit (default), its softmax probability, or its logit minus the mean logit.
enum class OutputMode { Logit, Probability, LogitMinusMean };

GALVANI_API OutputMode parse_output_mode(const std::string& text);
GALVANI_API const char* to_string(OutputMode mode);

struct GALVANI_API Objective {
  OutputMode mode = OutputMode::Logit;
  /// F per sample: output [B, C] (or [B], a scalar model) and targets [B] (int64 class indices) → [B].
  /// Throws ShapeError for other output shapes or targets out of range.
  torch::Tensor operator()(const torch::Tensor& output, const torch::Tensor& targets) const;
};

/// Throws NumericError naming `what` when `t` holds NaN or inf.
GALVANI_API void require_finite(const torch::Tensor& t, const std::string& what);

}  // namespace galvani
