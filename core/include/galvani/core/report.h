// The comparison report: report.md with figures under plots/, and a self-contained report.html.
#pragma once

#include <string>

#include "galvani/core/plan.h"
#include "galvani/core/results.h"

namespace galvani::core {

/// Writes report.md (figures under plots/) and a self-contained report.html: the run, completeness deltas,
/// one table per evaluator (method × layer rows, metric columns) with its curves as line plots, heatmaps of
/// image-shaped input attributions over the first `heatmap_inputs` inputs, timings and notes.
void write_report(const Plan& plan, const RunResult& result, const std::string& dir, int heatmap_inputs = 8);
/// Whether reports have figures: false when the build found no cairo (the report says so).
bool report_has_figures();

}  // namespace galvani::core
