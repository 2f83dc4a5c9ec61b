// What the benchmark executables share: the plugin host and the two benchmark models with their inputs.
#pragma once

#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>

#include "galvani/core/plugin_host.h"
#include "galvani/core/process.h"
#include "galvani/core/execute.h"
#include "galvani/core/plan.h"
#include "galvani/tensor_io.h"

namespace galvani::bench {

/// The in-tree plugins, loaded once (never unloaded, like the command line's host).
inline core::PluginHost& plugin_host() {
  static core::PluginHost* host = [] {
    auto* h = new core::PluginHost();
    h->load_directory(GALVANI_PLUGIN_DIR);
    return h;
  }();
  return *host;
}

/// A model file and an input file for it.
struct BenchModel {
  std::string model, inputs;
};

/// A folder under the system's temporary folder for generated inputs.
inline std::string bench_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / name;
  std::filesystem::create_directories(dir);
  return dir.string();
}

/// The example CNN (docs/examples/fashion_cnn.pt) with the first 64 bundled test images.
inline BenchModel fashion64(const std::string& dir) {
  const auto images = load_tensor(std::string(GALVANI_SOURCE_DIR) + "/docs/examples/fashion_test.pt");
  save_tensor(images.narrow(0, 0, 64), dir + "/fashion64.pt");
  return {std::string(GALVANI_SOURCE_DIR) + "/docs/examples/fashion_cnn.pt", dir + "/fashion64.pt"};
}

/// resnet18 with random weights (benchmarks/export_models.py) with 8 random 3×64×64 inputs (seed 0).
inline BenchModel resnet8(const std::string& dir) {
  torch::manual_seed(0);
  save_tensor(torch::rand({8, 3, 64, 64}), dir + "/resnet8.pt");
  return {std::string(GALVANI_BENCH_MODELS) + "/resnet18_bench_traced.pt", dir + "/resnet8.pt"};
}

/// Calls fn(start, length) for every shard of `plan` through the runner's own shard schedule
/// (core::for_each_shard: the same arena, threads and grad mode as a run). For floors.
template <class Fn>
void for_each_shard(const core::Plan& plan, Fn fn) {
  core::for_each_shard(plan.schedule, [&](const core::ShardRange& r) { fn(r.start, r.length); });
}

/// Registers one timing as every benchmark here is run: argument 2 (the runner's threads, two shards at a
/// time), milliseconds, wall-clock time, at least 2 s.
template <class Fn, class... Args>
void add(const std::string& name, Fn fn, Args&&... args) {
  benchmark::RegisterBenchmark(name.c_str(), fn, std::forward<Args>(args)...)
      ->Arg(2)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->MinTime(2.0);
}

/// main(): the command line's allocator tuning (the floors run under it too), then Google Benchmark.
template <class Register>
int run(int argc, char** argv, Register register_all) {
  core::tune_allocator();
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace galvani::bench
