#include "galvani/core/inputs.h"

#include <string>

#include "galvani/tensor_io.h"

namespace galvani::core {

RunInputs load_inputs(const DataConfig& data, const Model& model) {
  RunInputs r;
  auto inputs = load_tensor(data.inputs);
  if (!inputs.is_floating_point())
    throw ShapeError("data.inputs: '" + data.inputs + "' holds " + std::string(c10::toString(inputs.scalar_type())) +
                     " values; inputs must be floating point");
  if (inputs.dim() < 2) throw ShapeError("data.inputs: expected a batch [N, ...], got shape " + shape_string(inputs.sizes()));
  if (inputs.size(0) == 0 || inputs.numel() == 0)
    throw ShapeError("data.inputs: '" + data.inputs + "' has shape " + shape_string(inputs.sizes()) +
                     ": no values to attribute; expected a batch [N, ...] with N ≥ 1 and no empty dimension");
  if (data.limit > 0 && data.limit < inputs.size(0)) inputs = inputs.narrow(0, 0, data.limit);
  require_finite(inputs, "data.inputs '" + data.inputs + "'");
  const auto dtype = model.dtype();
  r.inputs = inputs.to(model.device(), dtype).contiguous();

  const auto& spec = data.baselines;
  switch (spec.kind) {
    case BaselineSpec::Kind::Zeros:
      r.baselines = torch::zeros_like(r.inputs);
      break;
    case BaselineSpec::Kind::Mean:
      r.baselines = r.inputs.mean(0, true).expand_as(r.inputs).contiguous();
      break;
    case BaselineSpec::Kind::File: {
      auto b = load_tensor(spec.file).to(model.device(), dtype);
      if (b.sizes() == r.inputs.sizes().slice(1)) b = b.unsqueeze(0);
      if (b.dim() == r.inputs.dim() && b.size(0) == 1 && r.inputs.size(0) != 1)
        b = b.expand_as(r.inputs).contiguous();
      else if (b.dim() == r.inputs.dim() && b.size(0) > r.inputs.size(0) &&
               b.sizes().slice(1) == r.inputs.sizes().slice(1))
        b = b.narrow(0, 0, r.inputs.size(0)).contiguous();
      if (b.sizes() != r.inputs.sizes())
        throw ShapeError("data.baselines: '" + spec.file + "' has shape " + shape_string(b.sizes()) + "; expected " +
                         shape_string(r.inputs.sizes()) + ", one sample " + shape_string(r.inputs.sizes().slice(1)) +
                         ", or [1, ...]");
      require_finite(b, "data.baselines '" + spec.file + "'");
      r.baselines = b;
      break;
    }
  }
  return r;
}

torch::Tensor resolve_targets(const TargetSpec& target, const torch::Tensor& outputs) {
  const std::int64_t n = outputs.size(0);
  const std::int64_t classes = outputs.dim() == 2 ? outputs.size(1) : 1;
  torch::Tensor t;
  switch (target.kind) {
    case TargetSpec::Kind::Predicted:
      t = outputs.dim() == 2 ? outputs.argmax(1) : torch::zeros({n}, torch::kLong);
      break;
    case TargetSpec::Kind::Class:
      if (target.index >= classes)
        throw ConfigError("data.target: class " + std::to_string(target.index) + " is out of range; the model has " +
                          std::to_string(classes) + " outputs");
      t = torch::full({n}, target.index, torch::TensorOptions().dtype(torch::kLong));
      break;
    case TargetSpec::Kind::File: {
      const auto raw = load_tensor(target.file);
      if (raw.dim() > 1 && raw.numel() != raw.size(0))
        throw ShapeError("data.target: '" + target.file + "' has shape " + shape_string(raw.sizes()) +
                         "; expected one class index per input, [N] (one-hot rows or scores: save their argmax(1))");
      if (raw.is_complex() || raw.scalar_type() == torch::kBool)
        throw ShapeError("data.target: '" + target.file + "' holds " + std::string(c10::toString(raw.scalar_type())) +
                         " values; expected integer class indices");
      if (raw.is_floating_point() && raw.numel() > 0 && !torch::equal(raw, raw.round()))
        throw ShapeError("data.target: '" + target.file + "' holds values that are not whole numbers; expected "
                         "integer class indices");
      auto all = raw.to(torch::kLong).flatten();
      if (all.size(0) < n)
        throw ShapeError("data.target: '" + target.file + "' has " + std::to_string(all.size(0)) + " classes for " +
                         std::to_string(n) + " inputs");
      t = all.narrow(0, 0, n);
      if (t.min().item<std::int64_t>() < 0 || t.max().item<std::int64_t>() >= classes)
        throw ConfigError("data.target: '" + target.file + "' holds classes outside [0, " + std::to_string(classes) + ")");
      break;
    }
  }
  return t.to(outputs.device());
}

}  // namespace galvani::core
