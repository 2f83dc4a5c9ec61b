// shapley-sampling against its floor: the same coalition evaluations run as plain tail-only forwards
// (Model::tail(layer)->forward) on ready-made activations, in the same chunk sizes, over the same shards and
// threads as the runner. A second floor adds the forwards no implementation can skip: the runner's F(x), F(x′)
// and the head forward to the layer on inputs and baselines.
//
//   galvani_shapley_bench   models: docs/examples/fashion_cnn.pt at classifier.2 (64 neurons, batch 64,
//                           5 permutations) and bench_models/resnet18_bench_traced.pt at layer1 (64 filters,
//                           batch 8, 3×64×64, 2 permutations)
#include <benchmark/benchmark.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <ATen/Parallel.h>

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
  std::string model, inputs, layer, unit;
  std::int64_t permutations;
  std::int64_t units;  // players: neurons or filters
};

const std::map<std::string, Case>& cases() {
  static const std::map<std::string, Case> c = [] {
    std::map<std::string, Case> m;
    const std::string tmp = (std::filesystem::temp_directory_path() / "galvani_shapley_bench").string();
    std::filesystem::create_directories(tmp);
    auto fashion = galvani::load_tensor(std::string(GALVANI_SOURCE_DIR) + "/docs/examples/fashion_test.pt");
    galvani::save_tensor(fashion.narrow(0, 0, 64), tmp + "/fashion64.pt");
    m["fashion"] = {std::string(GALVANI_SOURCE_DIR) + "/docs/examples/fashion_cnn.pt", tmp + "/fashion64.pt",
                    "classifier.2", "neuron", 5, 64};
    torch::manual_seed(0);
    galvani::save_tensor(torch::rand({8, 3, 64, 64}), tmp + "/resnet8.pt");
    m["resnet18"] = {std::string(GALVANI_BENCH_MODELS) + "/resnet18_bench_traced.pt", tmp + "/resnet8.pt", "layer1",
                     "filter", 2, 64};
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

std::unique_ptr<Plan> make(const Case& c, int threads) {
  // Odd permutation counts need plain (non-antithetic) sampling; the work per coalition is the same.
  const std::string toml = "[model]\npath = \"" + c.model + "\"\n[data]\ninputs = \"" + c.inputs +
                           "\"\n[run]\nthreads = " + std::to_string(threads) +
                           "\n[[methods]]\nplugin = \"shapley-sampling\"\nlayers = [\"" + c.layer + "\"]\nunit = \"" +
                           c.unit + "\"\nmax_permutations = " + std::to_string(c.permutations) +
                           "\ncheck_every = " + std::to_string(c.permutations) + "\nantithetic = false\n";
  auto cfg = galvani::core::parse_config_string(toml, ".");
  return std::make_unique<Plan>(galvani::core::make_plan(cfg, host()));
}

void report(benchmark::State& state, const Case& c, std::int64_t batch) {
  state.counters["coalitions"] = static_cast<double>(batch * (c.permutations * (c.units - 1) + 2));
}

// The floor: per shard, the coalition rows the method evaluates (v(all) and v(∅) per input, then
// permutations × (units − 1) per input) as tail forwards on a fixed activation batch, chunked as the method
// chunks them. With `head`, also the forwards before the coalitions.
void BM_Floor(benchmark::State& state, const std::string& name, bool head) {
  const Case& c = cases().at(name);
  const auto plan = make(c, static_cast<int>(state.range(0)));
  const auto& model = *plan->model;
  const auto tail = model.tail(c.layer);
  const auto tapped = model.tapped({c.layer});
  const auto n = plan->inputs.size(0);
  const auto shards = (n + plan->shard_size - 1) / plan->shard_size;
  std::vector<torch::Tensor> cap;
  {
    torch::NoGradGuard ng;
    tapped->forward(plan->inputs.narrow(0, 0, 1), galvani::taps::capture(cap));
  }
  const auto numel = cap[0][0].numel();
  const auto chunk = std::clamp<std::int64_t>((std::int64_t{1} << 20) / numel, 16, 4096);  // as the method
  std::vector<std::int64_t> shape = cap[0].sizes().vec();
  shape[0] = chunk;
  const auto activations = cap[0].expand(shape).contiguous();
  tbb::task_arena arena(plan->concurrency);
  for (auto _ : state) {
    arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, shards, 1), [&](const tbb::blocked_range<std::int64_t>& r) {
        for (std::int64_t s = r.begin(); s < r.end(); ++s) {
          at::set_num_threads(plan->intra_threads);
          torch::NoGradGuard ng;
          const auto len = std::min(plan->shard_size, n - s * plan->shard_size);
          if (head) {
            const auto x = plan->inputs.narrow(0, s * plan->shard_size, len);
            const auto xb = plan->baselines.narrow(0, s * plan->shard_size, len);
            benchmark::DoNotOptimize(model.forward(x));
            benchmark::DoNotOptimize(model.forward(xb));
            std::vector<torch::Tensor> sink;
            benchmark::DoNotOptimize(tapped->forward(torch::cat({x, xb}), galvani::taps::capture(sink)));
          }
          for (const auto rows : {2 * len, len * c.permutations * (c.units - 1)})
            for (std::int64_t p = 0; p < rows; p += chunk)
              benchmark::DoNotOptimize(tail->forward(activations.narrow(0, 0, std::min(chunk, rows - p)), {}));
        }
      }, tbb::simple_partitioner());
    });
  }
  report(state, c, n);
}

void BM_Shapley(benchmark::State& state, const std::string& name) {
  const Case& c = cases().at(name);
  auto plan = make(c, static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(galvani::core::execute(*plan));
  report(state, c, plan->inputs.size(0));
}

void register_all() {
  for (const std::string model : {"fashion", "resnet18"}) {
    if (!std::filesystem::exists(cases().at(model).model)) continue;
    const double min_time = model == "fashion" ? 2.0 : 5.0;
    benchmark::RegisterBenchmark(("floor/" + model).c_str(), BM_Floor, model, false)
        ->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(min_time);
    benchmark::RegisterBenchmark(("floor+head/" + model).c_str(), BM_Floor, model, true)
        ->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(min_time);
    benchmark::RegisterBenchmark(("shapley-sampling/" + model).c_str(), BM_Shapley, model)
        ->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(min_time);
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
