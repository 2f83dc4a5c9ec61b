// Neuron Integrated Gradients (Shrikumar et al.): the Riemann–Stieltjes sum Σₖ ∂F/∂y(tₖ)·(y(tₖ) − y(tₖ₋₁))
// over the pass's grid 0 = t₀ < … < t_T = 1, with the gradient at the right (default) or left point.
// As the grid refines it converges to total conductance, from finite differences of y instead of a JVP.
#include "galvani/galvani.h"

namespace galvani::plugins::nig {
namespace {

class NeuronIntegratedGradients : public Method {
 public:
  explicit NeuronIntegratedGradients(bool right) : right_(right) {}
  MethodNeeds needs() const override {
    MethodNeeds n;
    n.path = true;
    return n;
  }
  std::vector<Attribution> attribute(const MethodContext& ctx, const std::vector<std::string>& layers) const override {
    const PathPass& pass = ctx.pass();
    const auto grid = static_cast<int64_t>(pass.t.size());
    std::vector<Attribution> out;
    for (const auto& name : layers) {
      const auto& d = pass.layer(name);
      // Σᵢ gᵢ·(yᵢ − yᵢ₋₁), accumulated in place: no [T, B, ...] temporaries.
      auto sum = torch::zeros_like(d.act[0]);
      for (int64_t i = 1; i < grid; ++i) {
        sum.addcmul_(d.grad[right_ ? i : i - 1], d.act[i]);
        sum.addcmul_(d.grad[right_ ? i : i - 1], d.act[i - 1], -1);
      }
      Attribution a;
      a.layer = name;
      a.values = sum;
      a.delta = completeness_delta(a.values, pass.f_input(), pass.f_baseline());
      out.push_back(std::move(a));
    }
    return out;
  }

 private:
  bool right_;
};

}  // namespace
}  // namespace galvani::plugins::nig

GALVANI_PLUGIN("nig", "0.1.0", [](galvani::Registrar& r) {
  r.add_method("nig", "Neuron Integrated Gradients: Σ ∂F/∂y·Δy over the path (option gradient_at = right|left)",
               [](const galvani::Options& o) {
                 const auto at = o.get_choice("gradient_at", "right", {"right", "left"});
                 return std::make_unique<galvani::plugins::nig::NeuronIntegratedGradients>(at == "right");
               });
})
