// Evaluators that check attributions against what the model does: completeness, and four ablation studies
// (the conductance paper's ablation correlation and sign agreement, the neuron-IG paper's ablation-subset error,
// prediction flips). Ablations run only the network after the layer (Model::tail) on batches of ablated
// activations; the layer's activations on x and x′ are captured once per layer and shared by every method
// evaluated there, and so are the ablation scores of single units.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>

#include "galvani/galvani.h"
#include "galvani/support.h"
#include "galvani/tap.h"

namespace galvani::plugins::evaluators {
namespace {

using torch::Tensor;

using stats::mean;
using stats::pearson;
using stats::quantile;

// Which results an evaluator looks at, and how large its ablation batches are.
struct Selection {
  ResultFilter filter;
  std::int64_t batch = 256;

  explicit Selection(const Options& o) : filter(o), batch(o.get_int_in("batch", 256, 1, 1 << 20)) {}
  bool wants(const MethodResult& r) const { return filter.accepts(r); }
};

// One layer of the model, ready for ablations: activations on x and x′, the tail, F on the unablated tail.
class LayerAblations {
 public:
  LayerAblations(const EvaluationInput& in, const std::string& layer, std::int64_t batch)
      : in_(in), layer_(layer), batch_(batch), shape_(in.model->layer(layer).shape) {
    torch::NoGradGuard no_grad;
    const auto tapped = in.model->tapped({layer});
    const auto n = in.inputs.size(0);
    std::vector<Tensor> act, ref;
    for (std::int64_t s = 0; s < n; s += batch) {
      const auto len = std::min(batch, n - s);
      const auto both =
          layer_output(*tapped, torch::cat({in.inputs.narrow(0, s, len), in.baselines.narrow(0, s, len)}));
      act.push_back(both.narrow(0, 0, len));
      ref.push_back(both.narrow(0, len, len));
    }
    act_ = torch::cat(act);
    ref_ = torch::cat(ref);
    tail_ = in.model->tail(layer);
    // The unablated network through the same tail: scores are differences of outputs of one code path.
    const auto out = outputs(torch::arange(n, torch::kLong), torch::zeros({n, 1}, torch::kBool), UnitKind::Layer,
                             false);
    f_ = in.objective(out, in.targets).to(torch::kDouble).cpu();
    prediction_ = out.argmax(1).cpu();
  }

  const std::vector<std::int64_t>& shape() const { return shape_; }
  const Tensor& act() const { return act_; }
  const Tensor& ref() const { return ref_; }
  const Tensor& f() const { return f_; }  ///< F through the unablated tail, [N] float64 on the CPU
  const Tensor& prediction() const { return prediction_; }

  /// Unit kind of a [N, ...] result at this layer, or nullopt.
  std::optional<UnitKind> kind_of(const Tensor& values) const { return unit_kind(values.sizes().slice(1), shape_); }
  std::int64_t units(UnitKind k) const { return unit_count(k, shape_); }

  /// Model outputs for rows (input index, unit mask [U] bool): the masked units take their reference activation
  /// (`to_reference`) or zero. rows: inputs [K] int64, masks [K, U] bool. Chunked by the batch size.
  Tensor outputs(const Tensor& inputs, const Tensor& masks, UnitKind kind, bool to_reference) const {
    torch::NoGradGuard no_grad;
    std::vector<Tensor> outs;
    const auto k_total = inputs.size(0);
    const auto device = act_.device();
    for (std::int64_t s = 0; s < k_total; s += batch_) {
      const auto len = std::min(batch_, k_total - s);
      const auto idx = inputs.narrow(0, s, len).to(device);
      const auto a = act_.index_select(0, idx);
      const auto m = expand(masks.narrow(0, s, len).to(device), kind, a).to(a.scalar_type());
      const auto replacement = to_reference ? ref_.index_select(0, idx) : torch::zeros_like(a);
      const auto rows = a * (1 - m) + replacement * m;
      const auto x = tail_->needs_input() ? in_.inputs.index_select(0, idx) : Tensor();
      outs.push_back(tail_->forward(rows, x));
    }
    return torch::cat(outs);
  }

  /// F of those rows, float64 on the CPU.
  Tensor f_of(const Tensor& inputs, const Tensor& masks, UnitKind kind, bool to_reference) const {
    const auto out = outputs(inputs, masks, kind, to_reference);
    return in_.objective(out, in_.targets.index_select(0, inputs.to(in_.targets.device()))).to(torch::kDouble).cpu();
  }

