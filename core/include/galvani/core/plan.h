// The plan: a config turned into constructed components, the run's data, shared passes and a shard schedule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "galvani/core/config.h"
#include "galvani/core/plugin_host.h"
#include "galvani/core/results.h"
#include "galvani/evaluator.h"
#include "galvani/method.h"
#include "galvani/model.h"
#include "galvani/passes.h"
#include "galvani/path.h"

namespace galvani::core {

/// One configured method, with the plugin it came from.
struct PlannedMethod {
  MethodConfig config;
  std::string plugin;  ///< for error messages
  std::shared_ptr<PathGenerator> path;
  std::shared_ptr<Method> method;
  MethodNeeds needs;
};

/// Methods that share one pass over the same path; `layers` is the union of theirs.
struct PassGroup {
  std::string key;                  ///< "path: <description>, steps=N" or "endpoints"
  std::shared_ptr<PathGenerator> path;  ///< null for endpoints only
  int steps = 0;                    ///< with adaptive steps: the largest level's
  AdaptiveSteps adaptive;
  std::int64_t internal_batch = 0;
  bool tangents = false;
  bool input_grads = false;
  std::vector<std::string> layers;
  std::vector<std::size_t> methods; ///< indices into the method list the groups were made from
  /// The pass this group runs (at `steps`; an adaptive pass sets each level's).
  PathPassSpec spec(bool double_accumulate) const;
};

/// Groups `methods` into shared passes: one group per distinct path; methods that need endpoints only join the
/// first path group. Methods that need no shared pass are in no group.
std::vector<PassGroup> group_methods(const std::vector<PlannedMethod>& methods);

struct PlannedEvaluator {
  EvaluatorConfig config;
  std::string plugin;
  std::shared_ptr<Evaluator> evaluator;
};

/// How a run's inputs are cut into shards and run: `concurrency` shards at once, `intra_threads` ATen threads
/// each.
struct ShardSchedule {
  std::int64_t inputs = 0;
  std::int64_t shard_size = 1;
  int concurrency = 1;
  int intra_threads = 1;
  std::size_t shards() const { return static_cast<std::size_t>((inputs + shard_size - 1) / shard_size); }
  /// The same shard size and threads over the first `n` inputs.
  ShardSchedule over(std::int64_t n) const;
};

struct Plan {
  RunConfig config;
  std::shared_ptr<Model> model;
  torch::Tensor inputs, baselines, targets;  ///< on the model's device
  /// With data.path_layer: the model's own inputs (token ids) whose path-layer outputs are `inputs`; `model` is
  /// then a PathLayerModel. Undefined otherwise.
  torch::Tensor original_inputs;
  /// [data] vocabulary: token id → text (empty without one), and per input the text its ids spell, trailing
  /// padding left out (for evaluator tables and the report).
  std::vector<std::string> vocabulary, input_labels;
  Objective objective;
  std::vector<PlannedMethod> methods;
  std::vector<PassGroup> groups;             ///< shared passes over `methods`
  std::vector<PlannedEvaluator> evaluators;
  ShardSchedule schedule;
  /// Human-readable description for --dry-run.
  std::string describe() const;
};

/// What `galvani layers` lists: the model at `path` loaded by backend `backend` with `options`, its layer shapes
/// probed on the first input of `example` when that is defined (floating point in the model's dtype, token ids as
/// they are). Errors in plugin code come out as PluginError naming the plugin.
std::vector<LayerInfo> list_layers(PluginHost& host, const std::string& backend, const std::string& path,
                                   const ModelOptions& options, torch::Tensor example);

/// One model kept from plan to plan, for callers that plan many runs on the same model (a Python Session): the
/// load, the evaluation-mode rewrite and every tapped forward the model builds and caches are done once. The model
/// is reloaded when the [model] section or the file (size, modification time) changes. Thread-safe.
class ModelCache {
 public:
  /// The kept model when it was loaded for the same [model] section and file, else `load()`'s, which is kept.
  std::shared_ptr<Model> get(const ModelConfig& config, const std::function<std::shared_ptr<Model>()>& load);
  /// How many times a model was loaded.
  std::size_t loads() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return loads_;
  }

 private:
  mutable std::mutex mutex_;
  std::size_t loads_ = 0;
  std::string key_;
  std::shared_ptr<Model> model_;
};

/// Builds the plan: loads extra plugins, the model, data and targets; constructs every component from its
/// options (unknown keys → ConfigError naming the key); validates layers; groups methods into shared passes;
/// sizes the shards. Adds the seconds each planning stage took to `timings` when given; takes the model from
/// `models` when it holds it for this config (and keeps it there), loads it otherwise.
Plan make_plan(const RunConfig& config, PluginHost& host, Timings* timings = nullptr, ModelCache* models = nullptr);

}  // namespace galvani::core
