// What a run produces: every method's attributions, F(x) and F(x′), the evaluations, and where the time went.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "galvani/evaluator.h"

namespace galvani::core {

/// How results name a Space (summary.json's "space", the Python package's): "layer", "input", "unit-input".
inline const char* to_string(Space space) {
  switch (space) {
    case Space::Layer: return "layer";
    case Space::Input: return "input";
    case Space::UnitInput: return "unit-input";
  }
  return "layer";
}

/// Seconds per stage ("load model", "pass [...]", "method NAME", "evaluator NAME", "run (wall)").
using Timings = std::map<std::string, double>;

/// A method or evaluator that failed while the run went on without it.
struct Failure {
  std::string kind;     ///< "method" or "evaluator"
  std::string name;     ///< its name in the config
  std::string message;  ///< the error, as the user would have seen it
};

/// All results of a run.
struct RunResult {
  std::vector<MethodResult> results;      ///< per method and layer, in config order
  torch::Tensor f_input, f_baseline;      ///< [N]
  std::vector<std::pair<std::string, Evaluation>> evaluations;  ///< per evaluator name
  Timings timings;                        ///< planning's (make_plan) and the run's
  /// What failed after the run started; its results are absent, every other one's are complete. A run with
  /// failures is written with `"complete": false` and ends with exit status 1.
  std::vector<Failure> failures;
  bool complete() const { return failures.empty(); }
};

}  // namespace galvani::core