  /// Single-unit ablation scores F(x) − F(x with unit u ablated) for the (input, unit) pairs asked for; computed
  /// once per (kind, replacement) and pair, then served from a cache. Returns [P] float64.
  Tensor single_scores(const std::vector<std::pair<std::int64_t, std::int64_t>>& pairs, UnitKind kind,
                       bool to_reference) {
    auto& cache = cache_[{kind, to_reference}];
    std::vector<std::pair<std::int64_t, std::int64_t>> missing;
    for (const auto& p : pairs)
      if (!cache.count(p)) missing.push_back(p);
    std::sort(missing.begin(), missing.end());
    missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
    if (!missing.empty()) {
      const auto k = static_cast<std::int64_t>(missing.size());
      auto idx = torch::empty({k}, torch::kLong);
      auto masks = torch::zeros({k, units(kind)}, torch::kBool);
      for (std::int64_t i = 0; i < k; ++i) {
        idx[i] = missing[i].first;
        masks[i][missing[i].second] = true;
      }
      const auto f = f_of(idx, masks, kind, to_reference);
      const auto* pf = f.data_ptr<double>();
      const auto* base = f_.data_ptr<double>();
      for (std::int64_t i = 0; i < k; ++i) cache[missing[i]] = base[missing[i].first] - pf[i];
    }
    auto out = torch::empty({static_cast<std::int64_t>(pairs.size())}, torch::kDouble);
    for (std::size_t i = 0; i < pairs.size(); ++i) out[static_cast<std::int64_t>(i)] = cache.at(pairs[i]);
    return out;
  }

 private:
  // [K, U] unit mask → [K, *layer shape].
  Tensor expand(const Tensor& m, UnitKind kind, const Tensor& like) const {
    auto shape = like.sizes().vec();
    if (kind == UnitKind::Neuron) return m.reshape(shape);
    std::vector<std::int64_t> view{m.size(0), m.size(1)};
    for (std::size_t d = (kind == UnitKind::Filter ? 2 : 1); d < shape.size(); ++d) view.push_back(1);
    if (kind == UnitKind::Layer) view.resize(shape.size(), 1);
    return m.reshape(view).expand(shape);
  }

  const EvaluationInput& in_;
  std::string layer_;
  std::int64_t batch_;
  std::vector<std::int64_t> shape_;
  Tensor act_, ref_, f_, prediction_;
  std::shared_ptr<const TailForward> tail_;
  std::map<std::pair<UnitKind, bool>, std::map<std::pair<std::int64_t, std::int64_t>, double>> cache_;
};

// The layers evaluated in one evaluate() call, prepared on first use.
class Layers {
 public:
  Layers(const EvaluationInput& in, std::int64_t batch) : in_(in), batch_(batch) {}
  LayerAblations& at(const std::string& layer) {
    auto it = layers_.find(layer);
    if (it == layers_.end()) it = layers_.emplace(layer, std::make_unique<LayerAblations>(in_, layer, batch_)).first;
    return *it->second;
  }

