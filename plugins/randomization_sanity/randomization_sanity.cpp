// Parameter-randomisation sanity check (Adebayo et al., "Sanity checks for saliency maps"), cascading: step k
// redraws the parameters of the k modules nearest the output (Model::randomized), runs each method again on
// the first inputs, and compares with its attributions on the trained model. A method whose attributions do
// not change when the model it explains is destroyed is not explaining the model.
#include <algorithm>
#include <cmath>
#include <set>

#include "galvani/galvani.h"
#include "galvani/support.h"

namespace galvani::plugins::randomization_sanity {
namespace {

using torch::Tensor;

// Mean SSIM (7×7 uniform window, maps scaled to [0, 1] after |·|) of [N, H, W] maps.
Tensor ssim(const Tensor& a, const Tensor& b) {
  const auto norm = [](const Tensor& t) {
    const auto x = t.abs();
    const auto mx = std::get<0>(x.reshape({x.size(0), -1}).max(1)).clamp_min(1e-30).view({-1, 1, 1});
    return (x / mx).unsqueeze(1);
  };
  const auto x = norm(a), y = norm(b);
  const auto pool = [](const Tensor& t) { return torch::avg_pool2d(t, 7, 1, 3, false, false); };
  const auto mx = pool(x), my = pool(y);
  const auto sxx = pool(x * x) - mx * mx, syy = pool(y * y) - my * my, sxy = pool(x * y) - mx * my;
  const double c1 = 1e-4, c2 = 9e-4;
  const auto map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2));
  return map.mean({1, 2, 3});
}

double finite_mean(const Tensor& t) {
  const auto ok = t.isfinite();
  return ok.any().item<bool>() ? t.masked_select(ok).mean().item<double>() : std::nan("");
}

// Image-shaped maps [N, H, W]: input-space [N, C, H, W] or layer [N, C, H, W], channels summed.
Tensor image_of(const Tensor& v) { return v.dim() == 4 ? v.sum(1) : (v.dim() == 3 ? v : Tensor()); }

const std::set<std::string>& parameterised_types() {
  static const std::set<std::string> types{"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                                           "ConvTranspose3d", "Linear", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d",
                                           "LayerNorm", "Embedding"};
  return types;
}

class RandomizationSanity : public Evaluator {
 public:
  explicit RandomizationSanity(const Options& o)
      : filter_(o, /*with_layers=*/false), modules_(o.get_strings("modules", {})),
        inputs_(o.get_int_in("inputs", 32, 1, 1 << 30)), seed_(o.get_int("seed", 0)) {}

  // Before any shard: the backend can randomise, and there are modules to randomise (the named ones exist).
  void validate(const EvaluatorPlan& plan) const override {
    if (!plan.model->capabilities().randomized)
      throw ModelError("randomization-sanity: this model backend cannot randomise parameters");
    (void)cascade(*plan.model);
    if (!modules_.empty()) (void)plan.model->randomized(modules_, 0);  // names an unknown module with the valid ones
  }

  Evaluation evaluate(const EvaluationInput& in) const override {
    Evaluation e;
    const auto modules = cascade(*in.model);
    Table steps;
    steps.name = "steps";
    steps.columns = {"step", "randomised module"};
    for (std::size_t k = 0; k < modules.size(); ++k) steps.rows.push_back({static_cast<double>(k + 1), modules[k]});
    e.tables.push_back(steps);

    std::vector<std::string> methods;
    filter_.check(in.results);
    for (const auto& r : in.results)
      if (filter_.accepts(r) &&
          std::find(methods.begin(), methods.end(), r.method) == methods.end())
        methods.push_back(r.method);
    const auto count = std::min<std::int64_t>(inputs_, in.inputs.size(0));

    std::map<std::pair<std::string, std::string>, std::vector<double>> abs_curve, signed_curve, ssim_curve;
    for (std::size_t k = 1; k <= modules.size(); ++k) {
      const std::vector<std::string> top(modules.begin(), modules.begin() + static_cast<std::ptrdiff_t>(k));
      const auto model = in.model->randomized(top, static_cast<std::uint64_t>(seed_));
      for (const auto& method : methods) {
        for (const auto& again : in.rerun(method, model, count)) {
          const auto it = std::find_if(in.results.begin(), in.results.end(), [&](const MethodResult& r) {
            return r.method == method && r.layer == again.layer;
          });
          if (it == in.results.end()) continue;
          const auto before = it->values.narrow(0, 0, count).detach().to(torch::kDouble).cpu().reshape({count, -1});
          const auto after = again.values.detach().to(torch::kDouble).cpu().reshape({count, -1});
          const auto key = std::make_pair(method, again.layer);
          abs_curve[key].push_back(finite_mean(stats::spearman(before.abs(), after.abs())));
          signed_curve[key].push_back(finite_mean(stats::spearman(before, after)));
          const auto ib = image_of(it->values.narrow(0, 0, count).detach().to(torch::kDouble).cpu());
          const auto ia = image_of(again.values.detach().to(torch::kDouble).cpu());
          if (ib.defined() && ia.defined() && ib.size(1) >= 7 && ib.size(2) >= 7)
            ssim_curve[key].push_back(finite_mean(ssim(ib, ia)));
        }
      }
    }
    const auto emit = [&](const auto& curves, const std::string& name, const std::string& metric) {
      for (const auto& [key, y] : curves) {
        Curve c;
        c.method = key.first;
        c.layer = key.second;
        c.name = name;
        c.x_label = "modules randomised from the top (table steps)";
        c.y_label = name;
        for (std::size_t i = 0; i < y.size(); ++i) c.x.push_back(static_cast<double>(i + 1));
        c.y = y;
        double mean = 0;
        for (double v : y) mean += v / static_cast<double>(y.size());
        e.metrics.push_back({key.first, key.second, metric + "_final", y.back()});
        e.metrics.push_back({key.first, key.second, metric + "_mean", mean});
        e.curves.push_back(std::move(c));
      }
    };
    emit(abs_curve, "spearman (abs)", "spearman_abs");
    emit(signed_curve, "spearman", "spearman");
    emit(ssim_curve, "ssim", "ssim");
    return e;
  }

 private:
  // Modules nearest the output first: the given ones, or every module with parameters by its layer type.
  std::vector<std::string> cascade(const Model& model) const {
    std::vector<std::string> modules = modules_;
    if (modules.empty()) {
      for (const auto& l : model.layers())
        if (parameterised_types().count(l.type) &&
            std::find(modules.begin(), modules.end(), l.module) == modules.end())
          modules.push_back(l.module);
      std::reverse(modules.begin(), modules.end());
    }
    if (modules.empty())
      throw ConfigError("randomization-sanity: no module with parameters found by layer type; list them in `modules`");
    return modules;
  }

  ResultFilter filter_;
  std::vector<std::string> modules_;
  std::int64_t inputs_, seed_;
};

}  // namespace
}  // namespace galvani::plugins::randomization_sanity

GALVANI_PLUGIN("randomization-sanity", "0.1.0", [](galvani::Registrar& r) {
  r.add_evaluator("randomization-sanity",
                  "cascading parameter randomisation from the top: Spearman rank correlation (and SSIM for "
                  "image-shaped maps) between attributions of the trained and the randomised model (options "
                  "modules, inputs, seed, methods)",
                  [](const galvani::Options& o) {
                    return std::make_unique<galvani::plugins::randomization_sanity::RandomizationSanity>(o);
                  });
})
