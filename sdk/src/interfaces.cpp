// Out-of-line destructors: each interface's vtable lives once, in the SDK library.
#include <algorithm>
#include <sstream>

#include "galvani/evaluator.h"
#include "galvani/method.h"
#include "galvani/model.h"
#include "galvani/path.h"
#include "galvani/plugin.h"
#include "galvani/tensor_io.h"

namespace galvani {

TappedForward::~TappedForward() = default;
TailForward::~TailForward() = default;
OpTappedForward::~OpTappedForward() = default;
Model::~Model() = default;
ModelBackend::~ModelBackend() = default;
PathGenerator::~PathGenerator() = default;
MethodContext::~MethodContext() = default;
void MethodContext::provide_outputs(const torch::Tensor&, const torch::Tensor&) const {}
Method::~Method() = default;
void Method::validate(const MethodPlan&) const {}
Evaluator::~Evaluator() = default;
void Evaluator::validate(const EvaluatorPlan&) const {}
Registrar::~Registrar() = default;

namespace {
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}
}  // namespace

namespace {
/// A tail for any backend: the whole forward, with the layer's output replaced.
class ReplacingTail : public TailForward {
 public:
  ReplacingTail(std::string layer, std::shared_ptr<const TappedForward> forward)
      : layer_(std::move(layer)), forward_(std::move(forward)) {}
  const std::string& layer() const override { return layer_; }
  bool needs_input() const override { return true; }
  std::string cut_note() const override {
    return "the model backend cannot cut its graph, so every evaluation runs the whole forward";
  }
  torch::Tensor forward(const torch::Tensor& activation, const torch::Tensor& input) const override {
    if (!input.defined() || input.size(0) != activation.size(0))
      throw ShapeError("the tail after layer '" + layer_ + "' needs the input row-aligned with the activation (" +
                       std::to_string(activation.size(0)) + " rows)");
    return forward_->forward(input, [&](std::size_t, const torch::Tensor& y) {
      if (y.sizes() != activation.sizes())
        throw ShapeError("replacement for layer '" + layer_ + "' has shape " + shape_string(activation.sizes()) +
                         " but the layer output has " + shape_string(y.sizes()));
      return activation * 1;  // a fresh tensor: ops after the layer may work in place
    });
  }

 private:
  std::string layer_;
  std::shared_ptr<const TappedForward> forward_;
};
}  // namespace

std::shared_ptr<const TailForward> Model::tail(const std::string& layer) const {
  return std::make_shared<ReplacingTail>(layer, tapped({layer}));
}

std::vector<OpSite> Model::operations() const {
  throw ModelError("this model backend has no op taps, so operations cannot be listed or swapped");
}

std::shared_ptr<const OpTappedForward> Model::op_tapped(const std::vector<std::string>&,
                                                        const std::vector<std::size_t>&) const {
  throw ModelError("this model backend has no op taps (needed, e.g., by DeepLIFT to swap nonlinearities)");
}

std::shared_ptr<Model> Model::randomized(const std::vector<std::string>&, std::uint64_t) const {
  throw ModelError("this model backend cannot randomise parameters (needed by parameter-randomisation checks)");
}

ModelCapabilities Model::capabilities() const { return {}; }

std::vector<std::string> Model::notes() const { return {}; }

LayerInfo Model::layer(const std::string& name) const {
  const auto all = layers();
  for (const auto& l : all)
    if (l.name == name) return l;
  std::vector<std::pair<std::size_t, std::string>> close;
  for (const auto& l : all) close.emplace_back(edit_distance(name, l.name), l.name);
  std::sort(close.begin(), close.end());
  std::ostringstream msg;
  msg << "no layer named '" << name << "' in the model";
  if (!close.empty()) {
    msg << "; closest:";
    for (std::size_t i = 0; i < close.size() && i < 5; ++i) msg << (i ? ", " : " ") << close[i].second;
  }
  msg << " (`galvani layers MODEL` lists them all)";
  throw ModelError(msg.str());
}

}  // namespace galvani