 private:
  const EvaluationInput& in_;
  std::int64_t batch_;
  std::map<std::string, std::unique_ptr<LayerAblations>> layers_;
};

// A result with its units resolved, or a reason to skip it.
struct Target {
  const MethodResult* result;
  LayerAblations* layer;
  UnitKind kind;
  Tensor importance;  // [N, U] float64 on the CPU
};

// The layer results an ablation evaluator can use; the others go into a "skipped" table with the reason.
std::vector<Target> targets(const EvaluationInput& in, const Selection& sel, Layers& layers, Table& skipped) {
  std::vector<Target> out;
  sel.filter.check(in.results);
  for (const auto& r : in.results) {
    if (!sel.wants(r)) continue;
    if (r.space != Space::Layer) {
      if (!sel.filter.methods().empty() || !sel.filter.layers().empty())
        skipped.rows.push_back({r.method, r.layer, std::string("not a layer attribution (nothing to ablate)")});
      continue;
    }
    auto& l = layers.at(r.layer);
    const auto kind = l.kind_of(r.values);
    if (!kind) {
      skipped.rows.push_back({r.method, r.layer, "values of shape " + shape_string(r.values.sizes()) +
                                                     " are neither per neuron, per filter nor per layer"});
      continue;
    }
    out.push_back({&r, &l, *kind, r.values.reshape({r.values.size(0), -1}).to(torch::kDouble).cpu()});
  }
  return out;
}

Table skipped_table() {
  Table t;
  t.name = "skipped";
  t.columns = {"method", "layer", "reason"};
  return t;
}

void finish(Evaluation& e, Table skipped) {
  if (!skipped.rows.empty()) e.tables.push_back(std::move(skipped));
}

bool parse_ablation(const Options& o) {
  return o.get_choice("ablation", "zero", {"zero", "reference"}) == "reference";
}

// ---------------------------------------------------------------------------------------------------------------

class Completeness : public Evaluator {
 public:
  explicit Completeness(const Options& o) : sel_(o) {}
  Evaluation evaluate(const EvaluationInput& in) const override {
    Evaluation e;
    Table per_input;
    per_input.name = "delta";
    per_input.columns = {"method", "layer", "input", "delta", "F(x) - F(x')"};
    const auto change = (in.f_input - in.f_baseline).to(torch::kDouble).cpu();
    auto skipped = skipped_table();
    sel_.filter.check(in.results);
    for (const auto& r : in.results) {
      if (!sel_.wants(r)) continue;
      if (!r.delta.defined()) {  // activations, gradients, per-unit maps: not a decomposition of F(x) − F(x′)
        skipped.rows.push_back({r.method, r.layer, std::string("the method reports no completeness delta")});
        continue;
      }
      const auto delta = r.delta.to(torch::kDouble).cpu();
      const auto abs = delta.abs();
      const auto significant = change.abs() > 1e-12;
      e.metrics.push_back({r.method, r.layer, "mean_abs_error", abs.mean().item<double>()});
      e.metrics.push_back({r.method, r.layer, "max_abs_error", abs.max().item<double>()});
      const auto rel = (abs / change.abs()).masked_select(significant);
      e.metrics.push_back({r.method, r.layer, "mean_rel_error",
                           rel.numel() ? rel.mean().item<double>() : std::numeric_limits<double>::quiet_NaN()});
      for (std::int64_t i = 0; i < delta.size(0); ++i)
        per_input.rows.push_back({r.method, r.layer, static_cast<double>(i), delta[i].item<double>(),
                                  change[i].item<double>()});
    }
    e.tables.push_back(std::move(per_input));
    finish(e, std::move(skipped));
    return e;
  }

 private:
  Selection sel_;
};

// Top-k units per input by importance, with their single-unit ablation scores.
struct TopK {
  std::vector<std::vector<std::int64_t>> units;    // per input
  std::vector<std::vector<double>> importance, score;
};

TopK top_k_scores(Target& t, std::int64_t k, bool by_abs, bool to_reference) {
  const auto n = t.importance.size(0);
  const auto kk = std::min<std::int64_t>(k, t.importance.size(1));
  const auto key = by_abs ? t.importance.abs() : t.importance;
  const auto order = std::get<1>(key.topk(kk, 1, /*largest=*/true, /*sorted=*/true));
  TopK out;
  std::vector<std::pair<std::int64_t, std::int64_t>> pairs;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < kk; ++j) pairs.emplace_back(i, order[i][j].item<std::int64_t>());
  const auto scores = t.layer->single_scores(pairs, t.kind, to_reference);
  out.units.resize(n);
  out.importance.resize(n);
  out.score.resize(n);
  for (std::size_t p = 0; p < pairs.size(); ++p) {
    const auto [i, u] = pairs[p];
    out.units[i].push_back(u);
    out.importance[i].push_back(t.importance[i][u].item<double>());
    out.score[i].push_back(scores[static_cast<std::int64_t>(p)].item<double>());
  }
  return out;
}

// The evaluators that score each input's top-k units by their single-unit ablation scores: options, the loop
// over results and the skipped table are shared; `score` turns one result's top-k scores into metrics.
class TopKEvaluator : public Evaluator {
 public:
  TopKEvaluator(const Options& o, std::int64_t min_k)
      : sel_(o), top_k_(o.get_int_in("top_k", 10, min_k, 1 << 20)),
        by_abs_(o.get_choice("rank_by", "value", {"value", "abs"}) == "abs"), to_reference_(parse_ablation(o)) {}
  Evaluation evaluate(const EvaluationInput& in) const override {
    Evaluation e;
    Layers layers(in, sel_.batch);
    auto skipped = skipped_table();
    for (auto& t : targets(in, sel_, layers, skipped))
      score(*t.result, top_k_scores(t, top_k_, by_abs_, to_reference_), e);
    finish(e, std::move(skipped));
    return e;
  }

 protected:
  virtual void score(const MethodResult& r, const TopK& top, Evaluation& e) const = 0;

