#include "galvani/objective.h"

#include <ATen/ATen.h>

#include <cmath>

#include "galvani/tensor_io.h"

namespace galvani {

OutputMode parse_output_mode(const std::string& text) {
  if (text == "logit") return OutputMode::Logit;
  if (text == "probability") return OutputMode::Probability;
  if (text == "logit-minus-mean") return OutputMode::LogitMinusMean;
  throw ConfigError("model.output: \"" + text + "\" is not one of \"logit\", \"probability\", \"logit-minus-mean\"");
}

const char* to_string(OutputMode mode) {
  switch (mode) {
    case OutputMode::Logit: return "logit";
    case OutputMode::Probability: return "probability";
    case OutputMode::LogitMinusMean: return "logit-minus-mean";
  }
  return "?";
}

torch::Tensor Objective::operator()(const torch::Tensor& output, const torch::Tensor& targets) const {
  torch::Tensor out = output;
  if (out.dim() == 1) out = out.unsqueeze(1);
  if (out.dim() != 2)
    throw ShapeError("the model output has shape " + shape_string(output.sizes()) +
                     "; attributions need [batch, classes] (or [batch] for a scalar output)");
  if (targets.dim() != 1 || targets.size(0) != out.size(0))
    throw ShapeError("targets have shape " + shape_string(targets.sizes()) + " but the model output has batch " +
                     std::to_string(out.size(0)));
  const auto classes = out.size(1);
  if (targets.numel() > 0) {
    const auto lo = targets.min().item<std::int64_t>();
    const auto hi = targets.max().item<std::int64_t>();
    if (lo < 0 || hi >= classes)
      throw ShapeError("target class " + std::to_string(lo < 0 ? lo : hi) + " is out of range: the model has " +
                       std::to_string(classes) + " output" + (classes == 1 ? "" : "s"));
  }
  const auto index = targets.to(out.device(), torch::kLong).unsqueeze(1);
  switch (mode) {
    case OutputMode::Logit: return out.gather(1, index).squeeze(1);
    case OutputMode::Probability: return out.softmax(1).gather(1, index).squeeze(1);
    case OutputMode::LogitMinusMean: return out.gather(1, index).squeeze(1) - out.mean(1);
  }
  return out.gather(1, index).squeeze(1);
}

void require_finite(const torch::Tensor& t, const std::string& what) {
  if (!t.defined() || !t.is_floating_point() || t.numel() == 0) return;
  // A NaN or an infinity anywhere makes the sum NaN or infinite: one reduction instead of isfinite's temporaries
  // (this runs on every shard's attributions). A sum that overflows with finite values gets the exact check.
  if (std::isfinite(t.sum().item<double>())) return;
  if (!torch::isfinite(t).all().item<bool>()) {
    const auto nan = torch::isnan(t).sum().item<std::int64_t>();
    const auto inf = torch::isinf(t).sum().item<std::int64_t>();
    throw NumericError(what + " holds non-finite values (" + std::to_string(nan) + " NaN, " + std::to_string(inf) +
                       " inf)");
  }
}

}  // namespace galvani
