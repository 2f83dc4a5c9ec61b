// Neuron Integrated Gradients (Shrikumar et al.): the Riemann–Stieltjes sum Σₖ ∂F/∂y(tₖ)·(y(tₖ) − y(tₖ₋₁))
// over the pass's grid 0 = t₀ < … < t_T = 1, with the gradient at the right (default) or left point.
// As the grid refines it converges to total conductance, from finite differences of y instead of a JVP.
// segments = "quadrature" sums over consecutive quadrature points only (no segments to α = 0 and α = 1): Captum's
// LayerConductance, which galvani.captum reproduces; it leaves out the ends' share of F(x) − F(x′).
#include <algorithm>

#include "galvani/galvani.h"

namespace galvani::plugins::nig {
namespace {

class NeuronIntegratedGradients : public Method {
 public:
  NeuronIntegratedGradients(bool right, bool quadrature_only) : right_(right), quadrature_only_(quadrature_only) {}
  MethodNeeds needs() const override {
    MethodNeeds n;
    n.path = true;
    return n;
  }
  std::vector<Attribution> attribute(const MethodContext& ctx, const std::vector<std::string>& layers) const override {
    const PathPass& pass = ctx.pass();
    // The points summed over: the whole grid, or the quadrature's points only (sorted, as the grid is).
    std::vector<int64_t> points;
    if (quadrature_only_) {
      points.assign(pass.quad_index.begin(), pass.quad_index.end());
      std::sort(points.begin(), points.end());
    } else {
      for (int64_t i = 0; i < static_cast<int64_t>(pass.t.size()); ++i) points.push_back(i);
    }
    std::vector<Attribution> out;
    for (const auto& name : layers) {
      const auto& d = pass.layer(name);
      // Σᵢ gᵢ·(yᵢ − yᵢ₋₁), accumulated in place: no [T, B, ...] temporaries.
      auto sum = torch::zeros_like(d.act[0]);
      for (std::size_t k = 1; k < points.size(); ++k) {
        const int64_t i = points[k], prev = points[k - 1];
        sum.addcmul_(d.grad[right_ ? i : prev], d.act[i]);
        sum.addcmul_(d.grad[right_ ? i : prev], d.act[prev], -1);
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
  bool quadrature_only_;
};

}  // namespace
}  // namespace galvani::plugins::nig

GALVANI_PLUGIN("nig", "0.1.0", [](galvani::Registrar& r) {
  r.add_method("nig",
               "Neuron Integrated Gradients: Σ ∂F/∂y·Δy over the path (options gradient_at = right|left, segments = "
               "grid|quadrature)",
               [](const galvani::Options& o) {
                 const auto at = o.get_choice("gradient_at", "right", {"right", "left"});
                 const auto segments = o.get_choice("segments", "grid", {"grid", "quadrature"});
                 return std::make_unique<galvani::plugins::nig::NeuronIntegratedGradients>(at == "right",
                                                                                           segments == "quadrature");
               });
})