 private:
  Selection sel_;
  std::int64_t top_k_;
  bool by_abs_, to_reference_;
};

class AblationCorrelation : public TopKEvaluator {
 public:
  explicit AblationCorrelation(const Options& o) : TopKEvaluator(o, 2) {}

 protected:
  void score(const MethodResult& res, const TopK& top, Evaluation& e) const override {
    Table table;
    table.name = res.method + "@" + res.layer;
    table.columns = {"input", "pearson"};
    std::vector<double> r;
    for (std::size_t i = 0; i < top.units.size(); ++i) {
      const double p = pearson(top.importance[i], top.score[i]);
      table.rows.push_back({static_cast<double>(i), p});
      if (std::isfinite(p)) r.push_back(p);
    }
    e.metrics.push_back({res.method, res.layer, "pearson_mean", mean(r)});
    e.metrics.push_back({res.method, res.layer, "pearson_q1", quantile(r, 0.25)});
    e.metrics.push_back({res.method, res.layer, "pearson_median", quantile(r, 0.5)});
    e.metrics.push_back({res.method, res.layer, "pearson_q3", quantile(r, 0.75)});
    e.metrics.push_back({res.method, res.layer, "inputs", static_cast<double>(r.size())});
    e.tables.push_back(std::move(table));
  }
};

class SignAgreement : public TopKEvaluator {
 public:
  explicit SignAgreement(const Options& o) : TopKEvaluator(o, 1) {}

 protected:
  void score(const MethodResult& res, const TopK& top, Evaluation& e) const override {
    std::vector<double> agreement;
    for (const auto& s : top.score) {
      double sum = 0, sum_abs = 0;
      for (double v : s) {
        sum += v;
        sum_abs += std::abs(v);
      }
      if (sum_abs > 0) agreement.push_back(std::abs(sum) / sum_abs);
    }
    e.metrics.push_back({res.method, res.layer, "mean", mean(agreement)});
    e.metrics.push_back({res.method, res.layer, "median", quantile(agreement, 0.5)});
  }
};

class AblationSubset : public Evaluator {
 public:
  explicit AblationSubset(const Options& o) : sel_(o), fraction_(o.get_double_in("fraction", 0.1, 0.0, 1.0)) {}
  Evaluation evaluate(const EvaluationInput& in) const override {
    Evaluation e;
    Layers layers(in, sel_.batch);
    auto skipped = skipped_table();
    for (auto& t : targets(in, sel_, layers, skipped)) {
      auto& l = *t.layer;
      const auto n = t.importance.size(0), u = t.importance.size(1);
      // |a(x) − a(x′)| per unit: per neuron, of the channel sum per filter, of the layer sum for the layer.
      auto diff = (l.act() - l.ref()).to(torch::kDouble).cpu().reshape({n, -1});
      if (t.kind == UnitKind::Filter) diff = diff.reshape({n, u, -1}).sum(2);
      if (t.kind == UnitKind::Layer) diff = diff.sum(1, true);
      const auto count = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(fraction_ * static_cast<double>(u))));
      const auto chosen = std::get<1>(diff.abs().topk(count, 1));
      auto masks = torch::zeros({n, u}, torch::kBool).scatter_(1, chosen, true);
      const auto f = l.f_of(torch::arange(n, torch::kLong), masks, t.kind, /*to_reference=*/true);
      const auto actual = l.f() - f;
      const auto predicted = t.importance.gather(1, chosen).sum(1);
      const auto err = (actual - predicted).abs();
      const double change = actual.abs().mean().item<double>();
      e.metrics.push_back({t.result->method, t.result->layer, "mean_abs_error", err.mean().item<double>()});
      e.metrics.push_back({t.result->method, t.result->layer, "mean_abs_change", change});
      e.metrics.push_back({t.result->method, t.result->layer, "relative_error",
                           change > 0 ? err.mean().item<double>() / change : std::numeric_limits<double>::quiet_NaN()});
    }
    finish(e, std::move(skipped));
    return e;
  }

 private:
  Selection sel_;
  double fraction_;
};

