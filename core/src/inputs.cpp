#include "galvani/core/inputs.h"

#include <string>

#include "galvani/core/path_layer.h"
#include "galvani/tensor_io.h"

namespace galvani::core {

namespace {

// A tensor file's contents, or the tensor given in its place (the Python API), detached from any autograd graph.
torch::Tensor read_source(const std::string& file, const torch::Tensor& given) {
  return given.defined() ? given.detach() : load_tensor(file);
}

// A baselines file, shaped like `inputs` ([N, ...], one sample [...] for all, [1, ...], or more rows than N), in
// `dtype` (integer files keep their values: token ids).
torch::Tensor load_baseline_file(const std::string& file, const torch::Tensor& given, const torch::Tensor& inputs,
                                 const torch::Device& device, torch::ScalarType dtype) {
  auto b = read_source(file, given).to(device, dtype);
  if (b.sizes() == inputs.sizes().slice(1)) b = b.unsqueeze(0);
  if (b.dim() == inputs.dim() && b.size(0) == 1 && inputs.size(0) != 1)
    b = b.expand_as(inputs).contiguous();
  else if (b.dim() == inputs.dim() && b.size(0) > inputs.size(0) && b.sizes().slice(1) == inputs.sizes().slice(1))
    b = b.narrow(0, 0, inputs.size(0)).contiguous();
  if (b.sizes() != inputs.sizes())
    throw ShapeError("data.baselines: '" + file + "' has shape " + shape_string(b.sizes()) + "; expected " +
                     shape_string(inputs.sizes()) + ", one sample " + shape_string(inputs.sizes().slice(1)) +
                     ", or [1, ...]");
  return b.contiguous();
}

bool is_integer(const torch::Tensor& t) { return !t.is_floating_point() && !t.is_complex() && t.scalar_type() != torch::kBool; }

}  // namespace

torch::Tensor load_input_tensor(const DataConfig& data, const Model& model) {
  auto inputs = read_source(data.inputs, data.inputs_tensor);
  const std::string kind = c10::toString(inputs.scalar_type());
  if (inputs.is_complex() || inputs.scalar_type() == torch::kBool)
    throw ShapeError("data.inputs: '" + data.inputs + "' holds " + kind +
                     " values; inputs are floating point, or integer token ids with data.path_layer");
  if (is_integer(inputs) && data.path_layer.empty())
    throw ShapeError("data.inputs: '" + data.inputs + "' holds " + kind +
                     " values (token ids?); integer inputs are never interpolated, so paths must run in the output "
                     "space of a layer that takes them: set data.path_layer, e.g. path_layer = \"embedding\" "
                     "(`galvani layers MODEL --inputs FILE` lists the layers)");
  if (inputs.dim() < 2) throw ShapeError("data.inputs: expected a batch [N, ...], got shape " + shape_string(inputs.sizes()));
  if (inputs.size(0) == 0 || inputs.numel() == 0)
    throw ShapeError("data.inputs: '" + data.inputs + "' has shape " + shape_string(inputs.sizes()) +
                     ": no values to attribute; expected a batch [N, ...] with N ≥ 1 and no empty dimension");
  if (data.limit > 0 && data.limit < inputs.size(0)) inputs = inputs.narrow(0, 0, data.limit);
  if (is_integer(inputs)) return inputs.to(model.device(), torch::kLong).contiguous();
  require_finite(inputs, "data.inputs '" + data.inputs + "'");
  return inputs.to(model.device(), model.dtype()).contiguous();
}

torch::Tensor make_baselines(const DataConfig& data, const torch::Tensor& inputs, const Model& model) {
  const auto& spec = data.baselines;
  switch (spec.kind) {
    case BaselineSpec::Kind::Zeros:
      return torch::zeros_like(inputs);
    case BaselineSpec::Kind::Mean:
      return inputs.mean(0, true).expand_as(inputs).contiguous();
    case BaselineSpec::Kind::Token:
      throw ConfigError("data.baselines: \"" + spec.describe() +
                        "\" replaces token ids, but these inputs are not token ids (or data.path_layer is not set); "
                        "use \"zeros\", \"mean\" or a tensor file");
    case BaselineSpec::Kind::File: {
      auto b = load_baseline_file(spec.file, spec.tensor, inputs, model.device(), model.dtype());
      require_finite(b, "data.baselines '" + spec.file + "'");
      return b;
    }
  }
  return {};
}

torch::Tensor make_layer_baselines(const DataConfig& data, const torch::Tensor& original, const torch::Tensor& inputs,
                                   const PathLayerModel& model) {
  const auto& spec = data.baselines;
  const auto embed = [&](const torch::Tensor& b) {
    try {
      return model.embed(b);
    } catch (const std::exception& e) {
      const auto why = diagnose_token_ids(model.original(), model.path_layer(), b);
      throw ShapeError("data.baselines \"" + spec.describe() + "\": " +
                       (why.empty() ? std::string("the model cannot embed them: ") + e.what()
                                    : why.substr(why.find(' ') + 1)));
    }
  };
  switch (spec.kind) {
    case BaselineSpec::Kind::Zeros:
    case BaselineSpec::Kind::Mean:
      return make_baselines(data, inputs, model);  // in the layer's space
    case BaselineSpec::Kind::Token:
      if (!is_integer(original))
        throw ConfigError("data.baselines: \"" + spec.describe() + "\" replaces token ids, but data.inputs holds " +
                          std::string(c10::toString(original.scalar_type())) + " values");
      return embed(torch::full_like(original, spec.token));
    case BaselineSpec::Kind::File: {
      // Inputs of the model (token ids) when shaped like them, else values in the path layer's space.
      auto raw = read_source(spec.file, spec.tensor);
      const bool like_original = raw.sizes() == original.sizes().slice(1) ||
                                 (raw.dim() == original.dim() && raw.sizes().slice(1) == original.sizes().slice(1));
      if (like_original && (is_integer(raw) == is_integer(original))) {
        auto b = load_baseline_file(spec.file, spec.tensor, original, original.device(), original.scalar_type());
        if (!is_integer(b)) require_finite(b, "data.baselines '" + spec.file + "'");
        return embed(b);
      }
      if (is_integer(raw) && is_integer(original))
        throw ShapeError("data.baselines: '" + spec.file + "' holds token ids of shape " + shape_string(raw.sizes()) +
                         "; expected the inputs' shape " + shape_string(original.sizes()) + " or one sample " +
                         shape_string(original.sizes().slice(1)));
      auto b = load_baseline_file(spec.file, spec.tensor, inputs, model.device(), model.dtype());
      require_finite(b, "data.baselines '" + spec.file + "'");
      return b;
    }
  }
  return {};
}

std::int64_t padding_token(const BaselineSpec& baselines) {
  return baselines.kind == BaselineSpec::Kind::Token ? baselines.token : 0;
}

std::vector<std::int64_t> unpadded_lengths(const torch::Tensor& ids, std::int64_t pad) {
  const auto flat = ids.to(torch::kCPU, torch::kLong).reshape({ids.size(0), -1}).contiguous();
  const auto width = flat.size(1);
  const auto* p = flat.data_ptr<std::int64_t>();
  std::vector<std::int64_t> lengths;
  for (std::int64_t i = 0; i < flat.size(0); ++i) {
    std::int64_t end = width;
    while (end > 0 && p[i * width + end - 1] == pad) --end;
    lengths.push_back(end);
  }
  return lengths;
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
      const auto raw = read_source(target.file, target.tensor);
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
