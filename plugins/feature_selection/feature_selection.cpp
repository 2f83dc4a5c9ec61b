// Feature selection by importance (the conductance paper's Table 1): per label, the mean importance of each unit
// over a training split; the top units over all labels (round robin over the labels' rankings); a multinomial
// logistic regression on only those units' activations; its accuracy on the held-out split, for several k,
// next to k units drawn at random. Units that matter for the labels should classify better than random ones.
#include <torch/optim.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "galvani/galvani.h"
#include "galvani/support.h"
#include "galvani/tensor_io.h"

namespace galvani::plugins::feature_selection {
namespace {

using torch::Tensor;

class FeatureSelection : public Evaluator {
 public:
  explicit FeatureSelection(const Options& o)
      : labels_file_(o.get_path("labels", "")), train_fraction_(o.get_double_in("train_fraction", 0.5, 0.05, 0.95)),
        ks_(o.get_ints("k", {5, 10, 15, 20})), l2_(o.get_double_in("l2", 1e-3, 0.0, 1e6)),
        random_trials_(o.get_int_in("random_trials", 5, 0, 1000)), seed_(o.get_int("seed", 0)),
        filter_(o) {
    if (labels_file_.empty())
      throw ConfigError(o.key_path("labels") + ": feature-selection needs the true labels of the inputs, a tensor "
                                               "file of N class indices");
    labels_ = load_tensor(labels_file_).to(torch::kLong).flatten();
    for (auto k : ks_)
      if (k < 1) throw ConfigError(o.key_path("k") + ": every k must be ≥ 1");
  }

  void validate(const EvaluatorPlan& plan) const override { check_labels(plan.inputs); }

  Evaluation evaluate(const EvaluationInput& in) const override {
    Evaluation e;
    const auto n = in.inputs.size(0);
    check_labels(n);
    const auto labels = labels_.narrow(0, 0, n);
    const auto n_train = std::clamp<std::int64_t>(static_cast<std::int64_t>(train_fraction_ * static_cast<double>(n)), 1, n - 1);
    const auto classes = labels.max().item<std::int64_t>() + 1;
    std::map<std::string, Tensor> activations;  // per layer: [N, units] per unit kind, see features()
    filter_.check(in.results);
    for (const auto& r : in.results) {
      if (r.space != Space::Layer) continue;
      if (!filter_.accepts(r)) continue;
      const auto kind = unit_kind(r.values.sizes().slice(1), in.model->layer(r.layer).shape);
      if (kind != UnitKind::Neuron && kind != UnitKind::Filter) continue;  // whole-layer or other shapes
      const bool filter = kind == UnitKind::Filter;
      const auto key = r.layer + (filter ? "/filter" : "/neuron");
      if (!activations.count(key)) activations[key] = features(in, r.layer, filter);
      const auto& x = activations.at(key);  // [N, U] float64 on the CPU
      const auto importance = r.values.detach().to(torch::kDouble).cpu().reshape({n, -1});
      const auto units = x.size(1);
      // Per label: mean importance over its training inputs, ranked.
      std::vector<std::vector<std::int64_t>> rankings;
      for (std::int64_t c = 0; c < classes; ++c) {
        const auto mask = labels.narrow(0, 0, n_train) == c;
        if (!mask.any().item<bool>()) continue;
        const auto mean = importance.narrow(0, 0, n_train).index({mask}).mean(0);
        const auto order = std::get<1>(mean.sort(/*stable=*/true, 0, /*descending=*/true));
        rankings.emplace_back(order.data_ptr<std::int64_t>(), order.data_ptr<std::int64_t>() + units);
      }
      Curve curve{r.method, r.layer, "accuracy vs k", "k (units kept)", "held-out accuracy", {}, {}};
      Curve random{"random", r.layer, "accuracy vs k", "k (units kept)", "held-out accuracy", {}, {}};
      for (const auto k_wanted : ks_) {
        const auto k = std::min<std::int64_t>(k_wanted, units);
        const auto chosen = round_robin(rankings, k);
        const double acc = accuracy(x, labels, chosen, n_train, classes);
        e.metrics.push_back({r.method, r.layer, "accuracy@" + std::to_string(k_wanted), acc});
        curve.x.push_back(static_cast<double>(k_wanted));
        curve.y.push_back(acc);
        if (random_trials_ > 0) {
          std::mt19937_64 rng(static_cast<std::uint64_t>(seed_) * 7919u + static_cast<std::uint64_t>(k));
          double sum = 0;
          for (std::int64_t t = 0; t < random_trials_; ++t) {
            std::vector<std::int64_t> all(static_cast<std::size_t>(units));
            std::iota(all.begin(), all.end(), 0);
            std::shuffle(all.begin(), all.end(), rng);
            all.resize(static_cast<std::size_t>(k));
            sum += accuracy(x, labels, all, n_train, classes);
          }
          const double mean = sum / static_cast<double>(random_trials_);
          e.metrics.push_back({r.method, r.layer, "random_accuracy@" + std::to_string(k_wanted), mean});
          random.x.push_back(static_cast<double>(k_wanted));
          random.y.push_back(mean);
        }
      }
      e.curves.push_back(std::move(curve));
      const bool have_random = std::any_of(e.curves.begin(), e.curves.end(), [&](const Curve& c) {
        return c.method == "random" && c.layer == r.layer;
      });
      if (random_trials_ > 0 && !have_random) e.curves.push_back(std::move(random));
    }
    return e;
  }

