// Pathway gradient (Khakzar et al., "Neural Response Interpretation through the Lens of Critical Pathways").
//
//  1. Contributions of every neuron at every tapped layer (by default every ReLU call site; a reused ReLU module
//     counts once per call): NeuronMCT |a·∂F/∂a| (one backward), NeuronIntGrad a·∫₀¹ ∂F(αa; x)/∂a dα with a
//     zero baseline at that layer and the other layers unscaled, or another method's saved layer attributions.
//  2. A pathway: the neurons whose contribution is ≥ the κ-quantile of all contributions of the input
//     (network-wise, or per layer), never a dead one (a = 0); or the paper's pathological greedy pruning.
//  3. The pathway gradient: ∂F/∂x of the restricted model, where off-path neurons are constants equal to their
//     original values (off_path = "constant", the paper's definition) or zero (off_path = "zero").
//
// NeuronIntGrad for all layers shares its passes: the (layer, step, input) samples are laid out layer-major and
// cut into chunks of internal_batch; in a chunk, the tap of layer l scales only the samples of group l, so one
// forward and one backward per chunk serve every layer whose samples it holds.
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>

#include "galvani/galvani.h"
#include "galvani/support.h"
#include "galvani/tap.h"
#include "galvani/tensor_io.h"

namespace galvani::plugins::pathway {
namespace {

using torch::Tensor;

// How a pathway is found: quantile selection on one of three contribution kinds, or greedy pruning.
enum class Kind { Mct, IntGrad, Attributions, Pruning };

const std::vector<std::string>& kind_names() {
  static const std::vector<std::string> names{"mct", "intgrad", "attributions", "greedy-pruning"};
  return names;
}
Kind parse_kind(const std::string& s) {
  const auto& n = kind_names();
  return static_cast<Kind>(std::find(n.begin(), n.end(), s) - n.begin());
}
const std::string& kind_name(Kind k) { return kind_names()[static_cast<std::size_t>(k)]; }

struct Settings {
  Kind kind = Kind::Mct;      // the pathway whose gradient is returned
  std::vector<Kind> compare;  // further pathways, for Jaccard overlap and their dead fraction
  double sparsity = 0.7;      // κ
  bool per_layer = false;
  bool off_path_zero = false;
  std::string reduce = "none";
  int prune_rounds = 10;
  std::string attributions;   // folder holding another run's attributions/<method>/<layer>.pt
};

// [B, ...] per layer ↔ [B, N] over the whole network, layers in tap order.
Tensor flatten_layers(const std::vector<Tensor>& per_layer) {
  std::vector<Tensor> flat;
  for (const auto& t : per_layer) flat.push_back(t.reshape({t.size(0), -1}));
  return torch::cat(flat, 1);
}
std::vector<Tensor> split_layers(const Tensor& flat, const std::vector<Tensor>& like) {
  std::vector<Tensor> out;
  int64_t offset = 0;
  for (const auto& t : like) {
    const int64_t n = t[0].numel();
    out.push_back(flat.narrow(1, offset, n).reshape(t.sizes()));
    offset += n;
  }
  return out;
}

Tensor view_per_sample(const Tensor& v, int64_t dims) {
  std::vector<int64_t> shape(dims, 1);
  shape[0] = v.size(0);
  return v.view(shape);
}

// A tap's fresh tensor (no views, made in the tap) that the backward must reach. Parameters of a loaded model do
// not require grad and the input need not: where nothing upstream is tracked, the tensor becomes a leaf, which
// leaves every gradient downstream of it unchanged.
Tensor tracked(Tensor fresh) {
  if (!fresh.requires_grad()) fresh.requires_grad_(true);
  return fresh;
}

// Every ReLU of the graph (module calls and functional relu alike) as taps: an op-tapped forward seen through the
// TappedForward interface, tap index = position in `sites`.
class ReluSitesForward : public TappedForward {
 public:
  ReluSitesForward(std::vector<std::string> names, std::shared_ptr<const OpTappedForward> forward)
      : names_(std::move(names)), forward_(std::move(forward)) {
    const auto& sites = forward_->sites();
    for (std::size_t i = 0; i < sites.size(); ++i) index_[sites[i]] = i;
  }
  const std::vector<std::string>& layers() const override { return names_; }
  Tensor forward(const Tensor& input, const TapFn& tap) const override {
    const TapFn no_layer_taps = [](std::size_t, const Tensor& y) { return y; };
    return forward_->forward(input, no_layer_taps, [&](std::size_t site, const Tensor& y, const std::vector<Tensor>&) {
      return tap(index_.at(site), y);
    });
  }

