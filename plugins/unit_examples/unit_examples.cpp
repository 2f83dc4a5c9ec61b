// The conductance paper's study of what single units do (Dhamdhere et al., §5 on text): for chosen inputs the
// units with the highest attribution, for each of those units the inputs of the run that give it the highest
// attribution (its top examples), and the signs of every unit's attribution over every input, rows and columns
// ordered by hierarchical clustering, where units that take one side for one kind of input and the other side
// for another show as blocks ("division of labour").
#include <algorithm>
#include <limits>
#include <numeric>
#include <sstream>

#include "galvani/galvani.h"

namespace galvani::plugins::unit_examples {
namespace {

/// Leaf order of average-linkage agglomerative clustering of the rows of `points` [n, d] under the distance
/// `distance` [n, n]: each merge puts the two clusters side by side, so similar rows end up adjacent.
std::vector<std::int64_t> cluster_order(const torch::Tensor& distance) {
  const auto n = distance.size(0);
  std::vector<std::vector<std::int64_t>> clusters(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) clusters[static_cast<std::size_t>(i)] = {i};
  const auto d = distance.to(torch::kDouble).contiguous();
  const double* p = d.data_ptr<double>();
  // Average linkage between live clusters, kept as a matrix and updated per merge (Lance–Williams).
  std::vector<double> link(p, p + n * n);
  std::vector<bool> alive(static_cast<std::size_t>(n), true);
  for (std::int64_t merges = 0; merges + 1 < n; ++merges) {
    double best = std::numeric_limits<double>::infinity();
    std::int64_t a = -1, b = -1;
    for (std::int64_t i = 0; i < n; ++i) {
      if (!alive[i]) continue;
      for (std::int64_t j = i + 1; j < n; ++j)
        if (alive[j] && link[i * n + j] < best) best = link[i * n + j], a = i, b = j;
    }
    const double na = static_cast<double>(clusters[a].size()), nb = static_cast<double>(clusters[b].size());
    for (std::int64_t k = 0; k < n; ++k) {
      if (!alive[k] || k == a || k == b) continue;
      const double v = (na * link[a * n + k] + nb * link[b * n + k]) / (na + nb);
      link[a * n + k] = link[k * n + a] = v;
    }
    clusters[a].insert(clusters[a].end(), clusters[b].begin(), clusters[b].end());
    alive[b] = false;
  }
  for (std::int64_t i = 0; i < n; ++i)
    if (alive[i]) return clusters[i];
  return {};
}

/// Fraction of columns where two sign rows differ, for every pair of rows of `signs` [n, d] (values −1, 0, 1).
torch::Tensor sign_disagreement(const torch::Tensor& signs) {
  const auto s = signs.to(torch::kDouble);
  return (s.unsqueeze(1) - s.unsqueeze(0)).abs().mean(2) / 2;
}

class UnitExamples : public Evaluator {
 public:
  explicit UnitExamples(const Options& o)
      : filter_(o), probes_(o.get_ints("probes", {0})), top_units_(o.get_int_in("top_units", 3, 1, 1000)),
        top_examples_(o.get_int_in("top_examples", 5, 1, 1000)), sign_map_(o.get_bool("sign_map", true)) {
    for (auto p : probes_)
      if (p < 0) throw ConfigError(o.key_path("probes") + ": input indices are ≥ 0, got " + std::to_string(p));
  }

  void validate(const EvaluatorPlan& plan) const override {
    for (auto p : probes_)
      if (p >= plan.inputs)
        throw ConfigError("unit-examples: probes holds input " + std::to_string(p) + ", but the run has " +
                          std::to_string(plan.inputs) + " inputs (0 to " + std::to_string(plan.inputs - 1) + ")");
  }

