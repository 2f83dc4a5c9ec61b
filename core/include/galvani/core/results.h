// What a run produces: every method's attributions, F(x) and F(x′), the evaluations, and where the time went.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "galvani/evaluator.h"

namespace galvani::core {

/// Seconds per stage ("load model", "pass [...]", "method NAME", "evaluator NAME", "run (wall)").
using Timings = std::map<std::string, double>;

/// All results of a run.
struct RunResult {
  std::vector<MethodResult> results;      ///< per method and layer, in config order
  torch::Tensor f_input, f_baseline;      ///< [N]
  std::vector<std::pair<std::string, Evaluation>> evaluations;  ///< per evaluator name
  Timings timings;                        ///< planning's (make_plan) and the run's
};

}  // namespace galvani::core