 private:
  std::vector<std::string> names_;
  std::shared_ptr<const OpTappedForward> forward_;
  std::map<std::size_t, std::size_t> index_;
};

// The ReLU op sites of a model, named like layers: the module path of a ReLU module's call (`layer1.0.relu`,
// `#k` per call when it is called several times), and `<module>:relu` for a functional relu inside a module's
// forward (`:relu` at the root; also `#k` when one forward calls it several times). Empty when the backend
// lists no operations.
std::pair<std::vector<std::string>, std::vector<std::size_t>> relu_sites(const Model& model) {
  if (!model.capabilities().operations) return {};
  const std::vector<OpSite> ops = model.operations();
  std::map<std::string, std::string> module_types;
  for (const auto& l : model.layers()) module_types[l.module] = l.type;
  std::vector<std::string> names;
  std::vector<std::size_t> sites;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].op != "aten::relu") continue;
    const auto it = module_types.find(ops[i].location);
    const bool module_call = it != module_types.end() && it->second == "ReLU";
    names.push_back(module_call ? ops[i].location : ops[i].location + ":relu");
    sites.push_back(i);
  }
  std::map<std::string, int> calls, seen;
  for (const auto& n : names) ++calls[n];
  for (auto& n : names)
    if (calls[n] > 1) n += "#" + std::to_string(seen[n]++);
  return {names, sites};
}

// One shard: the model at x with every tapped layer's activation and its gradient.
struct Shard {
  const MethodContext& ctx;
  const TappedForward& tapped;
  Tensor x, targets;
  std::vector<Tensor> act, grad;  // [B, *layer shape], detached
  Tensor f;                       // F(x): [B]
  torch::ScalarType acc = torch::kFloat;
  std::size_t layers() const { return act.size(); }
  int64_t batch() const { return x.size(0); }
  int64_t chunk() const {
    return ctx.internal_batch() > 0 ? ctx.internal_batch() : default_internal_batch(x[0].numel(), x.device());
  }
};

