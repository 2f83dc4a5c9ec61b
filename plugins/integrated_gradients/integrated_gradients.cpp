// Integrated Gradients of the input (Sundararajan et al.): IGᵢ = ∫₀¹ ∂F(γ(α))/∂xᵢ · γ'ᵢ(α) dα, by the path's
// quadrature, from the input gradients of the shared pass (so it costs nothing extra next to path methods
// that already run the path, beyond carrying the backward to the input). An input-space reference for the
// input-space evaluators and for neuron conductance maps.
#include "galvani/galvani.h"

namespace galvani::plugins::integrated_gradients {
namespace {

class IntegratedGradients : public Method {
 public:
  MethodNeeds needs() const override {
    MethodNeeds n;
    n.input_grads = true;
    return n;
  }
  bool needs_layers() const override { return false; }

  std::vector<Attribution> attribute(const MethodContext& ctx, const std::vector<std::string>&) const override {
    const PathPass& pass = ctx.pass();
    const auto& quad = pass.quadrature;
    // dγ/dα at the quadrature points, α-major [K·B, ...] → [K, B, ...].
    auto sizes = pass.inputs.sizes().vec();
    sizes.insert(sizes.begin(), static_cast<std::int64_t>(quad.alphas.size()));
    const auto velocity = ctx.path().velocity(pass.inputs, pass.baselines, quad.alphas).view(sizes);
    const auto acc = pass.input_grad.scalar_type();
    auto sum = torch::zeros(pass.inputs.sizes(), pass.inputs.options().dtype(acc));
    for (std::size_t k = 0; k < quad.alphas.size(); ++k)
      sum += quad.weights[k] * pass.input_grad[static_cast<std::int64_t>(pass.quad_index[k])] *
             velocity[static_cast<std::int64_t>(k)].to(acc);
    Attribution a;
    a.layer = "input";
    a.space = Space::Input;
    a.values = sum.to(ctx.inputs().scalar_type());
    // Completeness against the pass's own baseline (the path may override the configured one).
    a.delta = completeness_delta(sum, pass.f_input(), pass.f_baseline());
    return {a};
  }
};

}  // namespace
}  // namespace galvani::plugins::integrated_gradients

GALVANI_PLUGIN("integrated-gradients", "0.1.0", [](galvani::Registrar& r) {
  r.add_method("integrated-gradients",
               "Integrated Gradients of the input features along the configured path (input-space; options rule, "
               "steps, path)",
               [](const galvani::Options&) {
                 return std::make_unique<galvani::plugins::integrated_gradients::IntegratedGradients>();
               });
})
