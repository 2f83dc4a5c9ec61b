// Evaluators: score a run's attributions (completeness, ablations, ...).
#pragma once

#include <torch/types.h>

#include <functional>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "galvani/error.h"
#include "galvani/method.h"
#include "galvani/model.h"
#include "galvani/objective.h"

namespace galvani {

/// One method's attribution at one layer over all inputs of the run.
struct GALVANI_API MethodResult {
  std::string method;
  std::string layer;
  Space space = Space::Layer;
  torch::Tensor values;  ///< [N, ...]
  torch::Tensor delta;   ///< [N] or undefined
  std::map<std::string, torch::Tensor> extras;  ///< Attribution::extras, [N, ...] each
  std::vector<std::string> notes;               ///< Attribution::notes, without repeats
};

/// Everything an evaluator may look at. Tensors on the model's device.
struct GALVANI_API EvaluationInput {
  const Model* model = nullptr;
  torch::Tensor inputs, baselines, targets;  ///< [N, ...], [N, ...], [N]
  torch::Tensor f_input, f_baseline;         ///< [N]
  Objective objective;
  std::vector<MethodResult> results;
  /// Runs one of the run's methods again, as the run did (same options, shards and threads), on another model
  /// with the same layers (e.g. Model::randomized), over the run's first `count` inputs (all when count ≤ 0):
  /// its results, one per layer, `values` [count, ...]. Throws ConfigError for a method not in the run.
  std::function<std::vector<MethodResult>(const std::string& method, std::shared_ptr<Model> model,
                                          std::int64_t count)>
      rerun;
  /// A short text per input for tables, e.g. the sentence its token ids spell ([data] vocabulary); empty when the
  /// run has none.
  std::vector<std::string> input_labels;
  /// The inputs are the embeddings of token ids ([N, T, E], [data] path_layer at an embedding): a feature to
  /// remove is a token, all E values of it together.
  bool tokens = false;
};

/// A named number, for one method/layer pair (either may be empty for run-wide metrics).
struct GALVANI_API Metric {
  std::string method;
  std::string layer;
  std::string name;
  double value = 0.0;
};

/// A table for CSV output: a header and rows of cells (numbers or text).
struct GALVANI_API Table {
  using Cell = std::variant<double, std::string>;
  std::string name;
  std::vector<std::string> columns;
  std::vector<std::vector<Cell>> rows;
  /// Also shown in the report, not only written as CSV (keep such tables to a few dozen rows).
  bool report = false;
};

/// A matrix drawn in the report as a heatmap (blue negative, white 0, red positive, scaled by its largest |value|)
/// and written as a tensor file: e.g. units × inputs.
struct GALVANI_API Matrix {
  std::string method;
  std::string layer;
  std::string name;
  std::string row_title, column_title;                 ///< what rows and columns are ("filter", "sentence")
  std::vector<std::string> row_labels, column_labels;  ///< one per row / column (may be empty)
  torch::Tensor values;                                ///< [rows, columns], on the CPU
};

/// One line of a plot in the report: y against x for one method/layer pair. Curves of one evaluator with the
/// same `name` are drawn in one plot, one line per method/layer.
struct GALVANI_API Curve {
  std::string method;
  std::string layer;
  std::string name;      ///< the plot, e.g. "MoRF" or "randomisation: spearman"
  std::string x_label, y_label;
  std::vector<double> x, y;
};

struct GALVANI_API Evaluation {
  std::vector<Metric> metrics;
  std::vector<Table> tables;
  std::vector<Curve> curves;
  std::vector<Matrix> matrices;
};

/// A configured evaluator: constructed once per `[[evaluators]]` entry from its Options, then `evaluate` is
/// called once, on the host's thread, after every method ran, with all results (tensors on the model's device).
/// It may run the model (input.model) for ablations; anything it throws reaches the user as PluginError.
/// What an evaluator can see of the run while it is planned, before any shard runs.
struct GALVANI_API EvaluatorPlan {
  const Model* model = nullptr;           ///< loaded, layer shapes probed
  std::int64_t inputs = 0;                ///< how many inputs the run has
  std::vector<std::int64_t> input_shape;  ///< one input, without the batch dimension
  std::vector<std::string> methods;       ///< the run's method names, in config order
};

class GALVANI_API Evaluator {
 public:
  virtual ~Evaluator();
  virtual Evaluation evaluate(const EvaluationInput& input) const = 0;
  /// Checks, while the run is planned and before any shard runs, what does not need the results: options
  /// against the model (its modules, capabilities), the number and shape of the inputs, the run's methods.
  /// Throws galvani::Error subclasses like `evaluate` would. The default checks nothing.
  virtual void validate(const EvaluatorPlan& plan) const;
};

}  // namespace galvani