Shard original_pass(const MethodContext& ctx, const TappedForward& tapped) {
  Shard s{ctx, tapped, ctx.inputs(), ctx.targets(), {}, {}, {}, ctx.double_precision() ? torch::kDouble : ctx.inputs().scalar_type()};
  torch::AutoGradMode grad_mode(true);
  std::vector<Tensor> captured(tapped.layers().size());
  const auto out = tapped.forward(s.x.detach(), [&](std::size_t i, const Tensor& y) {
    captured[i] = tracked(y.clone());
    return captured[i].clone();  // held for the gradient: nothing downstream may write into it
  });
  const auto f = ctx.objective()(out, s.targets);
  ctx.provide_outputs(f.detach(), {});  // F(x) of the unrestricted model: the host need not run it again
  auto grads = torch::autograd::grad({f.sum()}, captured, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
  for (std::size_t i = 0; i < captured.size(); ++i) {
    s.act.push_back(captured[i].detach());
    // A layer F does not depend on (an unused branch) has gradient zero.
    s.grad.push_back(grads[i].defined() ? grads[i].detach() : torch::zeros_like(s.act.back()));
  }
  s.f = f.detach();
  return s;
}

// The shared passes of NeuronIntGrad and of its completeness check. Samples are ordered (layer group l, factor r,
// input b), R factors per group; in a sample of group l, layer l's output is multiplied by its factor and every
// other layer runs unchanged. Chunks of internal_batch samples; per chunk `visit(start, len, g0, g1, z, f)` gets
// the scaled outputs z[l] (in the autograd graph when grad mode is on) of the groups g0..g1 the chunk holds.
template <class Visit>
void grouped_passes(const Shard& s, const Tensor& factors, Visit&& visit) {
  const int64_t B = s.batch(), R = factors.size(0), per_group = R * B;
  const int64_t L = static_cast<int64_t>(s.layers()), total = L * per_group, chunk = s.chunk();
  const auto longs = torch::TensorOptions().dtype(torch::kLong).device(s.x.device());
  for (int64_t start = 0; start < total; start += chunk) {
    const int64_t len = std::min(chunk, total - start);
    const int64_t g0 = start / per_group, g1 = (start + len - 1) / per_group;
    const auto idx = torch::arange(start, start + len, longs);
    const auto rem = idx.remainder(per_group);
    const auto b = rem.remainder(B);
    const auto scale_all = factors.index_select(0, rem.div(B, "floor"));
    std::vector<Tensor> z(s.layers());
    const TapFn tap = [&](std::size_t i, const Tensor& y) -> Tensor {
      const auto l = static_cast<int64_t>(i);
      if (l < g0 || l > g1) return y.clone();
      const int64_t lo = std::max(start, l * per_group) - start, hi = std::min(start + len, (l + 1) * per_group) - start;
      auto scale = torch::ones({len}, y.options());
      scale.narrow(0, lo, hi - lo).copy_(scale_all.narrow(0, lo, hi - lo));
      z[i] = tracked(y * view_per_sample(scale, y.dim()));
      return z[i].clone();  // held for the gradient: nothing downstream may write into it
    };
    const auto out = s.tapped.forward(s.x.index_select(0, b), tap);
    const auto f = s.ctx.objective()(out, s.targets.index_select(0, b));
    visit(start, len, g0, g1, per_group, b, rem, z, f);
  }
}

struct IntGrad {
  std::vector<Tensor> contributions;  // [B, *layer shape] per layer
  Tensor delta;                       // Σ contributions of layer l − (F(x) − F(x; aˡ ← 0)): [B, L]
};

IntGrad neuron_intgrad(const Shard& s) {
  const auto quad = s.ctx.path().quadrature(s.ctx.steps());
  const auto dopt = torch::TensorOptions().dtype(torch::kDouble);
  const auto alphas = torch::tensor(quad.alphas, dopt).to(s.x.device(), s.x.scalar_type());
  const auto weights = torch::tensor(quad.weights, dopt).to(s.x.device(), s.acc);
  const int64_t B = s.batch();
  std::vector<Tensor> acc;
  for (const auto& a : s.act) acc.push_back(torch::zeros_like(a, a.options().dtype(s.acc)));
  {
    torch::AutoGradMode grad_mode(true);
    grouped_passes(s, alphas, [&](int64_t start, int64_t len, int64_t g0, int64_t g1, int64_t per_group,
                                  const Tensor& b, const Tensor& rem, const std::vector<Tensor>& z, const Tensor& f) {
      std::vector<Tensor> inputs(z.begin() + g0, z.begin() + g1 + 1);
      const auto grads = torch::autograd::grad({f.sum()}, inputs, {}, false, false, /*allow_unused=*/true);
      for (int64_t l = g0; l <= g1; ++l) {
        const auto& g = grads[l - g0];
        if (!g.defined()) continue;
        const int64_t lo = std::max(start, l * per_group) - start, hi = std::min(start + len, (l + 1) * per_group) - start;
        const auto w = weights.index_select(0, rem.narrow(0, lo, hi - lo).div(B, "floor"));
        const auto term = g.narrow(0, lo, hi - lo).to(s.acc) * view_per_sample(w, g.dim());
        acc[l].index_add_(0, b.narrow(0, lo, hi - lo), term);
      }
    });
  }
  IntGrad r;
  for (std::size_t l = 0; l < s.layers(); ++l) r.contributions.push_back(s.act[l].to(s.acc) * acc[l]);

  // F(x; aˡ ← 0) for every layer l, in one no-grad pass of L·B samples.
  const int64_t L = static_cast<int64_t>(s.layers());
  auto f_zero = torch::empty({L * B}, s.x.options().dtype(s.acc));
  {
    torch::NoGradGuard no_grad;
    grouped_passes(s, torch::zeros({1}, s.x.options()),
                   [&](int64_t start, int64_t len, int64_t, int64_t, int64_t, const Tensor&, const Tensor&,
                       const std::vector<Tensor>&, const Tensor& f) { f_zero.narrow(0, start, len).copy_(f); });
  }
  const auto change = s.f.to(s.acc).unsqueeze(1) - f_zero.view({L, B}).t();
  r.delta = flatten_layers(r.contributions).new_empty({B, L});
  for (int64_t l = 0; l < L; ++l)
    r.delta.select(1, l).copy_(r.contributions[l].reshape({B, -1}).sum(1) - change.select(1, l));
  return r;
}

std::vector<Tensor> neuron_mct(const Shard& s) {
  std::vector<Tensor> c;
  for (std::size_t l = 0; l < s.layers(); ++l) c.push_back((s.act[l].to(s.acc) * s.grad[l].to(s.acc)).abs());
  return c;
}

// A pathway: a mask per layer (bool, [B, *layer shape]) and, for quantile selections, the threshold c_κ
// ([B] network-wise, [B, L] per layer).
struct Pathway {
  std::vector<Tensor> masks;
  Tensor threshold;
};

// Keeps c ≥ c_κ, the κ-quantile of the contributions (the ⌊κ(n−1)⌋-th smallest of n, so κ = 0 keeps every
// neuron). Ties at c_κ are all kept. Dead neurons are never kept, whatever their contribution: when c_κ ≤ 0
// (many zeros) a dead neuron's c = 0 would pass the test, but it carries nothing in the original network.
Pathway select_quantile(const Shard& s, const std::vector<Tensor>& contributions, double kappa, bool per_layer) {
  const auto quantile = [&](const Tensor& c) {
    const int64_t n = c.size(1);
    const auto k = static_cast<int64_t>(std::floor(kappa * static_cast<double>(n - 1))) + 1;
    return std::get<0>(c.kthvalue(std::min(k, n), 1, /*keepdim=*/true));
  };
  Pathway p;
  if (per_layer) {
    std::vector<Tensor> thresholds;
    for (std::size_t l = 0; l < s.layers(); ++l) {
      const auto c = contributions[l].reshape({s.batch(), -1});
      const auto t = quantile(c);
      thresholds.push_back(t);
      p.masks.push_back(((c >= t) & (s.act[l].reshape({s.batch(), -1}) != 0)).reshape(s.act[l].sizes()));
    }
    p.threshold = torch::cat(thresholds, 1);
  } else {
    const auto c = flatten_layers(contributions);
    const auto t = quantile(c);
    p.masks = split_layers((c >= t) & (flatten_layers(s.act) != 0), s.act);
    p.threshold = t.squeeze(1);
  }
  return p;
}

// Pathological greedy pruning (the paper's Algorithm 1), first-order and in rounds. Starting from the whole
// network, removing a neuron sets it to zero (the masked network m·a); the algorithm removes the neuron whose
// removal least decreases (or most increases) F until a fraction κ of all neurons is removed. Evaluating every
// candidate removal exactly costs one forward per neuron per removal; instead each round takes one forward and
// one backward of the current masked network and estimates the effect of removing j as −zⱼ·∂F/∂zⱼ (z = m·a, the
// first-order Taylor term), then removes the ⌈remaining/rounds left⌉ neurons with the smallest zⱼ·∂F/∂zⱼ (a
// stable sort: ties, such as neurons that are zero in the masked network, go in index order). With
// prune_rounds = number of neurons to remove it is the one-at-a-time greedy algorithm with Taylor estimates.
// Neurons that are dead in the original network can survive (they cost nothing to keep, and pruning others can
// revive them), which is the paper's finding.
Pathway greedy_pruning(const Shard& s, double kappa, int rounds) {
  const int64_t B = s.batch();
  auto keep = torch::ones({B, flatten_layers(s.act).size(1)}, s.x.options());
  const int64_t n = keep.size(1);
  const auto target = static_cast<int64_t>(std::floor(kappa * static_cast<double>(n)));
  int64_t removed = 0;
  auto removed_mask = torch::zeros({B, n}, keep.options().dtype(torch::kBool));
  for (int r = 0; r < rounds && removed < target; ++r) {
    const int64_t step = (target - removed + (rounds - r) - 1) / (rounds - r);
    const auto masks = split_layers(keep, s.act);
    std::vector<Tensor> z(s.layers());
    torch::AutoGradMode grad_mode(true);
    const auto out = s.tapped.forward(s.x.detach(), [&](std::size_t i, const Tensor& y) {
      z[i] = tracked(y * masks[i]);
      return z[i].clone();
    });
    const auto f = s.ctx.objective()(out, s.targets);
    const auto grads = torch::autograd::grad({f.sum()}, z, {}, false, false, /*allow_unused=*/true);
    std::vector<Tensor> scores;
    for (std::size_t l = 0; l < z.size(); ++l)
      scores.push_back(grads[l].defined() ? (z[l] * grads[l]).detach().to(torch::kDouble)
                                          : torch::zeros_like(z[l], z[l].options().dtype(torch::kDouble)));
    auto score = flatten_layers(scores).masked_fill_(removed_mask, std::numeric_limits<double>::infinity());
    const auto order = std::get<1>(score.sort(/*stable=*/true, /*dim=*/1, /*descending=*/false)).narrow(1, 0, step);
    keep.scatter_(1, order, 0.0);
    removed_mask.scatter_(1, order, true);
    removed += step;
  }
  Pathway p;
  p.masks = split_layers(~removed_mask, s.act);
  return p;
}

// ∂F/∂x of the restricted model at x: on-path neurons as they are, off-path ones constant (no gradient) or zero.
Tensor pathway_gradient(const Shard& s, const std::vector<Tensor>& masks, bool off_path_zero) {
  torch::AutoGradMode grad_mode(true);
  const auto x = s.x.detach().requires_grad_(true);
  const auto out = s.tapped.forward(x, [&](std::size_t i, const Tensor& y) -> Tensor {
    const auto m = masks[i].to(y.scalar_type());
    return off_path_zero ? y * m : y * m + y.detach() * (1 - m);
  });
  const auto f = s.ctx.objective()(out, s.targets);
  const auto g = torch::autograd::grad({f.sum()}, {x}, {}, false, false, /*allow_unused=*/true)[0];
  return g.defined() ? g : torch::zeros_like(x);
}

Tensor count(const Tensor& mask) { return mask.reshape({mask.size(0), -1}).sum(1).to(torch::kDouble); }

class PathwayGradient : public Method {
 public:
  explicit PathwayGradient(Settings settings) : s_(std::move(settings)) {}

  MethodNeeds needs() const override { return {}; }  // its own passes
  bool needs_layers() const override { return false; }

  // Before any shard: the pathway's layers exist (given, or the model's ReLUs), `reduce` fits the inputs.
  void validate(const MethodPlan& plan) const override {
    (void)prepared(*plan.model, plan.layers);
    check_reduce(static_cast<std::int64_t>(plan.input_shape.size()) + 1);
  }

  std::vector<Attribution> attribute(const MethodContext& ctx, const std::vector<std::string>& given) const override {
    const auto [layers, tapped] = prepared(ctx.model(), given);
    const Shard shard = original_pass(ctx, *tapped);
    const int64_t B = shard.batch();

    std::map<Kind, Pathway> pathways;
    std::map<Kind, std::vector<Tensor>> contributions;
    Tensor intgrad_delta;
    std::vector<Kind> kinds{s_.kind};
    kinds.insert(kinds.end(), s_.compare.begin(), s_.compare.end());
    for (const Kind k : kinds) {
      if (pathways.count(k)) continue;
      if (k == Kind::Pruning) {
        pathways[k] = greedy_pruning(shard, s_.sparsity, s_.prune_rounds);
        continue;
      }
      if (k == Kind::Mct) contributions[k] = neuron_mct(shard);
      if (k == Kind::Attributions) contributions[k] = saved_attributions(shard, layers);
      if (k == Kind::IntGrad) {
        auto ig = neuron_intgrad(shard);
        contributions[k] = std::move(ig.contributions);
        intgrad_delta = ig.delta;
      }
      pathways[k] = select_quantile(shard, contributions[k], s_.sparsity, s_.per_layer);
    }
    const Pathway& main = pathways.at(s_.kind);

    Attribution a;
    a.layer = "input";
    a.space = Space::Input;
    a.values = reduce(pathway_gradient(shard, main.masks, s_.off_path_zero));
    const auto dead = flatten_layers(shard.act) == 0;
    const auto dead_fraction = [&](const Pathway& p) {
      const auto selected = flatten_layers(p.masks);
      return count(selected & dead) / count(selected).clamp_min(1);
    };
    auto sparsity = torch::empty({B, static_cast<int64_t>(layers.size())}, torch::kDouble);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      a.extras["mask." + layers[l]] = main.masks[l].to(shard.x.scalar_type());
      sparsity.select(1, static_cast<int64_t>(l)).copy_(1 - count(main.masks[l]).cpu() / static_cast<double>(shard.act[l][0].numel()));
      if (contributions.count(s_.kind)) a.extras["contribution." + layers[l]] = contributions.at(s_.kind)[l];
    }
    a.extras["sparsity"] = sparsity.to(shard.x.device());
    a.extras["dead_fraction"] = dead_fraction(main);
    if (main.threshold.defined()) a.extras["threshold"] = main.threshold;
    if (intgrad_delta.defined()) a.extras["intgrad_delta"] = intgrad_delta;
    const auto main_flat = flatten_layers(main.masks);
    for (const Kind k : s_.compare) {
      if (k == s_.kind) continue;
      const auto other = flatten_layers(pathways.at(k).masks);
      const auto uni = count(main_flat | other);
      // Two empty pathways are the same pathway.
      a.extras["jaccard." + kind_name(k)] = torch::where(uni > 0, count(main_flat & other) / uni.clamp_min(1),
                                                         torch::ones_like(uni));
      a.extras["dead_fraction." + kind_name(k)] = dead_fraction(pathways.at(k));
    }
    std::string order;
    for (const auto& l : layers) order += (order.empty() ? "" : ", ") + l;
    a.notes.push_back("pathway-gradient: columns of sparsity" + std::string(intgrad_delta.defined() ? " and intgrad_delta" : "") +
                      " follow the layers " + order);
    return {a};
  }

 private:
  // The layers and their tapped forward. Nothing is kept here between calls: one method instance explains
  // several models over its life (randomization-sanity reruns it on randomised copies, which may reuse a freed
  // model's address), and the backend already memoises its rewritten forwards per model.
  static std::pair<std::vector<std::string>, std::shared_ptr<const TappedForward>> prepared(
      const Model& model, const std::vector<std::string>& given) {
    if (given.empty()) {
      auto [names, sites] = relu_sites(model);
      if (!names.empty()) {
        // Not `return {names, make_shared(std::move(names), ...)}`: pair's forwarding constructor would bind
        // `names` by reference and copy it only after the move emptied it.
        std::shared_ptr<const TappedForward> forward =
            std::make_shared<ReluSitesForward>(names, model.op_tapped({}, sites));
        return {std::move(names), std::move(forward)};
      }
    }
    auto names = given.empty() ? relu_call_sites(model) : given;
    auto forward = model.tapped(names);
    return {std::move(names), std::move(forward)};
  }

  // Backends without op listing: the ReLU modules' call sites.
  static std::vector<std::string> relu_call_sites(const Model& model) {
    std::vector<std::string> names;
    for (const auto& l : model.layers())
      if (l.type == "ReLU") names.push_back(l.name);
    if (names.empty())
      throw ConfigError("pathway-gradient: the model has no ReLU modules; give `layers` (`galvani layers <model>` lists "
                        "them), e.g. the activations whose neurons form the pathway");
    return names;
  }

  // reduce = "sum" / "max-abs" sums over a channel dimension: inputs need [B, C, ...].
  void check_reduce(std::int64_t input_dims) const {
    if (s_.reduce != "none" && input_dims < 3)
      throw ShapeError("pathway-gradient: reduce = \"" + s_.reduce + "\" needs inputs with a channel dimension [B, C, ...]; "
                       "the inputs have " + std::to_string(input_dims) + " dimensions (use reduce = \"none\")");
  }

  Tensor reduce(const Tensor& g) const {
    if (s_.reduce == "none") return g;
    check_reduce(g.dim());
    return s_.reduce == "sum" ? g.sum(1, true) : g.abs().amax(1, true);
  }

  // The layer attributions of another run, attributions/<method>/<layer>.pt ([N, *layer shape] over the whole
  // input set, unit = "neuron"); this shard's rows start at ctx.offset(). Each file is read once per method.
  std::vector<Tensor> saved_attributions(const Shard& s, const std::vector<std::string>& layers) const {
    std::vector<Tensor> out;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto file = (std::filesystem::path(s_.attributions) / (layer_file_name(layers[l]) + ".pt")).string();
      Tensor all;
      {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        auto it = cache_.find(file);
        if (it == cache_.end()) it = cache_.emplace(file, load_tensor(file)).first;
        all = it->second;
      }
      const auto offset = s.ctx.offset();
      const auto layer_shape = s.act[l].sizes().slice(1);
      if (all.dim() != s.act[l].dim() || all.sizes().slice(1) != layer_shape || all.size(0) < offset + s.batch())
        throw ShapeError("pathway-gradient: attributions '" + file + "' has shape " + shape_string(all.sizes()) +
                         "; layer '" + layers[l] + "' needs [N, " + shape_string(layer_shape).substr(1) +
                         " with N ≥ " + std::to_string(offset + s.batch()) +
                         " (save them with unit = \"neuron\" over the same inputs)");
      out.push_back(all.narrow(0, offset, s.batch()).to(s.x.device(), s.acc));
    }
    return out;
  }

  Settings s_;
  mutable std::mutex cache_mutex_;
  mutable std::map<std::string, Tensor> cache_;
};

