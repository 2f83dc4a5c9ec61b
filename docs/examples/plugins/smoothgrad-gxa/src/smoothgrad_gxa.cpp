// smoothgrad-gxa: gradient × activation at a layer, averaged over noisy copies of the input
// (SmoothGrad-style), written from scratch in docs/sdk.md.
//
//   values(x) = 1/n Σᵢ ∂F/∂y(x + εᵢ) · y(x + εᵢ),   εᵢ ~ N(0, (σ·(max x − min x))²)
#include <torch/csrc/autograd/autograd.h>

#include "galvani/galvani.h"

namespace {

class SmoothGradGxa : public galvani::Method {
 public:
  explicit SmoothGradGxa(const galvani::Options& o)
      : samples_(o.get_int_in("samples", 16, 1, 4096)),
        sigma_(o.get_double_in("sigma", 0.1, 0.0, 10.0)),
        seed_(o.get_int("seed", 0)) {}

  // No shared pass: the noisy points are this method's own.
  galvani::MethodNeeds needs() const override { return {}; }

  std::vector<galvani::Attribution> attribute(const galvani::MethodContext& ctx,
                                              const std::vector<std::string>& layers) const override {
    const auto& x = ctx.inputs();
    const auto batch = x.size(0);
    // Reproducible noise whatever the shard: a generator seeded from the seed and the shard's first values.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ + static_cast<uint64_t>(x.sum().item<double>() * 1e6));
    const double scale = sigma_ * (x.max() - x.min()).item<double>();
    // All noisy copies of the shard in one batch: [n·B, ...].
    auto repeats = std::vector<int64_t>(x.dim(), 1);
    repeats[0] = samples_;
    const auto noise = at::normal(0.0, 1.0, x.repeat(repeats).sizes(), gen).to(x.device(), x.scalar_type());
    const auto noisy = (x.repeat(repeats) + scale * noise).detach().requires_grad_(true);
    const auto targets = ctx.targets().repeat({samples_});

    std::vector<torch::Tensor> captured;
    torch::AutoGradMode grad_mode(true);
    const auto out = ctx.model().tapped(layers)->forward(noisy, galvani::taps::capture(captured));
    const auto f = ctx.objective()(out, targets);
    const auto grads = torch::autograd::grad({f.sum()}, captured);
    std::vector<galvani::Attribution> result;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      auto per_sample = (grads[i] * captured[i].detach());
      auto sizes = per_sample.sizes().vec();
      sizes[0] = batch;
      sizes.insert(sizes.begin(), samples_);
      galvani::Attribution a;
      a.layer = layers[i];
      a.values = per_sample.view(sizes).mean(0);  // [B, *layer shape]
      result.push_back(std::move(a));
    }
    return result;
  }

 private:
  int64_t samples_;
  double sigma_;
  int64_t seed_;
};

}  // namespace

GALVANI_PLUGIN("smoothgrad-gxa", "1.0.0", [](galvani::Registrar& r) {
  r.add_method("smoothgrad-gxa", "gradient × activation averaged over noisy inputs (options samples, sigma, seed)",
               [](const galvani::Options& o) { return std::make_unique<SmoothGradGxa>(o); });
})
