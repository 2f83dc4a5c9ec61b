// Method cost against the floor: a plain chunked forward+backward to the layer over the same path points,
// on the same cores (same shards, same threads, same chunk size). Ratios: benchmarks/report.py.
//
//   galvani_bench [--benchmark_filter=fashion]   models: docs/examples/fashion_cnn.pt (batch 64) and
//                                                bench_models/resnet18_bench_traced.pt (batch 8, 3×64×64)
#include <benchmark/benchmark.h>

#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

#include "bench_support.h"
#include "galvani/core/bench.h"
#include "galvani/core/config.h"
#include "galvani/core/execute.h"
#include "galvani/core/plan.h"

namespace {

using galvani::core::Plan;

struct Case {
  std::string model, inputs, layer;
  int64_t batch;
  int steps;
};

const std::map<std::string, Case>& cases() {
  static const std::map<std::string, Case> c = [] {
    std::map<std::string, Case> m;
    const std::string dir = galvani::bench::bench_dir("galvani_bench");
    const auto fashion = galvani::bench::fashion64(dir);
    m["fashion"] = {fashion.model, fashion.inputs, "features.4", 64, 50};
    const auto resnet = galvani::bench::resnet8(dir);
    m["resnet18"] = {resnet.model, resnet.inputs, "layer2", 8, 50};
    return m;
  }();
  return c;
}

std::string method_entry(const std::string& plugin, const Case& c) {
  return "[[methods]]\nplugin = \"" + plugin + "\"\nlayers = [\"" + c.layer + "\"]\nsteps = " +
         std::to_string(c.steps) + "\nrule = \"gausslegendre\"\n";
}

std::unique_ptr<Plan> make(const Case& c, const std::string& methods, int threads) {
  const std::string toml = "[model]\npath = \"" + c.model + "\"\n[data]\ninputs = \"" + c.inputs +
                           "\"\n[run]\nthreads = " + std::to_string(threads) + "\n" + methods;
  auto cfg = galvani::core::parse_config_string(toml, ".");
  return std::make_unique<Plan>(galvani::core::make_plan(cfg, galvani::bench::plugin_host()));
}

void report_points(benchmark::State& state, const Case& c) {
  // Path points = (steps + 2 endpoints) × batch, as the shared pass computes them.
  state.counters["points"] = static_cast<double>((c.steps + 2) * c.batch);
}

// The floor: the shared pass's grid points over the same shards and threads as the runner, in the same chunks,
// one forward (with the layer captured) and one backward to the layer per chunk; nothing stored
// (core::run_floor, which `galvani bench` runs too).
void BM_Floor(benchmark::State& state, const std::string& name) {
  const Case& c = cases().at(name);
  const auto plan = make(c, method_entry("nig", c), static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(galvani::core::run_floor(*plan, plan->groups.at(0)));
  report_points(state, c);
}

void BM_Method(benchmark::State& state, const std::string& name, const std::string& methods) {
  const Case& c = cases().at(name);
  std::string entries;
  std::stringstream in(methods);
  for (std::string m; std::getline(in, m, ',');) entries += method_entry(m, c);
  auto plan = make(c, entries, static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(galvani::core::execute(*plan));
  report_points(state, c);
}

void register_all() {
  const std::vector<std::pair<std::string, std::string>> methods{
      {"conductance", "conductance"},
      {"nig", "nig"},
      {"internal-influence", "internal-influence"},
      {"gradient-x-activation", "gradient-x-activation"},
      {"five", "conductance,nig,internal-influence,gradient-x-activation,gradient-x-delta"},
  };
  for (const std::string model : {"fashion", "resnet18"}) {
    if (!std::filesystem::exists(cases().at(model).model)) continue;
    galvani::bench::add("floor/" + model, BM_Floor, model);
    for (const auto& [label, list] : methods) galvani::bench::add(label + "/" + model, BM_Method, model, list);
  }
}

}  // namespace

int main(int argc, char** argv) { return galvani::bench::run(argc, argv, register_all); }
