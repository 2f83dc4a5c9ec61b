// shapley-sampling against its floor: the same coalition evaluations run as plain tail-only forwards
// (Model::tail(layer)->forward) on ready-made activations, in the same chunk sizes, over the same shards and
// threads as the runner. A second floor adds the forward no implementation can skip: one forward of inputs and
// baseline together (N + 1 rows: the baselines are zeros, one for all inputs), which gives the layer's
// activations and F(x), F(x′) for the efficiency check.
//
//   galvani_shapley_bench   models: docs/examples/fashion_cnn.pt at classifier.2 (64 neurons, batch 64,
//                           5 permutations) and bench_models/resnet18_bench_traced.pt at layer1 (64 filters,
//                           batch 8, 3×64×64, 2 permutations)
#include <memory>

#include "bench_support.h"
#include "galvani/core/config.h"
#include "galvani/tap.h"

namespace {

using galvani::core::Plan;
namespace bench = galvani::bench;

struct Case {
  bench::BenchModel files;
  std::string layer, unit;
  std::int64_t permutations;
  std::int64_t units;  // players: neurons or filters
};

const Case& find_case(const std::string& name) {
  static const std::map<std::string, Case> cases = [] {
    const auto dir = bench::bench_dir("galvani_shapley_bench");
    std::map<std::string, Case> m;
    m["fashion"] = {bench::fashion64(dir), "classifier.2", "neuron", 5, 64};
    m["resnet18"] = {bench::resnet8(dir), "layer1", "filter", 2, 64};
    return m;
  }();
  return cases.at(name);
}

std::unique_ptr<Plan> make(const Case& c, int threads) {
  // Odd permutation counts need plain (non-antithetic) sampling; the work per coalition is the same.
  const std::string toml = "[model]\npath = \"" + c.files.model + "\"\n[data]\ninputs = \"" + c.files.inputs +
                           "\"\n[run]\nthreads = " + std::to_string(threads) +
                           "\n[[methods]]\nplugin = \"shapley-sampling\"\nlayers = [\"" + c.layer + "\"]\nunit = \"" +
                           c.unit + "\"\nmax_permutations = " + std::to_string(c.permutations) +
                           "\ncheck_every = " + std::to_string(c.permutations) + "\nantithetic = false\n";
  auto cfg = galvani::core::parse_config_string(toml, ".");
  return std::make_unique<Plan>(galvani::core::make_plan(cfg, bench::plugin_host()));
}

void report(benchmark::State& state, const Case& c, std::int64_t batch) {
  state.counters["coalitions"] = static_cast<double>(batch * (c.permutations * (c.units - 1) + 2));
}

// The floor: per shard, the coalition rows the method evaluates (v(all) and v(∅) per input, then
// permutations × (units − 1) per input) as tail forwards on a fixed activation batch, chunked as the method
// chunks them. With `head`, also the paired forward before the coalitions.
void BM_Floor(benchmark::State& state, const std::string& name, bool head) {
  const Case& c = find_case(name);
  const auto plan = make(c, static_cast<int>(state.range(0)));
  const auto& model = *plan->model;
  const auto tail = model.tail(c.layer);
  const auto tapped = model.tapped({c.layer});
  const auto n = plan->inputs.size(0);
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
  for (auto _ : state) {
    bench::for_each_shard(*plan, [&](std::int64_t start, std::int64_t len) {
      torch::NoGradGuard ng;
      if (head) {
        const auto x = plan->inputs.narrow(0, start, len);
        // The baselines are zeros, one baseline for all inputs: it runs once, as the method runs it.
        const auto xb = plan->baselines.narrow(0, start, 1);
        std::vector<torch::Tensor> sink;
        benchmark::DoNotOptimize(tapped->forward(torch::cat({x, xb}), galvani::taps::capture(sink)));
      }
      for (const auto rows : {2 * len, len * c.permutations * (c.units - 1)})
        for (std::int64_t p = 0; p < rows; p += chunk)
          benchmark::DoNotOptimize(tail->forward(activations.narrow(0, 0, std::min(chunk, rows - p)), {}));
    });
  }
  report(state, c, n);
}

void BM_Shapley(benchmark::State& state, const std::string& name) {
  const Case& c = find_case(name);
  auto plan = make(c, static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(galvani::core::execute(*plan));
  report(state, c, plan->inputs.size(0));
}

void register_all() {
  for (const std::string model : {"fashion", "resnet18"}) {
    if (!std::filesystem::exists(find_case(model).files.model)) continue;
    bench::add("floor/" + model, BM_Floor, model, false);
    bench::add("floor+head/" + model, BM_Floor, model, true);
    bench::add("shapley-sampling/" + model, BM_Shapley, model);
  }
}

}  // namespace

int main(int argc, char** argv) { return bench::run(argc, argv, register_all); }
