// DeepLIFT against its floor: a plain forward+backward of the paired batch (2N rows: inputs and references)
// to the same layer, over the same shards and threads as the runner. Ratios: benchmarks/report.py.
//
//   galvani_deeplift_bench [--benchmark_filter=fashion]   models: docs/examples/fashion_cnn.pt (batch 64),
//                                                          bench_models/resnet18_bench_traced.pt (batch 8)
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <torch/csrc/autograd/autograd.h>

#include <filesystem>
#include <map>
#include <memory>

#include "galvani/core/config.h"
#include "galvani/core/process.h"
#include "galvani/core/runner.h"
#include "galvani/tap.h"
#include "galvani/tensor_io.h"

namespace {

using galvani::core::Plan;

struct Case {
  std::string model, inputs, layer;
};

const std::map<std::string, Case>& cases() {
  static const std::map<std::string, Case> c = [] {
    std::map<std::string, Case> m;
    const std::string tmp = (std::filesystem::temp_directory_path() / "galvani_deeplift_bench").string();
    std::filesystem::create_directories(tmp);
    auto fashion = galvani::load_tensor(std::string(GALVANI_SOURCE_DIR) + "/docs/examples/fashion_test.pt");
    galvani::save_tensor(fashion.narrow(0, 0, 64), tmp + "/fashion64.pt");
    m["fashion"] = {std::string(GALVANI_SOURCE_DIR) + "/docs/examples/fashion_cnn.pt", tmp + "/fashion64.pt",
                    "features.4"};
    torch::manual_seed(0);
    galvani::save_tensor(torch::rand({8, 3, 64, 64}), tmp + "/resnet8.pt");
    m["resnet18"] = {std::string(GALVANI_BENCH_MODELS) + "/resnet18_bench_traced.pt", tmp + "/resnet8.pt", "layer2"};
    return m;
  }();
  return c;
}

galvani::core::PluginHost& host() {
  static galvani::core::PluginHost* h = [] {
    auto* p = new galvani::core::PluginHost();
    p->load_directory(GALVANI_PLUGIN_DIR);
    return p;
  }();
  return *h;
}

std::unique_ptr<Plan> make(const Case& c, const std::string& options, int threads,
                           const std::string& plugin = "deeplift") {
  const std::string toml = "[model]\npath = \"" + c.model + "\"\n[data]\ninputs = \"" + c.inputs +
                           "\"\n[run]\nthreads = " + std::to_string(threads) +
                           "\n[[methods]]\nplugin = \"" + plugin + "\"\nlayers = [\"" + c.layer + "\"]\n" + options + "\n";
  return std::make_unique<Plan>(galvani::core::make_plan(galvani::core::parse_config_string(toml, "."), host()));
}

// One forward of [x; x′] with the layer captured and one backward to it, per shard, nothing stored.
void BM_Floor(benchmark::State& state, const std::string& name) {
  const Case& c = cases().at(name);
  const auto plan = make(c, "", static_cast<int>(state.range(0)));
  auto tapped = plan->model->tapped({c.layer});
  const auto n = plan->inputs.size(0);
  const auto shards = (n + plan->shard_size - 1) / plan->shard_size;
  tbb::task_arena arena(plan->concurrency);
  for (auto _ : state) {
    arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, shards, 1), [&](const tbb::blocked_range<int64_t>& range) {
        for (int64_t s = range.begin(); s < range.end(); ++s) {
          at::set_num_threads(plan->intra_threads);
          torch::AutoGradMode grad(true);
          const auto start = s * plan->shard_size;
          const auto len = std::min(plan->shard_size, n - start);
          const auto pair = torch::cat({plan->inputs.narrow(0, start, len), plan->baselines.narrow(0, start, len)});
          const auto tg = plan->targets.narrow(0, start, len).repeat({2});
          std::vector<torch::Tensor> cap;
          const auto out = tapped->forward(pair.detach().requires_grad_(true), galvani::taps::capture(cap));
          benchmark::DoNotOptimize(torch::autograd::grad({plan->objective(out, tg).sum()}, {cap[0]})[0]);
        }
      }, tbb::simple_partitioner());
    });
  }
}

void BM_DeepLift(benchmark::State& state, const std::string& name, const std::string& options) {
  auto plan = make(cases().at(name), options, static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(galvani::core::execute(*plan));
}

// The runner with gradient × activation: its endpoint pass is a forward+backward of the same 2N rows, so
// this is the floor plus what every run does besides (F(x) and F(x′) for the summary, checks, concatenation).
void BM_Runner(benchmark::State& state, const std::string& name) {
  auto plan = make(cases().at(name), "", static_cast<int>(state.range(0)), "gradient-x-activation");
  for (auto _ : state) benchmark::DoNotOptimize(galvani::core::execute(*plan));
}

void register_all() {
  const std::vector<std::pair<std::string, std::string>> variants{
      {"deeplift-default", ""},
      {"deeplift-rescale", "nonlinear_rule = \"rescale\""},
      {"deeplift-reveal-cancel", "nonlinear_rule = \"reveal-cancel\""},
      {"deeplift-rescale-gradient-pool", "nonlinear_rule = \"rescale\"\nmaxpool = \"gradient\""},
  };
  for (const std::string model : {"fashion", "resnet18"}) {
    if (!std::filesystem::exists(cases().at(model).model)) continue;
    benchmark::RegisterBenchmark(("floor-2n/" + model).c_str(), BM_Floor, model)
        ->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
    benchmark::RegisterBenchmark(("runner-gxa/" + model).c_str(), BM_Runner, model)
        ->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
    for (const auto& [label, options] : variants)
      benchmark::RegisterBenchmark((label + "/" + model).c_str(), BM_DeepLift, model, options)
          ->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  galvani::core::tune_allocator();
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
