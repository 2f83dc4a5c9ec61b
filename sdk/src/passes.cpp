#include "galvani/passes.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/forward_grad.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <optional>

#include "galvani/tap.h"
#include "galvani/tensor_io.h"

namespace galvani {
namespace {

// Forward-mode AD in libtorch supports one dual level at a time for the whole process. Concurrent passes
// share it (tangents are per tensor); the last one out releases it, so no level outlives the passes (a level
// left alive at exit deadlocks libtorch's static destructors).
class DualLevel {
 public:
  DualLevel() {
    std::lock_guard<std::mutex> lock(mutex());
    if (users()++ == 0) level() = static_cast<std::int64_t>(torch::autograd::ForwardADLevel::get_next_idx());
    index_ = level();
  }
  ~DualLevel() {
    std::lock_guard<std::mutex> lock(mutex());
    if (--users() == 0) torch::autograd::ForwardADLevel::release_idx(static_cast<uint64_t>(level()));
  }
  DualLevel(const DualLevel&) = delete;
  DualLevel& operator=(const DualLevel&) = delete;
  std::int64_t index() const { return index_; }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static int& users() {
    static int n = 0;
    return n;
  }
  static std::int64_t& level() {
    static std::int64_t l = 0;
    return l;
  }
  std::int64_t index_ = 0;
};

constexpr double kSameAlpha = 1e-12;

// The grid: {0, 1} ∪ alphas, sorted, with the position of every alpha in it.
void build_grid(const Quadrature& q, std::vector<double>& t, std::vector<std::size_t>& index) {
  t = q.alphas;
  t.push_back(0.0);
  t.push_back(1.0);
  std::sort(t.begin(), t.end());
  std::vector<double> unique;
  for (double a : t) {
    if (a < -kSameAlpha || a > 1.0 + kSameAlpha)
      throw ConfigError("path alpha " + std::to_string(a) + " lies outside [0, 1]");
    if (unique.empty() || a - unique.back() > kSameAlpha) unique.push_back(std::clamp(a, 0.0, 1.0));
  }
  t = std::move(unique);
  index.clear();
  for (double a : q.alphas) {
    auto it = std::lower_bound(t.begin(), t.end(), a - kSameAlpha);
    index.push_back(static_cast<std::size_t>(it - t.begin()));
  }
}

}  // namespace

const LayerPathData& PathPass::layer(const std::string& name) const {
  auto it = layers.find(name);
  if (it == layers.end()) throw Error("the shared pass holds no data for layer '" + name + "'");
  return it->second;
}

torch::Tensor PathPass::f_input() const { return f[static_cast<int64_t>(last())]; }
torch::Tensor PathPass::f_baseline() const { return f[0]; }

std::int64_t default_internal_batch(std::int64_t sample_numel) {
  // Measured here (2 cores, one ATen thread per shard, NIG over 52 grid points): the example CNN
  // (784 values per sample) took 1.11 / 1.08 / 1.37 / 1.65 / 1.77 s at 16 / 32 / 64 / 128 / 256 points per
  // chunk, resnet18 at 3×64×64 0.94 / 0.88 / 0.89 / 1.26 s at 8 / 16 / 32 / 64: a few tens of points is
  // best, larger chunks lose to allocation and cache misses. Very large samples get fewer points.
  const std::int64_t target_elements = std::int64_t{1} << 20;
  return std::clamp<std::int64_t>(target_elements / std::max<std::int64_t>(sample_numel, 1), 4, 32);
}

std::int64_t default_internal_batch(std::int64_t sample_numel, const torch::Device& device) {
  if (!device.is_cuda()) return default_internal_batch(sample_numel);
  const std::int64_t target_elements = std::int64_t{1} << 24;
  return std::clamp<std::int64_t>(target_elements / std::max<std::int64_t>(sample_numel, 1), 4, 1024);
}

namespace {

// The rows one pass computes, in the order its chunks take them.
struct PassPoints {
  torch::Tensor points;        ///< [rows, *input shape]: α-major, point p is sample p % B at grid position p / B
  torch::Tensor velocity;      ///< dy/dα's input direction per row (tangents only)
  torch::Tensor targets;       ///< per row
  /// Endpoints with one baseline for every input (zeros, the mean): y(x′) and ∂F/∂y(x′) depend on the target
  /// only, so the baseline is computed once per distinct target (K rows instead of B); `baseline_rows` gathers
  /// its rows back to the inputs.
  torch::Tensor baseline_rows;
};

// Checks a pass's data, fills `pass`'s inputs, baselines, quadrature and grid, and lays out its rows.
PassPoints pass_points(const PathPassSpec& spec, const torch::Tensor& inputs, const torch::Tensor& baselines,
                       const torch::Tensor& targets, PathPass& pass) {
  if (inputs.dim() < 1 || inputs.size(0) == 0) throw ShapeError("a pass needs at least one input");
  if (baselines.sizes() != inputs.sizes())
    throw ShapeError("baselines have shape " + shape_string(baselines.sizes()) + " but inputs have " +
                     shape_string(inputs.sizes()));
  const int64_t batch = inputs.size(0);
  pass.inputs = inputs;
  pass.baselines = spec.path ? spec.path->baseline(inputs, baselines) : baselines;
  if (spec.path) pass.quadrature = spec.path->quadrature(spec.steps);
  build_grid(pass.quadrature, pass.t, pass.quad_index);
  const auto grid = static_cast<int64_t>(pass.t.size());

  PassPoints p;
  if (spec.path) {
    p.points = spec.path->points(inputs, pass.baselines, pass.t);
    if (spec.tangents) p.velocity = spec.path->velocity(inputs, pass.baselines, pass.t);
    p.targets = targets.repeat({grid});
  } else if (!spec.tangents && !spec.input_grads && batch > 1 &&
             torch::equal(pass.baselines, pass.baselines.narrow(0, 0, 1).expand_as(pass.baselines))) {
    const auto [classes, inverse] = at::_unique(targets, /*sorted=*/true, /*return_inverse=*/true);
    p.baseline_rows = inverse;
    auto sizes = inputs.sizes().vec();
    sizes[0] = classes.size(0);
    p.points = torch::cat({pass.baselines.narrow(0, 0, 1).expand(sizes), inputs}, 0);
    p.targets = torch::cat({classes, targets});
  } else {
    // Endpoints only: the baseline, then the input.
    p.points = torch::cat({pass.baselines, inputs}, 0);
    if (spec.tangents) {
      const auto diff = inputs - pass.baselines;
      p.velocity = torch::cat({diff, diff}, 0);
    }
    p.targets = targets.repeat({grid});
  }
  return p;
}

std::int64_t chunk_size(const PathPassSpec& spec, const torch::Tensor& inputs) {
  return spec.internal_batch > 0 ? spec.internal_batch : default_internal_batch(inputs[0].numel(), inputs.device());
}

}  // namespace

std::int64_t floor_pass(const Model& model, const PathPassSpec& spec, const torch::Tensor& inputs,
                        const torch::Tensor& baselines, const torch::Tensor& targets, const Objective& objective) {
  PathPass pass;
  const PassPoints p = pass_points(spec, inputs, baselines, targets, pass);
  const int64_t rows = p.points.size(0);
  const auto tapped = model.tapped(spec.layers);
  const int64_t chunk = chunk_size(spec, inputs);
  torch::AutoGradMode grad_mode(true);
  for (int64_t start = 0; start < rows; start += chunk) {
    const int64_t len = std::min(chunk, rows - start);
    const torch::Tensor x = p.points.narrow(0, start, len).detach().clone().requires_grad_(true);
    std::vector<torch::Tensor> captured(spec.layers.size());
    const torch::Tensor f = objective(tapped->forward(x, taps::capture(captured)), p.targets.narrow(0, start, len));
    std::vector<torch::Tensor> wrt(captured.begin(), captured.end());
    if (spec.input_grads || wrt.empty()) wrt.push_back(x);
    (void)torch::autograd::grad({f.sum()}, wrt, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                /*allow_unused=*/true);
  }
  return rows;
}

PathPass compute_path_pass(const Model& model, const PathPassSpec& spec, const torch::Tensor& inputs,
                           const torch::Tensor& baselines, const torch::Tensor& targets, const Objective& objective) {
  PathPass pass;
  const PassPoints p = pass_points(spec, inputs, baselines, targets, pass);
  const int64_t batch = inputs.size(0);
  const auto grid = static_cast<int64_t>(pass.t.size());
  const torch::Tensor& points = p.points;
  const torch::Tensor& velocity = p.velocity;
  const torch::Tensor& all_targets = p.targets;
  const torch::Tensor& baseline_rows = p.baseline_rows;
  const int64_t rows = points.size(0);  // grid × B, or K + B with a shared baseline

  auto tapped = model.tapped(spec.layers);
  const std::size_t n_layers = spec.layers.size();
  const int64_t chunk = chunk_size(spec, inputs);
  const auto store_dtype = spec.double_accumulate ? torch::kDouble : inputs.scalar_type();
  std::optional<DualLevel> dual;
  if (spec.tangents) dual.emplace();
  const std::int64_t level = dual ? dual->index() : -1;

  std::vector<torch::Tensor> act(n_layers), grad(n_layers), tangent(n_layers);
  pass.f = torch::empty({rows}, inputs.options().dtype(store_dtype));
  if (spec.input_grads) pass.input_grad = torch::empty(points.sizes(), inputs.options().dtype(store_dtype));

  torch::AutoGradMode grad_mode(true);
  for (int64_t start = 0; start < rows; start += chunk) {
    const int64_t len = std::min(chunk, rows - start);
    torch::Tensor x = points.narrow(0, start, len).detach().clone().requires_grad_(true);

    // Tangents come from a forward of their own, without autograd: forward-mode AD through a forward that
    // also records the reverse graph makes the backward carry tangents too (measured ~1.6× the cost of the
    // two passes separately on the example CNN).
    std::vector<torch::Tensor> tangents(n_layers);
    if (spec.tangents) {
      torch::NoGradGuard no_grad;
      const auto dual_input = at::_make_dual(x.detach(), velocity.narrow(0, start, len).contiguous(), level);
      std::size_t seen = 0;
      tapped->forward(dual_input, [&](std::size_t i, const torch::Tensor& y) {
        auto tan = std::get<1>(at::_unpack_dual(y, level));
        tangents[i] = tan.defined() ? tan.clone() : torch::zeros_like(y);
        if (++seen == n_layers) throw StopForward();  // the layers after the deepest tap are not needed
        return y;
      });
    }

    std::vector<torch::Tensor> captured(n_layers);
    const torch::Tensor out = tapped->forward(x, taps::capture(captured));
    const torch::Tensor f = objective(out, all_targets.narrow(0, start, len));
    require_finite(f.detach(), "the model's output F at path points");

    std::vector<torch::Tensor> wrt(captured.begin(), captured.end());
    if (spec.input_grads) wrt.push_back(x);
    auto grads = torch::autograd::grad({f.sum()}, wrt, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    pass.f.narrow(0, start, len).copy_(f.detach());
    for (std::size_t i = 0; i < n_layers; ++i) {
      const torch::Tensor y = captured[i].detach();
      if (!act[i].defined()) {
        auto sizes = y.sizes().vec();
        sizes[0] = rows;
        const auto opts = y.options().dtype(store_dtype);
        act[i] = torch::empty(sizes, opts);
        grad[i] = torch::empty(sizes, opts);
        if (spec.tangents) tangent[i] = torch::empty(sizes, opts);
      }
      act[i].narrow(0, start, len).copy_(y);
      if (grads[i].defined())
        grad[i].narrow(0, start, len).copy_(grads[i]);
      else
        grad[i].narrow(0, start, len).zero_();  // F does not depend on this layer
      if (spec.tangents) tangent[i].narrow(0, start, len).copy_(tangents[i]);
    }
    if (spec.input_grads) {
      const auto& g = grads.back();
      if (g.defined())
        pass.input_grad.narrow(0, start, len).copy_(g);
      else
        pass.input_grad.narrow(0, start, len).zero_();
    }
  }

  if (baseline_rows.defined()) {  // K baseline rows, then B input rows → [2, B] rows
    const auto classes = rows - batch;
    const auto expand = [&](const torch::Tensor& t) {
      return torch::cat({t.narrow(0, 0, classes).index_select(0, baseline_rows), t.narrow(0, classes, batch)});
    };
    pass.f = expand(pass.f);
    for (std::size_t i = 0; i < n_layers; ++i) {
      act[i] = expand(act[i]);
      grad[i] = expand(grad[i]);
    }
  }
  pass.f = pass.f.view({grid, batch});
  if (spec.input_grads) {
    auto sizes = inputs.sizes().vec();
    sizes.insert(sizes.begin(), grid);
    pass.input_grad = pass.input_grad.view(sizes);
  }
  for (std::size_t i = 0; i < n_layers; ++i) {
    auto sizes = act[i].sizes().vec();
    sizes[0] = batch;
    sizes.insert(sizes.begin(), grid);
    LayerPathData data;
    data.act = act[i].view(sizes);
    data.grad = grad[i].view(sizes);
    if (spec.tangents) data.tangent = tangent[i].view(sizes);
    pass.layers.emplace(spec.layers[i], std::move(data));
  }
  return pass;
}

}  // namespace galvani