class PredictionFlip : public Evaluator {
 public:
  explicit PredictionFlip(const Options& o)
      : sel_(o), max_units_(o.get_int_in("max_units", 50, 1, 1 << 20)), step_(o.get_int_in("step", 1, 1, 1 << 20)),
        to_reference_(parse_ablation(o)) {}
  Evaluation evaluate(const EvaluationInput& in) const override {
    Evaluation e;
    Layers layers(in, sel_.batch);
    auto skipped = skipped_table();
    for (auto& t : targets(in, sel_, layers, skipped)) {
      auto& l = *t.layer;
      const auto n = t.importance.size(0), u = t.importance.size(1);
      const auto most = std::min(max_units_, u);
      const auto order = std::get<1>(t.importance.topk(most, 1, true, true));
      std::vector<std::int64_t> counts;
      for (std::int64_t k = step_; k < most + step_; k += step_) counts.push_back(std::min(k, most));
      counts.erase(std::unique(counts.begin(), counts.end()), counts.end());
      const auto steps = static_cast<std::int64_t>(counts.size());
      // Rows input-major: for input i, the first counts[s] units of its order ablated.
      auto idx = torch::arange(n, torch::kLong).repeat_interleave(steps);
      auto masks = torch::zeros({n * steps, u}, torch::kBool);
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t s = 0; s < steps; ++s)
          masks[i * steps + s].index_fill_(0, order[i].narrow(0, 0, counts[static_cast<std::size_t>(s)]), true);
      const auto labels = l.outputs(idx, masks, t.kind, to_reference_).argmax(1).cpu().view({n, steps});
      const auto flipped = labels.ne(l.prediction().view({n, 1}));
      std::vector<double> units_to_flip;
      std::vector<double> flipped_by(static_cast<std::size_t>(steps), 0.0);
      for (std::int64_t i = 0; i < n; ++i) {
        const auto row = flipped[i];
        for (std::int64_t s = 0; s < steps; ++s)
          if (row[s].item<bool>()) {
            units_to_flip.push_back(static_cast<double>(counts[static_cast<std::size_t>(s)]));
            for (std::int64_t r = s; r < steps; ++r) flipped_by[static_cast<std::size_t>(r)] += 1;
            break;
          }
      }
      const auto& m = t.result->method;
      const auto& ln = t.result->layer;
      e.metrics.push_back({m, ln, "mean_units", mean(units_to_flip)});
      e.metrics.push_back({m, ln, "max_units", units_to_flip.empty() ? std::numeric_limits<double>::quiet_NaN()
                                                                      : *std::max_element(units_to_flip.begin(),
                                                                                          units_to_flip.end())});
      e.metrics.push_back({m, ln, "fraction_not_flipped",
                           1.0 - static_cast<double>(units_to_flip.size()) / static_cast<double>(n)});
      Curve c;
      c.method = m;
      c.layer = ln;
      c.name = "fraction flipped";
      c.x_label = std::string(to_string(t.kind)) + "s ablated";
      c.y_label = "fraction of inputs whose label changed";
      for (std::int64_t s = 0; s < steps; ++s) {
        c.x.push_back(static_cast<double>(counts[static_cast<std::size_t>(s)]));
        c.y.push_back(flipped_by[static_cast<std::size_t>(s)] / static_cast<double>(n));
      }
      e.curves.push_back(std::move(c));
    }
    finish(e, std::move(skipped));
    return e;
  }

 private:
  Selection sel_;
  std::int64_t max_units_, step_;
  bool to_reference_;
};

}  // namespace
}  // namespace galvani::plugins::evaluators

GALVANI_PLUGIN("evaluators", "0.1.0", [](galvani::Registrar& r) {
  using namespace galvani::plugins::evaluators;
  r.add_evaluator("completeness",
                  "the methods' completeness delta Σ attributions − (F(x) − F(x′)) per input (options methods, layers)",
                  [](const galvani::Options& o) { return std::make_unique<Completeness>(o); });
  r.add_evaluator("ablation-correlation",
                  "Pearson correlation of importance and single-unit ablation scores over each input's top-k units "
                  "(options top_k, rank_by, ablation, methods, layers, batch)",
                  [](const galvani::Options& o) { return std::make_unique<AblationCorrelation>(o); });
  r.add_evaluator("sign-agreement",
                  "|Σ ablation scores| / Σ |ablation scores| over each input's top-k units (options top_k, rank_by, "
                  "ablation, methods, layers, batch)",
                  [](const galvani::Options& o) { return std::make_unique<SignAgreement>(o); });
  r.add_evaluator("ablation-subset",
                  "|actual change − Σ attributions| when the units with the largest |a(x) − a(x′)| take their "
                  "reference activation (options fraction, methods, layers, batch)",
                  [](const galvani::Options& o) { return std::make_unique<AblationSubset>(o); });
  r.add_evaluator("prediction-flip",
                  "units ablated in decreasing importance until the predicted label changes (options max_units, "
                  "step, ablation, methods, layers, batch)",
                  [](const galvani::Options& o) { return std::make_unique<PredictionFlip>(o); });
})
