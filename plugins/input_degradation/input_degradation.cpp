// Input degradation (Samek et al., "Evaluating the visualization of what a deep neural network has learned"):
// remove input features in the order an input-space attribution ranks them — most relevant first (MoRF) and
// least relevant first (LeRF) — and follow F. A random order is the reference. AOPC = the mean over the steps
// k = 0..K of F(x) − F(x with the first k/K·max_fraction of the features removed), averaged over inputs.
#include <algorithm>
#include <cmath>
#include <set>

#include "galvani/galvani.h"
#include "galvani/support.h"

namespace galvani::plugins::input_degradation {
namespace {

using torch::Tensor;

class InputDegradation : public Evaluator {
 public:
  explicit InputDegradation(const Options& o)
      : filter_(o, /*with_layers=*/false), steps_(o.get_int_in("steps", 20, 1, 10000)),
        max_fraction_(o.get_double_in("max_fraction", 1.0, 0.0, 1.0)),
        replacement_(o.get_choice("replacement", "baseline", {"baseline", "zero", "mean"})),
        reduce_(o.get_choice("reduce", "sum", {"sum", "max-abs"})), batch_(o.get_int_in("batch", 256, 1, 1 << 20)),
        seed_(o.get_int("seed", 0)),
        features_(o.get_choice("features", "auto", {"auto", "positions", "tokens", "elements"})) {}

  void validate(const EvaluatorPlan& plan) const override {
    if ((features_ == "positions" || features_ == "tokens") && plan.input_shape.size() < 2)
      throw ConfigError("input-degradation: features = \"" + features_ + "\" groups the values of a position or token, "
                        "which needs inputs [N, C, ...] or [N, T, E]; one input here is " +
                        shape_string(plan.input_shape));
  }

  Evaluation evaluate(const EvaluationInput& in) const override {
    Evaluation e;
    const auto& x = in.inputs;
    const auto n = x.size(0);
    // What one feature is: a position with all its channels ([N, C, ...] inputs), a token with all its embedding
    // values (embeddings of token ids, [N, T, E]), or one element. "auto": tokens for token-id inputs, else
    // positions for inputs with channels, else elements.
    const Grouping group = features_ == "tokens"                         ? Grouping::Tokens
                           : features_ == "positions"                    ? Grouping::Channels
                           : features_ == "elements"                     ? Grouping::Elements
                           : in.tokens                                   ? Grouping::Tokens
                           : x.dim() >= 3                                ? Grouping::Channels
                                                                         : Grouping::Elements;
    const auto positions = group == Grouping::Channels ? x[0][0].numel()
                           : group == Grouping::Tokens ? x[0].numel() / x.size(-1)
                                                       : x[0].numel();
    const auto replacement = replacement_ == "baseline" ? in.baselines
                             : replacement_ == "zero"   ? torch::zeros_like(x)
                                                        : x.reshape({n, -1}).mean(1).view(shape_for(x)).expand_as(x);
    std::vector<std::int64_t> counts;
    for (std::int64_t k = 0; k <= steps_; ++k)
      counts.push_back(static_cast<std::int64_t>(std::llround(max_fraction_ * static_cast<double>(k) /
                                                              static_cast<double>(steps_) *
                                                              static_cast<double>(positions))));
    const auto f0 = f_of(in, x, torch::arange(n, torch::kLong));  // F(x) through the same code path

    // Random order: one permutation per input, seeded by the input's index.
    auto random_rank = torch::empty({n, positions}, torch::kLong);
    for (std::int64_t i = 0; i < n; ++i) {
      auto g = at::make_generator<at::CPUGeneratorImpl>(static_cast<std::uint64_t>(seed_) * 1000003u +
                                                        static_cast<std::uint64_t>(i));
      random_rank[i] = ranks(torch::randperm(positions, g, torch::kLong));
    }
    const auto random_curve = curve(in, x, replacement, random_rank, counts, f0, group);

    Table skipped;
    skipped.name = "skipped";
    skipped.columns = {"method", "layer", "reason"};
    filter_.check(in.results);
    std::set<std::string> with_random;  // layers whose plots have the random curve
    for (const auto& r : in.results) {
      if (r.space != Space::Input) continue;
      if (!filter_.accepts(r)) continue;
      if (r.values.sizes() != x.sizes()) {
        skipped.rows.push_back({r.method, r.layer, "values of shape " + shape_string(r.values.sizes()) +
                                                       " are not shaped like the inputs"});
        continue;
      }
      auto relevance = r.values.detach().to(torch::kDouble).cpu();
      const std::int64_t grouped = group == Grouping::Channels ? 1 : group == Grouping::Tokens ? -1 : 0;
      if (group != Grouping::Elements)
        relevance = reduce_ == "sum" ? relevance.sum(grouped) : relevance.abs().amax(grouped);
      relevance = relevance.reshape({n, positions});
      // Stable sorts: ties keep position order, so the result does not depend on the sort's implementation.
      const auto morf = std::get<1>(relevance.sort(/*stable=*/true, 1, /*descending=*/true));
      const auto lerf = std::get<1>(relevance.sort(/*stable=*/true, 1, /*descending=*/false));
      std::vector<std::pair<std::string, std::vector<double>>> curves{
          {"MoRF", curve(in, x, replacement, ranks(morf), counts, f0, group)},
          {"LeRF", curve(in, x, replacement, ranks(lerf), counts, f0, group)}};
      for (const auto& [name, y] : curves) add_curve(e, r.method, r.layer, name, counts, positions, y);
      // The random reference once in each plot (MoRF and LeRF), not once per method.
      if (with_random.insert(r.layer).second)
        for (const char* plot : {"MoRF", "LeRF"}) add_curve(e, "random", r.layer, plot, counts, positions, random_curve);
      const double morf_aopc = aopc(curves[0].second), lerf_aopc = aopc(curves[1].second);
      e.metrics.push_back({r.method, r.layer, "aopc_morf", morf_aopc});
      e.metrics.push_back({r.method, r.layer, "aopc_lerf", lerf_aopc});
      e.metrics.push_back({r.method, r.layer, "aopc_random", aopc(random_curve)});
      e.metrics.push_back({r.method, r.layer, "aopc_morf_minus_lerf", morf_aopc - lerf_aopc});
    }
    if (!skipped.rows.empty()) e.tables.push_back(std::move(skipped));
    return e;
  }

