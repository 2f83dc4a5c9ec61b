// Simple reference methods for comparison: activation, gradient × activation, gradient × (y − y′).
// They read the endpoints (α = 0 and α = 1) of the shared pass, so they cost nothing next to a path method.
#include "galvani/galvani.h"

namespace galvani::plugins::references {
namespace {

enum class Kind { Activation, GradientTimesActivation, GradientTimesDelta };

class Reference : public Method {
 public:
  explicit Reference(Kind kind) : kind_(kind) {}
  MethodNeeds needs() const override {
    MethodNeeds n;
    n.endpoints = true;
    return n;
  }
  std::vector<Attribution> attribute(const MethodContext& ctx, const std::vector<std::string>& layers) const override {
    const PathPass& pass = ctx.pass();
    const auto last = static_cast<int64_t>(pass.last());
    std::vector<Attribution> out;
    for (const auto& name : layers) {
      const auto& d = pass.layer(name);
      Attribution a;
      a.layer = name;
      switch (kind_) {
        case Kind::Activation:
          a.values = d.act[last];  // y(x): not in units of F, so no completeness delta
          break;
        case Kind::GradientTimesActivation:
          a.values = d.grad[last] * d.act[last];
          a.delta = completeness_delta(a.values, pass.f_input(), pass.f_baseline());
          break;
        case Kind::GradientTimesDelta:
          a.values = d.grad[last] * (d.act[last] - d.act[0]);
          a.delta = completeness_delta(a.values, pass.f_input(), pass.f_baseline());
          break;
      }
      out.push_back(std::move(a));
    }
    return out;
  }

 private:
  Kind kind_;
};

void register_references(Registrar& r) {
  r.add_method("activation", "the layer's activation y(x)", [](const Options&) {
    return std::make_unique<Reference>(Kind::Activation);
  });
  r.add_method("gradient-x-activation", "∂F/∂y(x) · y(x)", [](const Options&) {
    return std::make_unique<Reference>(Kind::GradientTimesActivation);
  });
  r.add_method("gradient-x-delta", "∂F/∂y(x) · (y(x) − y(x′))", [](const Options&) {
    return std::make_unique<Reference>(Kind::GradientTimesDelta);
  });
}

}  // namespace
}  // namespace galvani::plugins::references

GALVANI_PLUGIN("references", "0.1.0", galvani::plugins::references::register_references)
