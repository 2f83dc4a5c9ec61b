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
#include <torch/csrc/autograd/autograd.h>

#include <map>
#include <memory>

#include "bench_support.h"
#include "galvani/core/config.h"
#include "galvani/passes.h"
#include "galvani/tap.h"

namespace {

using galvani::core::Plan;
namespace bench = galvani::bench;

struct Case {
  bench::BenchModel files;
  int64_t batch;
  int steps;  // NeuronIntGrad steps
};

const Case& find_case(const std::string& name) {
  static const std::map<std::string, Case> cases = [] {
    const auto dir = bench::bench_dir("galvani_pathway_bench");
    std::map<std::string, Case> m;
    m["fashion"] = {bench::fashion64(dir), 64, 50};
    // 17 layers × 16 steps × 8 inputs = 2176 resnet18 forwards+backwards per run: 50 steps would take minutes.
    m["resnet18"] = {bench::resnet8(dir), 8, 16};
    return m;
  }();
  return cases.at(name);
}

std::string method_entry(const std::string& contribution, const Case& c) {
  return "[[methods]]\nplugin = \"pathway-gradient\"\ncontribution = \"" + contribution + "\"\nsteps = " +
         std::to_string(c.steps) + "\nrule = \"gausslegendre\"\n";
}

std::unique_ptr<Plan> make(const Case& c, const std::string& contribution, int threads) {
  const std::string toml = "[model]\npath = \"" + c.files.model + "\"\n[data]\ninputs = \"" + c.files.inputs +
                           "\"\n[run]\nthreads = " + std::to_string(threads) + "\n" + method_entry(contribution, c);
  auto cfg = galvani::core::parse_config_string(toml, ".");
  return std::make_unique<Plan>(galvani::core::make_plan(cfg, bench::plugin_host()));
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
  const Case& c = find_case(name);
  const auto plan = make(c, contribution, static_cast<int>(state.range(0)));
  const auto chunk = galvani::default_internal_batch(plan->inputs[0].numel());
  const auto reps = points_per_input(*plan, c, contribution);
  // As in methods_bench.cpp, the tapped forward with one layer captured: the plain TorchScript forward of a
  // model takes the JIT's autodiff path on inputs that require grad, which is several times slower on the CPU
  // than the tapped graphs every method runs.
  auto tapped = plan->model->tapped({relu_sites(*plan->model).front()});
  for (auto _ : state) {
    bench::for_each_shard(*plan, [&](int64_t start, int64_t len) {
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
    });
  }
  state.counters["points"] = static_cast<double>(reps * c.batch);
}

void BM_Method(benchmark::State& state, const std::string& name, const std::string& contribution) {
  const Case& c = find_case(name);
  auto plan = make(c, contribution, static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(galvani::core::execute(*plan));
  state.counters["points"] = static_cast<double>(points_per_input(*plan, c, contribution) * c.batch);
}

void register_all() {
  for (const std::string model : {"fashion", "resnet18"}) {
    if (!std::filesystem::exists(find_case(model).files.model)) continue;
    for (const std::string contribution : {"mct", "intgrad"}) {
      const auto floor = "floor-" + contribution + "/" + model, method = "pathway-" + contribution + "/" + model;
      if (model == "resnet18" && contribution == "intgrad") {
        // Seconds per run for resnet18 with NeuronIntGrad: a few runs are enough.
        for (auto* b : {benchmark::RegisterBenchmark(floor.c_str(), BM_Floor, model, contribution),
                        benchmark::RegisterBenchmark(method.c_str(), BM_Method, model, contribution)})
          b->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
      } else {
        bench::add(floor, BM_Floor, model, contribution);
        bench::add(method, BM_Method, model, contribution);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
