// Runs a plan: shards on a oneTBB flow graph, every method on each, then the evaluators.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "galvani/core/plan.h"
#include "galvani/core/results.h"

namespace galvani::core {

/// Progress of a stage: ("shards", done, total) after each shard, then ("evaluator NAME", i, n) before and
/// after each evaluator.
using ProgressFn = std::function<void(const std::string& stage, std::size_t done, std::size_t total)>;

/// Runs the plan on a TBB flow graph (shards concurrently, one ATen thread each when several run at once),
/// then the evaluators. Errors in plugin code come out as PluginError naming the plugin.
RunResult execute(const Plan& plan, const ProgressFn& progress = {});

/// One shard of a schedule: inputs [start, start + length) of the run.
struct ShardRange {
  std::size_t index = 0;
  std::int64_t start = 0, length = 0;
};

/// The shard schedule every run uses (and the benchmarks' floors with it): `fn` for each shard, at most
/// `schedule.concurrency` at once in one task arena, each with `schedule.intra_threads` ATen threads and grad
/// mode on; `done(count)` after each shard, serially. After the first exception no new shard starts; it is
/// rethrown once the running ones finish.
void for_each_shard(const ShardSchedule& schedule, const std::function<void(const ShardRange&)>& fn,
                    const std::function<void(std::size_t done)>& done = {});

}  // namespace galvani::core
