// DeepLIFT against its floor: a plain forward+backward of the paired batch (2N rows: inputs and references)
// to the same layer, over the same shards and threads as the runner. Ratios: benchmarks/report.py.
// Two kinds of baselines: zeros, one baseline for all inputs, which DeepLIFT runs once (N + 1 rows), and
// "-distinct", one noise baseline per input, where DeepLIFT's batch is the full 2N rows of the floor.
//
//   galvani_deeplift_bench [--benchmark_filter=fashion]   models: docs/examples/fashion_cnn.pt (batch 64),
//                                                          bench_models/resnet18_bench_traced.pt (batch 8)
#include <benchmark/benchmark.h>
#include <torch/csrc/autograd/autograd.h>

#include <filesystem>
#include <map>
#include <memory>

#include "bench_support.h"
#include "galvani/core/config.h"
#include "galvani/core/execute.h"
#include "galvani/core/plan.h"
#include "galvani/tap.h"

namespace {

using galvani::core::Plan;

struct Case {
  std::string model, inputs, layer;
  std::string distinct_baselines;  // one baseline per input (uniform noise): the batch is [x; x′] of 2N rows
};

const std::map<std::string, Case>& cases() {
  static const std::map<std::string, Case> c = [] {
    std::map<std::string, Case> m;
    const std::string dir = galvani::bench::bench_dir("galvani_deeplift_bench");
    torch::manual_seed(1);
    const auto fashion = galvani::bench::fashion64(dir);
    galvani::save_tensor(torch::rand({64, 1, 28, 28}) * 0.5, dir + "/fashion64_baselines.pt");
    m["fashion"] = {fashion.model, fashion.inputs, "features.4", dir + "/fashion64_baselines.pt"};
    const auto resnet = galvani::bench::resnet8(dir);
    galvani::save_tensor(torch::rand({8, 3, 64, 64}) * 0.5, dir + "/resnet8_baselines.pt");
    m["resnet18"] = {resnet.model, resnet.inputs, "layer2", dir + "/resnet8_baselines.pt"};
    return m;
  }();
  return c;
}

// Baselines: zeros (one baseline for all inputs, run once), or with `distinct` one per input.
std::unique_ptr<Plan> make(const Case& c, const std::string& options, int threads, bool distinct = false,
                           const std::string& plugin = "deeplift") {
  const std::string baselines = distinct ? "baselines = \"" + c.distinct_baselines + "\"\n" : "";
  const std::string toml = "[model]\npath = \"" + c.model + "\"\n[data]\ninputs = \"" + c.inputs + "\"\n" +
                           baselines + "[run]\nthreads = " + std::to_string(threads) +
                           "\n[[methods]]\nplugin = \"" + plugin + "\"\nlayers = [\"" + c.layer + "\"]\n" + options + "\n";
  return std::make_unique<Plan>(galvani::core::make_plan(galvani::core::parse_config_string(toml, "."), galvani::bench::plugin_host()));
}

// One forward of [x; x′] with the layer captured and one backward to it, per shard, nothing stored.
void BM_Floor(benchmark::State& state, const std::string& name, bool distinct) {
  const Case& c = cases().at(name);
  const auto plan = make(c, "", static_cast<int>(state.range(0)), distinct);
  auto tapped = plan->model->tapped({c.layer});
  for (auto _ : state) {
    galvani::bench::for_each_shard(*plan, [&](int64_t start, int64_t len) {
      const auto pair = torch::cat({plan->inputs.narrow(0, start, len), plan->baselines.narrow(0, start, len)});
      const auto tg = plan->targets.narrow(0, start, len).repeat({2});
      std::vector<torch::Tensor> cap;
      const auto out = tapped->forward(pair.detach().requires_grad_(true), galvani::taps::capture(cap));
      benchmark::DoNotOptimize(torch::autograd::grad({plan->objective(out, tg).sum()}, {cap[0]})[0]);
    });
  }
}

void BM_DeepLift(benchmark::State& state, const std::string& name, const std::string& options, bool distinct) {
  auto plan = make(cases().at(name), options, static_cast<int>(state.range(0)), distinct);
  for (auto _ : state) benchmark::DoNotOptimize(galvani::core::execute(*plan));
}

// The runner with gradient × activation: its endpoint pass is a forward+backward of the same 2N rows, so
// this is the floor plus what every run does besides (F(x) and F(x′) for the summary, checks, concatenation).
void BM_Runner(benchmark::State& state, const std::string& name, bool distinct) {
  auto plan = make(cases().at(name), "", static_cast<int>(state.range(0)), distinct, "gradient-x-activation");
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
    galvani::bench::add("floor-2n/" + model, BM_Floor, model, false);
    galvani::bench::add("floor-2n-distinct/" + model, BM_Floor, model, true);
    galvani::bench::add("runner-gxa/" + model, BM_Runner, model, false);
    galvani::bench::add("runner-gxa-distinct/" + model, BM_Runner, model, true);
    for (const auto& [label, options] : variants) {
      galvani::bench::add(label + "/" + model, BM_DeepLift, model, options, false);
      galvani::bench::add(label + "-distinct/" + model, BM_DeepLift, model, options, true);
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return galvani::bench::run(argc, argv, register_all); }
