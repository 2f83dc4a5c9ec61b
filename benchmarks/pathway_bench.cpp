// Pathway gradient against the floor, on the example CNN (batch 64) and resnet18 (batch 8, 3×64×64), with
// every ReLU call site as a layer (fashion: 3, resnet18: 17).
//
// The floor is a plain chunked forward+backward to the input over as many points as the method must evaluate,
// on the same shards, threads and chunk size as the runner:
//   mct:     2 points per input (the pass for the contributions, then the restricted model's gradient);
//   intgrad: L·steps points per input (one α-path per layer, all layers sharing chunks) + 2 per input.
// The method also runs a no-grad pass of L points per input for its completeness check (intgrad_delta), which
// the floor leaves out. Ratios method/floor: docs/benchmarks.md.
//
//   galvani_pathway_bench [--benchmark_filter=fashion]
#include <benchmark/benchmark.h>
#include <torch/csrc/autograd/autograd.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <ATen/Parallel.h>

#include <filesystem>
#include <map>
#include <memory>

#include "galvani/core/config.h"
#include "galvani/core/process.h"
#include "galvani/core/runner.h"
#include "galvani/passes.h"
#include "galvani/tap.h"
#include "galvani/tensor_io.h"

namespace {

using galvani::core::Plan;

struct Case {
  std::string model, inputs;
  int64_t batch;
  int steps;  // NeuronIntGrad steps
};

const std::map<std::string, Case>& cases() {
  static const std::map<std::string, Case> c = [] {
    std::map<std::string, Case> m;
    const std::string tmp = (std::filesystem::temp_directory_path() / "galvani_pathway_bench").string();
    std::filesystem::create_directories(tmp);
    auto fashion = galvani::load_tensor(std::string(GALVANI_SOURCE_DIR) + "/docs/examples/fashion_test.pt");
    galvani::save_tensor(fashion.narrow(0, 0, 64), tmp + "/fashion64.pt");
    m["fashion"] = {std::string(GALVANI_SOURCE_DIR) + "/docs/examples/fashion_cnn.pt", tmp + "/fashion64.pt", 64, 50};
    torch::manual_seed(0);
    galvani::save_tensor(torch::rand({8, 3, 64, 64}), tmp + "/resnet8.pt");
    // 17 layers × 16 steps × 8 inputs = 2176 resnet18 forwards+backwards per run: 50 steps would take minutes.
    m["resnet18"] = {std::string(GALVANI_BENCH_MODELS) + "/resnet18_bench_traced.pt", tmp + "/resnet8.pt", 8, 16};
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

std::string method_entry(const std::string& contribution, const Case& c) {
  return "[[methods]]\nplugin = \"pathway-gradient\"\ncontribution = \"" + contribution + "\"\nsteps = " +
         std::to_string(c.steps) + "\nrule = \"gausslegendre\"\n";
}

std::unique_ptr<Plan> make(const Case& c, const std::string& contribution, int threads) {
  const std::string toml = "[model]\npath = \"" + c.model + "\"\n[data]\ninputs = \"" + c.inputs +
                           "\"\n[run]\nthreads = " + std::to_string(threads) + "\n" + method_entry(contribution, c);
  auto cfg = galvani::core::parse_config_string(toml, ".");
  return std::make_unique<Plan>(galvani::core::make_plan(cfg, host()));
}

std::vector<std::string> relu_sites(const galvani::Model& model) {
  std::vector<std::string> names;
  for (const auto& l : model.layers())
    if (l.type == "ReLU") names.push_back(l.name);
  return names;
}

int64_t points_per_input(const Plan& plan, const Case& c, const std::string& contribution) {
  return contribution == "mct" ? 2 : static_cast<int64_t>(relu_sites(*plan.model).size()) * c.steps + 2;
}

// The floor: per shard, `points_per_input` copies of every input in chunks of the default internal batch, one
// forward and one backward to the input per chunk. Nothing stored.
void BM_Floor(benchmark::State& state, const std::string& name, const std::string& contribution) {
  const Case& c = cases().at(name);
  const auto plan = make(c, contribution, static_cast<int>(state.range(0)));
  const auto n = plan->inputs.size(0);
  const auto shards = (n + plan->shard_size - 1) / plan->shard_size;
  const auto chunk = galvani::default_internal_batch(plan->inputs[0].numel());
  const auto reps = points_per_input(*plan, c, contribution);
  // As in methods_bench.cpp, the tapped forward with one layer captured: the plain TorchScript forward of a
  // model takes the JIT's autodiff path on inputs that require grad, which is several times slower on the CPU
  // than the tapped graphs every method runs.
  auto tapped = plan->model->tapped({relu_sites(*plan->model).front()});
  tbb::task_arena arena(plan->concurrency);
  for (auto _ : state) {
    arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, shards, 1), [&](const tbb::blocked_range<int64_t>& range) {
        for (int64_t s = range.begin(); s < range.end(); ++s) {
          at::set_num_threads(plan->intra_threads);
          torch::AutoGradMode grad(true);
          const auto start = s * plan->shard_size;
          const auto len = std::min(plan->shard_size, n - start);
          const auto x = plan->inputs.narrow(0, start, len);
          const auto tg = plan->targets.narrow(0, start, len).repeat({reps});
          const auto pts = x.repeat({reps, 1, 1, 1});
          for (int64_t p = 0; p < pts.size(0); p += chunk) {
            const auto l = std::min(chunk, pts.size(0) - p);
            const auto xin = pts.narrow(0, p, l).detach().requires_grad_(true);
            std::vector<torch::Tensor> cap;
            const auto f = plan->objective(tapped->forward(xin, galvani::taps::capture(cap)), tg.narrow(0, p, l));
            benchmark::DoNotOptimize(torch::autograd::grad({f.sum()}, {xin})[0]);
          }
        }
      }, tbb::simple_partitioner());
    });
  }
  state.counters["points"] = static_cast<double>(reps * c.batch);
}

void BM_Method(benchmark::State& state, const std::string& name, const std::string& contribution) {
  const Case& c = cases().at(name);
  auto plan = make(c, contribution, static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(galvani::core::execute(*plan));
  state.counters["points"] = static_cast<double>(points_per_input(*plan, c, contribution) * c.batch);
}

void register_all() {
  for (const std::string model : {"fashion", "resnet18"}) {
    if (!std::filesystem::exists(cases().at(model).model)) continue;
    for (const std::string contribution : {"mct", "intgrad"}) {
      // Seconds per run for resnet18 with NeuronIntGrad: a few runs are enough.
      const bool heavy = model == "resnet18" && contribution == "intgrad";
      for (auto* b : {benchmark::RegisterBenchmark(("floor-" + contribution + "/" + model).c_str(), BM_Floor, model,
                                                   contribution),
                      benchmark::RegisterBenchmark(("pathway-" + contribution + "/" + model).c_str(), BM_Method, model,
                                                   contribution)}) {
        b->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
        if (heavy)
          b->Iterations(3);
        else
          b->MinTime(2.0);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  galvani::core::tune_allocator();  // as the command line does; the floor runs under the same allocator
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