std::unique_ptr<Method> make(const Options& o) {
  Settings s;
  const auto contribution = o.get_choice("contribution", "mct", {"mct", "intgrad", "attributions"});
  const auto selection = o.get_choice("selection", "quantile", {"quantile", "greedy-pruning"});
  if (selection == "greedy-pruning" && o.has("contribution"))
    throw ConfigError(o.key_path("contribution") + ": greedy pruning selects without contributions; remove it, or use "
                      "selection = \"quantile\" (compare = [\"greedy-pruning\"] compares the two)");
  s.kind = selection == "greedy-pruning" ? Kind::Pruning : parse_kind(contribution);
  for (const auto& k : o.get_strings("compare", {})) {
    if (std::find(kind_names().begin(), kind_names().end(), k) == kind_names().end())
      throw ConfigError(o.key_path("compare") + ": unknown pathway kind \"" + k +
                        "\"; use \"mct\", \"intgrad\", \"attributions\" or \"greedy-pruning\"");
    s.compare.push_back(parse_kind(k));
  }
  s.sparsity = o.get_double_in("sparsity", 0.7, 0.0, 1.0);
  s.per_layer = o.get_bool("per_layer", false);
  if (s.per_layer && s.kind == Kind::Pruning)
    throw ConfigError(o.key_path("per_layer") + ": greedy pruning removes neurons network-wise; per_layer applies to "
                      "selection = \"quantile\" only");
  s.off_path_zero = o.get_choice("off_path", "constant", {"constant", "zero"}) == "zero";
  s.reduce = o.get_choice("reduce", "none", {"none", "sum", "max-abs"});
  s.prune_rounds = static_cast<int>(o.get_int_in("prune_rounds", 10, 1, 1 << 24));
  s.attributions = o.get_path("attributions", "");
  const bool uses_attributions =
      s.kind == Kind::Attributions || std::count(s.compare.begin(), s.compare.end(), Kind::Attributions) > 0;
  if (uses_attributions && s.attributions.empty())
    throw ConfigError(o.key_path("attributions") + ": contribution \"attributions\" needs the folder of another "
                      "run's layer attributions, e.g. attributions = \"out/attributions/conductance\"");
  if (!uses_attributions && !s.attributions.empty())
    throw ConfigError(o.key_path("attributions") + ": only used with contribution = \"attributions\" (or in compare)");
  return std::make_unique<PathwayGradient>(std::move(s));
}

}  // namespace
}  // namespace galvani::plugins::pathway

GALVANI_PLUGIN("pathway-gradient", "0.1.0", [](galvani::Registrar& r) {
  r.add_method("pathway-gradient",
               "gradient of the critical pathway (Khakzar et al.): contribution = mct|intgrad|attributions, "
               "sparsity κ, selection = quantile|greedy-pruning, off_path = constant|zero; masks, sparsity, dead "
               "fraction and Jaccard as extras",
               galvani::plugins::pathway::make);
})
