// Plans and runs a comparison: config → plan (components, shared passes, shards) → TBB graph → results.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "galvani/core/config.h"
#include "galvani/core/plugin_host.h"
#include "galvani/evaluator.h"
#include "galvani/method.h"
#include "galvani/model.h"
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
  int steps = 0;
  std::int64_t internal_batch = 0;
  bool tangents = false;
  bool input_grads = false;
  std::vector<std::string> layers;
  std::vector<std::size_t> methods; ///< indices into Plan::methods
};

struct PlannedEvaluator {
  EvaluatorConfig config;
  std::string plugin;
  std::shared_ptr<Evaluator> evaluator;
};

struct Plan {
  RunConfig config;
  std::shared_ptr<Model> model;
  torch::Tensor inputs, baselines, targets;  ///< on the model's device
  Objective objective;
  std::vector<PlannedMethod> methods;
  std::vector<PlannedMethod> standalone;     ///< methods that need no shared pass (own passes)
  std::vector<PassGroup> groups;
  std::vector<PlannedEvaluator> evaluators;
  std::int64_t shard_size = 0;
  int concurrency = 1;                       ///< shards at once
  int intra_threads = 1;                     ///< ATen threads inside each
  std::map<std::string, double> timings;     ///< seconds per stage so far
  /// Human-readable description for --dry-run.
  std::string describe() const;
};

/// Builds the plan: loads extra plugins, the model, data and targets; constructs every component from its
/// options (unknown keys → ConfigError naming the key); validates layers; groups methods into shared passes.
Plan make_plan(const RunConfig& config, PluginHost& host);

/// All results of a run.
struct RunResult {
  std::vector<MethodResult> results;      ///< per method and layer, in config order
  torch::Tensor f_input, f_baseline;      ///< [N]
  std::vector<std::pair<std::string, Evaluation>> evaluations;  ///< per evaluator name
  std::map<std::string, double> timings;  ///< seconds per stage
};

/// Progress of a stage: ("shards", done, total) after each shard, then ("evaluator NAME", i, n) before and
/// after each evaluator.
using ProgressFn = std::function<void(const std::string& stage, std::size_t done, std::size_t total)>;

/// Runs the plan on a TBB flow graph (shards concurrently, one ATen thread each when several run at once),
/// then the evaluators. Errors in plugin code come out as PluginError naming the plugin.
RunResult execute(Plan& plan, const ProgressFn& progress = {});

/// Writes attributions/<method>/<layer>.pt, scores/<layer>.csv, tables/<evaluator>/<table>.csv,
/// summary.json and the report (report.md, report.html, plots/) into `dir`, each file atomically.
void write_results(const Plan& plan, const RunResult& result, const std::string& dir);

/// Writes report.md (figures under plots/) and a self-contained report.html: the run, completeness deltas,
/// one table per evaluator (method × layer rows, metric columns) with its curves as line plots, heatmaps of
/// image-shaped input attributions over the first `heatmap_inputs` inputs, timings and notes.
void write_report(const Plan& plan, const RunResult& result, const std::string& dir, int heatmap_inputs = 8);
/// Whether reports have figures: false when the build found no cairo (the report says so).
bool report_has_figures();

/// Runs `fn`, turning any exception other than a Galvani error into PluginError naming `plugin`,
/// and Galvani errors into PluginError too so the message names where it came from.
template <typename Fn>
auto call_plugin(const std::string& plugin, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const PluginError&) {
    throw;
  } catch (const std::exception& e) {
    throw PluginError(plugin, e.what());
  } catch (...) {
    throw PluginError(plugin, "unknown exception");
  }
}

}  // namespace galvani::core