 private:
  enum class Grouping { Channels, Tokens, Elements };

  static std::vector<std::int64_t> shape_for(const Tensor& x) {
    std::vector<std::int64_t> s(static_cast<std::size_t>(x.dim()), 1);
    s[0] = x.size(0);
    return s;
  }
  // order[i][j] = the j-th position removed → rank[i][position] = j.
  static Tensor ranks(const Tensor& order) {
    const auto o = order.dim() == 1 ? order.unsqueeze(0) : order;
    auto r = torch::empty_like(o);
    r.scatter_(1, o, torch::arange(o.size(1), o.options()).expand_as(o).contiguous());
    return order.dim() == 1 ? r.squeeze(0) : r;
  }
  static double aopc(const std::vector<double>& y) {
    double s = 0;
    for (double v : y) s += v;
    return s / static_cast<double>(y.size());
  }
  static void add_curve(Evaluation& e, const std::string& method, const std::string& layer, const std::string& name,
                        const std::vector<std::int64_t>& counts, std::int64_t positions, const std::vector<double>& y) {
    Curve c;
    c.method = method;
    c.layer = layer;
    c.name = name;
    c.x_label = "fraction of input features removed";
    c.y_label = "mean F(x) − F(degraded)";
    for (auto k : counts) c.x.push_back(static_cast<double>(k) / static_cast<double>(positions));
    c.y = y;
    e.curves.push_back(std::move(c));
  }

  Tensor f_of(const EvaluationInput& in, const Tensor& rows, const Tensor& input_index) const {
    torch::NoGradGuard no_grad;
    std::vector<Tensor> fs;
    for (std::int64_t s = 0; s < rows.size(0); s += batch_) {
      const auto len = std::min(batch_, rows.size(0) - s);
      const auto idx = input_index.narrow(0, s, len).to(in.targets.device());
      fs.push_back(in.objective(in.model->forward(rows.narrow(0, s, len)), in.targets.index_select(0, idx)));
    }
    return torch::cat(fs).to(torch::kDouble).cpu();
  }

  // Mean over inputs of F(x) − F(x_k) for every step k; rank [N, positions] gives each position's removal order.
  std::vector<double> curve(const EvaluationInput& in, const Tensor& x, const Tensor& replacement, const Tensor& rank,
                            const std::vector<std::int64_t>& counts, const Tensor& f0, Grouping group) const {
    const auto n = x.size(0);
    const auto k = static_cast<std::int64_t>(counts.size());
    std::vector<double> sums(counts.size(), 0.0);
    // Chunks of inputs, all their steps in one batch of rows.
    const auto per_chunk = std::max<std::int64_t>(1, batch_ / k);
    // The mask's shape per row: the features, with 1 where a group's dimension broadcasts.
    auto spatial = x.sizes().vec();
    spatial.erase(spatial.begin());
    if (group == Grouping::Channels) spatial.front() = 1;
    if (group == Grouping::Tokens) spatial.back() = 1;
    const auto device = x.device();
    const auto count_t = torch::tensor(counts, torch::kLong).to(device);
    for (std::int64_t s = 0; s < n; s += per_chunk) {
      const auto len = std::min(per_chunk, n - s);
      const auto r = rank.narrow(0, s, len).to(device);                  // [len, P]
      auto removed = r.unsqueeze(1) < count_t.view({1, k, 1});           // [len, K, P]
      std::vector<std::int64_t> mshape{len * k};
      mshape.insert(mshape.end(), spatial.begin(), spatial.end());
      const auto mask = removed.reshape(mshape).to(x.scalar_type());
      const auto xs = x.narrow(0, s, len).repeat_interleave(k, 0);
      const auto reps = replacement.narrow(0, s, len).repeat_interleave(k, 0);
      const auto degraded = xs * (1 - mask) + reps * mask;
      const auto idx = torch::arange(s, s + len, torch::kLong).repeat_interleave(k);
      const auto f = f_of(in, degraded, idx).view({len, k});
      const auto drop = f0.narrow(0, s, len).view({len, 1}) - f;
      const auto col = drop.sum(0);
      for (std::int64_t j = 0; j < k; ++j) sums[static_cast<std::size_t>(j)] += col[j].item<double>();
    }
    for (auto& v : sums) v /= static_cast<double>(n);
    return sums;
  }

  ResultFilter filter_;
  std::int64_t steps_;
  double max_fraction_;
  std::string replacement_, reduce_;
  std::int64_t batch_, seed_;
  std::string features_;
};

}  // namespace
}  // namespace galvani::plugins::input_degradation

GALVANI_PLUGIN("input-degradation", "0.1.0", [](galvani::Registrar& r) {
  r.add_evaluator("input-degradation",
                  "MoRF / LeRF / random removal of input features ranked by input-space attributions, and AOPC "
                  "(options steps, max_fraction, replacement, reduce, features, batch, seed, methods)",
                  [](const galvani::Options& o) {
                    return std::make_unique<galvani::plugins::input_degradation::InputDegradation>(o);
                  });
})
