// Conductance (Dhamdhere et al., "How important is a neuron?").
//  - Total conductance of each hidden unit y (eq. 3): Σₖ wₖ · ∂F/∂y(γ(αₖ)) · dy/dα(αₖ), with dy/dα taken
//    exactly by forward-mode AD (a Jacobian–vector product along the path velocity).
//  - Neuron conductance (eq. 2) of chosen units, per input feature i:
//    (xᵢ − x′ᵢ) · Σₖ wₖ · ∂F/∂y(γ(αₖ)) · ∂y/∂xᵢ(γ(αₖ)). All chosen units are done in one batched pass:
//    every path point is repeated once per unit, and one backward gives every unit's input gradient.
#include <torch/csrc/autograd/autograd.h>

#include "galvani/galvani.h"

namespace galvani::plugins::conductance {
namespace {

class Conductance : public Method {
 public:
  Conductance(std::vector<int64_t> neurons, std::vector<int64_t> filters)
      : neurons_(std::move(neurons)), filters_(std::move(filters)) {}

  MethodNeeds needs() const override {
    MethodNeeds n;
    if (neuron_mode()) return n;  // its own batched passes
    n.path = true;
    n.tangents = true;
    return n;
  }

  std::vector<Attribution> attribute(const MethodContext& ctx, const std::vector<std::string>& layers) const override {
    return neuron_mode() ? neuron_conductance(ctx, layers) : total_conductance(ctx, layers);
  }

 private:
  bool neuron_mode() const { return !neurons_.empty() || !filters_.empty(); }

  std::vector<Attribution> total_conductance(const MethodContext& ctx, const std::vector<std::string>& layers) const {
    const PathPass& pass = ctx.pass();
    std::vector<Attribution> out;
    for (const auto& name : layers) {
      const auto& d = pass.layer(name);
      auto sum = torch::zeros_like(d.act[0]);
      for (std::size_t k = 0; k < pass.quadrature.alphas.size(); ++k) {
        const auto i = static_cast<int64_t>(pass.quad_index[k]);
        sum.addcmul_(d.grad[i], d.tangent[i], pass.quadrature.weights[k]);
      }
      Attribution a;
      a.layer = name;
      a.values = sum;
      a.delta = completeness_delta(sum, pass.f_input(), pass.f_baseline());
      out.push_back(std::move(a));
    }
    return out;
  }

  std::vector<Attribution> neuron_conductance(const MethodContext& ctx, const std::vector<std::string>& layers) const {
    std::vector<Attribution> out;
    for (const auto& name : layers) out.push_back(neuron_conductance_at(ctx, name));
    return out;
  }