  Evaluation evaluate(const EvaluationInput& in) const override {
    filter_.check(in.results);
    Evaluation ev;
    const auto label = [&](std::int64_t i) {
      return i < static_cast<std::int64_t>(in.input_labels.size()) ? in.input_labels[static_cast<std::size_t>(i)]
                                                                  : "input " + std::to_string(i);
    };
    for (const auto& r : in.results) {
      if (r.space != Space::Layer || !filter_.accepts(r)) continue;
      const auto values = r.values.detach().to(torch::kCPU, torch::kDouble).reshape({r.values.size(0), -1});
      const auto n = values.size(0), units = values.size(1);
      const auto k_units = std::min<std::int64_t>(top_units_, units), k_inputs = std::min<std::int64_t>(top_examples_, n);

      Table top{"top-units." + r.method + "." + r.layer, {"input", "text", "rank", "unit", "attribution"}, {}, true};
      std::vector<std::int64_t> chosen;
      for (auto p : probes_) {
        const auto order = values[p].argsort(0, /*descending=*/true);
        for (std::int64_t k = 0; k < k_units; ++k) {
          const auto u = order[k].item<std::int64_t>();
          top.rows.push_back({static_cast<double>(p), label(p), static_cast<double>(k + 1), static_cast<double>(u),
                              values[p][u].item<double>()});
          if (std::find(chosen.begin(), chosen.end(), u) == chosen.end()) chosen.push_back(u);
        }
      }
      Table examples{"top-examples." + r.method + "." + r.layer, {"unit", "rank", "input", "text", "attribution"}, {},
                     true};
      for (auto u : chosen) {
        const auto order = values.select(1, u).argsort(0, /*descending=*/true);
        for (std::int64_t k = 0; k < k_inputs; ++k) {
          const auto i = order[k].item<std::int64_t>();
          examples.rows.push_back({static_cast<double>(u), static_cast<double>(k + 1), static_cast<double>(i), label(i),
                                   values[i][u].item<double>()});
        }
      }
      ev.tables.push_back(std::move(top));
      ev.tables.push_back(std::move(examples));

      // Signs, units × inputs; units with both signs over the inputs (each on at least 10 % of them).
      const auto signs = values.t().sign().contiguous();  // [units, n]
      const auto positive = (signs > 0).to(torch::kDouble).mean(1), negative = (signs < 0).to(torch::kDouble).mean(1);
      const double both = ((positive >= 0.1) & (negative >= 0.1)).to(torch::kDouble).mean().item<double>();
      ev.metrics.push_back({r.method, r.layer, "units of both signs", both});
      ev.metrics.push_back({r.method, r.layer, "mean fraction positive", positive.mean().item<double>()});
      if (!sign_map_) continue;
      const auto rows = cluster_order(sign_disagreement(signs));
      const auto cols = cluster_order(sign_disagreement(signs.t()));
      Matrix m;
      m.method = r.method;
      m.layer = r.layer;
      m.name = "sign map";
      m.row_title = "unit";
      m.column_title = "input";
      const auto row_index = torch::tensor(rows), col_index = torch::tensor(cols);
      m.values = signs.index_select(0, row_index).index_select(1, col_index);
      for (auto u : rows) m.row_labels.push_back(std::to_string(u));
      for (auto i : cols) m.column_labels.push_back(label(i));
      ev.matrices.push_back(std::move(m));
    }
    return ev;
  }

 private:
  ResultFilter filter_;
  std::vector<std::int64_t> probes_;
  std::int64_t top_units_, top_examples_;
  bool sign_map_;
};

}  // namespace
}  // namespace galvani::plugins::unit_examples

GALVANI_PLUGIN("unit-examples", "0.1.0", [](galvani::Registrar& r) {
  r.add_evaluator("unit-examples",
                  "what single units do (conductance paper, text study): the top units of chosen inputs, each unit's "
                  "top inputs, and the clustered sign map of units × inputs (options probes, top_units, "
                  "top_examples, sign_map, methods, layers)",
                  [](const galvani::Options& o) {
                    return std::make_unique<galvani::plugins::unit_examples::UnitExamples>(o);
                  });
})
