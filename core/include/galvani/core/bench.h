// Microbenchmarks of a config's methods on the user's own model and data (`galvani bench`): each method timed
// alone over the run's own shard schedule, beside its floor, a plain chunked forward+backward over the same
// points on the same schedule.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "galvani/core/plan.h"
#include "galvani/core/results.h"

namespace galvani::core {

/// Repeated timings of one piece of work, in seconds.
struct Timing {
  std::vector<double> seconds;  ///< each timed repetition, in order
  double median() const;
  double min() const;
  double max() const;
};

/// One method timed alone (or the whole run: every method of the config in one execution, passes shared).
struct BenchRow {
  std::string name;    ///< the method's name, or "all methods"
  std::string plugin;  ///< the method's plugin ("" for the whole run)
  double first_seconds = 0;  ///< the first, untimed run: it builds the tapped forwards' graphs
  Timing time;
  /// The floor it is measured against: its shared pass's points ("path" or "endpoints", by compute_path_pass's
  /// layout) with a forward and a backward to its layers per chunk; for a method that runs passes of its own,
  /// a forward and a backward to the input at x and x′ ("endpoints").
  std::string floor_kind;
  std::string floor_key;      ///< the pass the floor follows (as --dry-run names it)
  std::int64_t points = 0;    ///< points of the floor over all inputs
  Timing floor;
  /// The process's peak resident memory over this row's repetitions (VmHWM after resetting it), in bytes; −1
  /// where the kernel does not let it be reset. It includes the model, the data and the library.
  std::int64_t peak_rss_bytes = -1;
  double ratio() const { return floor.median() > 0 ? time.median() / floor.median() : 0; }
};

struct BenchReport {
  int repetitions = 0;
  ShardSchedule schedule;
  std::int64_t inputs = 0;
  std::string device;
  Timings planning;  ///< make_plan's stages, seconds
  std::vector<BenchRow> rows;
  /// The table `galvani bench` prints.
  std::string table() const;
  /// Everything, as JSON (bench.json).
  std::string json() const;
};

/// The floor of one of `plan`'s shared passes (galvani::floor_pass over every shard of the plan's schedule, on its
/// model, inputs, baselines and targets); returns the points it ran. The benchmarks' floors are this.
std::int64_t run_floor(const Plan& plan, const PassGroup& group);

/// Times every method of `plan` alone (one untimed run, then `repetitions` timed ones, each followed by its floor
/// on the same schedule), then, with more than one method, all of them together. Evaluators are not run.
/// `progress(line)` is called before each row.
BenchReport bench(const Plan& plan, int repetitions, const std::function<void(const std::string&)>& progress = {});

}  // namespace galvani::core
