// Internal influence (Leino et al.): the path integral of ∂F/∂y, ∫₀¹ ∂F/∂y(γ(α)) dα, per unit.
// It is a gradient, not a share of F(x) − F(x′), so it has no completeness delta.
#include "galvani/galvani.h"

namespace galvani::plugins::internal_influence {
namespace {

class InternalInfluence : public Method {
 public:
  MethodNeeds needs() const override {
    MethodNeeds n;
    n.path = true;
    return n;
  }
  std::vector<Attribution> attribute(const MethodContext& ctx, const std::vector<std::string>& layers) const override {
    const PathPass& pass = ctx.pass();
    std::vector<Attribution> out;
    for (const auto& name : layers) {
      const auto& d = pass.layer(name);
      auto sum = torch::zeros_like(d.grad[0]);
      for (std::size_t k = 0; k < pass.quadrature.alphas.size(); ++k)
        sum.add_(d.grad[static_cast<int64_t>(pass.quad_index[k])], pass.quadrature.weights[k]);
      Attribution a;
      a.layer = name;
      a.values = sum;
      out.push_back(std::move(a));
    }
    return out;
  }
};

}  // namespace
}  // namespace galvani::plugins::internal_influence

GALVANI_PLUGIN("internal-influence", "0.1.0", [](galvani::Registrar& r) {
  r.add_method("internal-influence", "∫ ∂F/∂y dα along the path (Leino et al.)", [](const galvani::Options&) {
    return std::make_unique<galvani::plugins::internal_influence::InternalInfluence>();
  });
})
