// Writes a run's results into its output folder, each file atomically.
#pragma once

#include <string>

#include "galvani/core/plan.h"
#include "galvani/core/results.h"

namespace galvani::core {

/// Writes attributions/<method>/<layer>.pt, scores/<layer>.csv, tables/<evaluator>/<table>.csv,
/// summary.json and the report (report.md, report.html, plots/) into `dir`, each file atomically.
void write_results(const Plan& plan, const RunResult& result, const std::string& dir);

}  // namespace galvani::core