  Attribution neuron_conductance_at(const MethodContext& ctx, const std::string& layer) const {
    const Model& model = ctx.model();
    const auto info = model.layer(layer);
    int64_t layer_numel = 1;
    for (auto s : info.shape) layer_numel *= s;
    const int64_t channels = info.shape.empty() ? 0 : info.shape[0];
    const bool by_filter = !filters_.empty();
    const auto& units = by_filter ? filters_ : neurons_;
    for (auto u : units) {
      const int64_t limit = by_filter ? channels : layer_numel;
      if (u < 0 || u >= limit)
        throw ConfigError(std::string(by_filter ? "filters" : "neurons") + ": unit " + std::to_string(u) +
                          " is out of range for layer '" + layer + "' (" + std::to_string(limit) + " " +
                          (by_filter ? "channels" : "units") + ")");
    }
    const int64_t n_units = static_cast<int64_t>(units.size());
    const int64_t per_channel = channels > 0 ? layer_numel / channels : 1;

    const auto& x = ctx.inputs();
    const auto baseline = ctx.path().baseline(x, ctx.baselines());
    const auto quad = ctx.path().quadrature(ctx.steps());
    const int64_t batch = x.size(0);
    const int64_t n_alpha = static_cast<int64_t>(quad.alphas.size());
    const auto points = ctx.path().points(x, baseline, quad.alphas);  // [K·B, ...], α-major
    const int64_t total = n_alpha * batch * n_units;                   // (point, unit) pairs
    const int64_t chunk = ctx.internal_batch() > 0 ? ctx.internal_batch() : default_internal_batch(x[0].numel(), x.device());
    const auto acc_dtype = ctx.double_precision() ? torch::kDouble : x.scalar_type();

    // Unit selection mask per unit: [U, layer_numel].
    auto mask = torch::zeros({n_units, layer_numel}, x.options());
    for (int64_t u = 0; u < n_units; ++u) {
      if (by_filter)
        mask[u].narrow(0, units[u] * per_channel, per_channel).fill_(1);
      else
        mask[u][units[u]] = 1;
    }
    auto weights = torch::tensor(quad.weights, torch::TensorOptions().dtype(torch::kDouble)).to(x.device(), acc_dtype);
    auto input_shape = x.sizes().vec();
    input_shape.erase(input_shape.begin());
    std::vector<int64_t> acc_shape{batch, n_units};
    acc_shape.insert(acc_shape.end(), input_shape.begin(), input_shape.end());
    auto acc = torch::zeros(acc_shape, x.options().dtype(acc_dtype));

    auto tapped = model.tapped({layer});
    const auto all_targets = ctx.targets();
    torch::AutoGradMode grad_mode(true);
    // Flat index p over (alpha k, sample b, unit u), u fastest.
    for (int64_t start = 0; start < total; start += chunk) {
      const int64_t len = std::min(chunk, total - start);
      const auto idx = torch::arange(start, start + len, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
      const auto point = idx.div(n_units, "floor");  // index into points (k·B + b)
      const auto unit = idx.remainder(n_units);
      const auto sample = point.remainder(batch);
      const auto alpha_index = point.div(batch, "floor");
      auto xin = points.index_select(0, point).detach().requires_grad_(true);
      std::vector<torch::Tensor> captured;
      const auto out = tapped->forward(xin, taps::capture(captured));
      const auto f = ctx.objective()(out, all_targets.index_select(0, sample));
      const auto y = captured.at(0).reshape({len, -1});
      const auto dfdy = torch::autograd::grad({f.sum()}, {captured[0]}, {}, /*retain_graph=*/true)[0].reshape({len, -1});
      // s_p = Σ_j mask[u_p, j] · ∂F/∂y_j (held constant) · y_j; its input gradient is the unit's term.
      const auto s = (mask.index_select(0, unit) * dfdy.detach() * y).sum();
      const auto g = torch::autograd::grad({s}, {xin})[0].to(acc_dtype);
      const auto w = weights.index_select(0, alpha_index);
      std::vector<int64_t> wshape(g.dim(), 1);
      wshape[0] = len;
      const auto term = g * w.view(wshape);
      // Scatter-add into acc[b, u].
      const auto flat = acc.view({batch * n_units, -1});
      flat.index_add_(0, sample * n_units + unit, term.reshape({len, -1}));
    }
    const auto diff = (x - baseline).to(acc_dtype).unsqueeze(1);
    Attribution a;
    a.layer = layer;
    a.space = Space::UnitInput;
    a.values = acc * diff;
    a.units = units;
    return a;
  }

  std::vector<int64_t> neurons_, filters_;
};

}  // namespace
}  // namespace galvani::plugins::conductance

GALVANI_PLUGIN("conductance", "0.1.0", [](galvani::Registrar& r) {
  r.add_method("conductance",
               "total conductance of every unit (eq. 3, exact dy/dα by JVP); with neurons = [...] or filters = "
               "[...], neuron conductance per input feature (eq. 2)",
               [](const galvani::Options& o) {
                 auto neurons = o.get_ints("neurons", {});
                 auto filters = o.get_ints("filters", {});
                 if (!neurons.empty() && !filters.empty())
                   throw galvani::ConfigError(o.key_path("filters") + ": give either neurons or filters, not both");
                 return std::make_unique<galvani::plugins::conductance::Conductance>(std::move(neurons),
                                                                                     std::move(filters));
               });
})