 private:
  void check_labels(std::int64_t n) const {
    if (labels_.size(0) < n)
      throw ShapeError("feature-selection: '" + labels_file_ + "' holds " + std::to_string(labels_.size(0)) +
                       " labels for " + std::to_string(n) + " inputs");
  }

  // The layer's activation per unit over all inputs: per neuron as is, per filter the channel's spatial mean.
  static Tensor features(const EvaluationInput& in, const std::string& layer, bool filter) {
    torch::NoGradGuard no_grad;
    const auto tapped = in.model->tapped({layer});
    std::vector<Tensor> parts;
    const auto n = in.inputs.size(0);
    for (std::int64_t s = 0; s < n; s += 256) {
      const auto len = std::min<std::int64_t>(256, n - s);
      const auto a = layer_output(*tapped, in.inputs.narrow(0, s, len));
      parts.push_back(filter ? a.reshape({len, a.size(1), -1}).mean(2) : a.reshape({len, -1}));
    }
    return torch::cat(parts).to(torch::kDouble).cpu();
  }

  // k distinct units, taking each label's next best in turn.
  static std::vector<std::int64_t> round_robin(const std::vector<std::vector<std::int64_t>>& rankings, std::int64_t k) {
    std::vector<std::int64_t> chosen;
    std::set<std::int64_t> taken;
    std::vector<std::size_t> next(rankings.size(), 0);
    while (static_cast<std::int64_t>(chosen.size()) < k) {
      bool progressed = false;
      for (std::size_t l = 0; l < rankings.size() && static_cast<std::int64_t>(chosen.size()) < k; ++l) {
        while (next[l] < rankings[l].size() && taken.count(rankings[l][next[l]])) ++next[l];
        if (next[l] == rankings[l].size()) continue;
        taken.insert(rankings[l][next[l]]);
        chosen.push_back(rankings[l][next[l]]);
        progressed = true;
      }
      if (!progressed) break;
    }
    return chosen;
  }

  // Multinomial logistic regression on the chosen columns (standardised on the training rows), full-batch L-BFGS
  // with an L2 penalty on the weights; accuracy on the held-out rows.
  double accuracy(const Tensor& x, const Tensor& labels, const std::vector<std::int64_t>& chosen, std::int64_t n_train,
                  std::int64_t classes) const {
    const auto cols = torch::tensor(chosen, torch::kLong);
    auto features = x.index_select(1, cols);
    const auto train = features.narrow(0, 0, n_train), test = features.narrow(0, n_train, x.size(0) - n_train);
    const auto mean = train.mean(0, true), sd = train.std(0, /*unbiased=*/false, true).clamp_min(1e-12);
    const auto xt = (train - mean) / sd, xv = (test - mean) / sd;
    const auto yt = labels.narrow(0, 0, n_train), yv = labels.narrow(0, n_train, x.size(0) - n_train);
    torch::AutoGradMode grad(true);
    auto w = torch::zeros({xt.size(1), classes}, torch::kDouble).requires_grad_(true);
    auto b = torch::zeros({classes}, torch::kDouble).requires_grad_(true);
    torch::optim::LBFGS opt({w, b}, torch::optim::LBFGSOptions(1.0).max_iter(200).line_search_fn("strong_wolfe"));
    const torch::optim::Optimizer::LossClosure closure = [&]() -> Tensor {
      opt.zero_grad();
      auto loss = torch::nll_loss(torch::log_softmax(torch::matmul(xt, w) + b, 1), yt) + l2_ * (w * w).sum();
      loss.backward();
      return loss;
    };
    opt.step(closure);
    torch::NoGradGuard no_grad;
    const auto predicted = (torch::matmul(xv, w) + b).argmax(1);
    return predicted.eq(yv).to(torch::kDouble).mean().item<double>();
  }

  std::string labels_file_;
  double train_fraction_;
  std::vector<std::int64_t> ks_;
  double l2_;
  std::int64_t random_trials_, seed_;
  ResultFilter filter_;
  Tensor labels_;
};

}  // namespace
}  // namespace galvani::plugins::feature_selection

GALVANI_PLUGIN("feature-selection", "0.1.0", [](galvani::Registrar& r) {
  r.add_evaluator("feature-selection",
                  "held-out accuracy of a logistic regression on the top-k units by importance per label, against "
                  "k random units (options labels, train_fraction, k, l2, random_trials, seed, methods, layers)",
                  [](const galvani::Options& o) {
                    return std::make_unique<galvani::plugins::feature_selection::FeatureSelection>(o);
                  });
})
