// What method and evaluator plugins share: which results to look at, how values map onto a layer's units,
// statistics, and file names for layers.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "galvani/error.h"
#include "galvani/evaluator.h"
#include "galvani/options.h"

namespace galvani {

/// How a result's per-input values map onto its layer's units.
enum class UnitKind { Neuron, Filter, Layer };

GALVANI_API const char* to_string(UnitKind kind);

/// The unit kind of per-input values shaped `per_input` (no batch dimension) at a layer whose output is
/// `layer_shape`: Neuron (the layer's own shape), Filter ([C] for a layer [C, ...]), Layer ([1]); nullopt for any
/// other shape. A layer of shape [1] reads as Neuron.
GALVANI_API std::optional<UnitKind> unit_kind(c10::IntArrayRef per_input, const std::vector<std::int64_t>& layer_shape);

/// How many units of `kind` a layer of `layer_shape` has.
GALVANI_API std::int64_t unit_count(UnitKind kind, const std::vector<std::int64_t>& layer_shape);

/// The results an evaluator looks at: its `methods` and `layers` options (each empty or absent: all of them).
class GALVANI_API ResultFilter {
 public:
  ResultFilter() = default;
  /// Reads the list options `methods` and (unless `with_layers` is false: an evaluator of input-space results)
  /// `layers` of `options`.
  explicit ResultFilter(const Options& options, bool with_layers = true);
  bool accepts(const MethodResult& result) const;
  /// Throws ConfigError, naming the option and the names the run has, when `methods` or `layers` lists a name
  /// no result of the run carries: a misspelt name would otherwise evaluate nothing.
  void check(const std::vector<MethodResult>& results) const;
  const std::vector<std::string>& methods() const { return methods_; }
  const std::vector<std::string>& layers() const { return layers_; }

 private:
  std::vector<std::string> methods_, layers_;
  std::string methods_key_ = "methods", layers_key_ = "layers";
};

/// A layer name as one path component: '/' and '\' become '_' (`attributions/<method>/<file>.pt`).
GALVANI_API std::string layer_file_name(const std::string& layer);

namespace stats {

/// Arithmetic mean; NaN for no values.
GALVANI_API double mean(const std::vector<double>& values);
/// The q-quantile (0 ≤ q ≤ 1) with linear interpolation between order statistics; NaN for no values.
GALVANI_API double quantile(std::vector<double> values, double q);
/// Pearson's correlation of two equally long samples; NaN when either is constant (or has fewer than two values).
GALVANI_API double pearson(const std::vector<double>& a, const std::vector<double>& b);
/// Ranks along dim 1 of a float64 [N, M] tensor on the CPU, ties sharing their average rank (0-based).
GALVANI_API torch::Tensor ranks(const torch::Tensor& rows);
/// Spearman's rank correlation per row of two float64 [N, M] tensors on the CPU, [N]; NaN where a row is
/// constant.
GALVANI_API torch::Tensor spearman(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace stats
}  // namespace galvani
