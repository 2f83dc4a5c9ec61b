// Path generators: the straight line from baseline to input under any quadrature rule, and the
// interior-gradient scaling path (α·x from a zero baseline) as a named preset.
#include "galvani/galvani.h"

namespace galvani::plugins::paths {
namespace {

class StraightLine : public PathGenerator {
 public:
  StraightLine(std::string rule, bool zero_baseline) : rule_(std::move(rule)), zero_baseline_(zero_baseline) {}
  Quadrature quadrature(int steps) const override { return make_quadrature(rule_, steps); }
  torch::Tensor baseline(const torch::Tensor& input, const torch::Tensor& configured) const override {
    return zero_baseline_ ? torch::zeros_like(input) : configured;
  }
  std::string describe() const override {
    return std::string(zero_baseline_ ? "interior-gradient (zero baseline)" : "straight line") + ", " + rule_;
  }

 private:
  std::string rule_;
  bool zero_baseline_;
};

// The rules a path's `rule` takes: the quadratures, and captum_trapezoid (Captum's trapezoid weights, which sum to
// 1 − 1/n: not a quadrature of its own, so not in quadrature_rules(); there for galvani.captum).
const std::vector<std::string>& path_rules() {
  static const std::vector<std::string> rules = [] {
    auto r = quadrature_rules();
    r.push_back("captum_trapezoid");
    return r;
  }();
  return rules;
}

void register_paths(Registrar& r) {
  r.add_path("straight-line", "x' + α(x − x'); option rule = riemann_left|right|middle|trapezoid|gausslegendre",
             [](const Options& o) {
               return std::make_unique<StraightLine>(o.get_choice("rule", "gausslegendre", path_rules()), false);
             });
  r.add_path("interior-gradient", "scaled inputs α·x (zero baseline), as in interior gradients; option rule",
             [](const Options& o) {
               return std::make_unique<StraightLine>(o.get_choice("rule", "riemann_right", path_rules()), true);
             });
}

}  // namespace
}  // namespace galvani::plugins::paths

GALVANI_PLUGIN("paths", "0.1.0", galvani::plugins::paths::register_paths)
