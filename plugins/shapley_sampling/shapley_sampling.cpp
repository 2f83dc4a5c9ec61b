// Shapley values of the units of a layer. The game: v(S) = F(tail(a_S)), where a_S keeps the units in S at
// their activation on x and every other unit at the reference activation (that of the baseline input, or zero).
//  - Estimator: permutation sampling. Along a permutation π the coalitions ∅ ⊂ {π₁} ⊂ … ⊂ all are evaluated and
//    unit πₖ gets v(S_k) − v(S_{k−1}); the sum over one permutation telescopes to v(all) − v(∅), so efficiency
//    holds for every estimate. With `antithetic` each permutation comes with its reverse and a sample is the
//    mean of the pair (a unit early in π is late in its reverse, which cancels much of the position effect).
//  - Only the network after the layer runs per coalition (Model::tail); the head runs once per input.
//    Coalitions of all inputs of a shard are batched into chunks of `internal_batch` rows.
//  - Exact Shapley values by enumerating all 2^U coalitions for U ≤ 12 units.
// Coalition activations are written on the CPU with plain memory copies (row k of a permutation is row k − 1
// with one more unit switched to x), the cheapest way to fill them; on another device each chunk is then
// copied over once.
#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>

#include "galvani/galvani.h"

namespace galvani::plugins::shapley {
namespace {

enum class Grouping { Neuron, Filter, Layer, Groups };

constexpr std::int64_t kMaxExactUnits = 12;

struct Settings {
  Grouping grouping = Grouping::Neuron;
  torch::Tensor groups;  // as loaded from `groups` (CPU)
  std::string groups_path;
  bool reference_baseline = true;
  bool exact = false;
  std::int64_t max_permutations = 64;
  double target_se = 0.0;
  bool target_relative = false;
  bool antithetic = true;
  std::int64_t check_every = 16;
  std::uint64_t seed = 0;
};

// A contiguous range of flat layer elements.
struct Run {
  std::int64_t start, len;
};

// The players of the game: the element ranges each unit owns, and the shape of one input's values.
struct Players {
  std::vector<std::vector<Run>> runs;
  std::vector<std::int64_t> value_shape;
  std::int64_t count() const { return static_cast<std::int64_t>(runs.size()); }
};

// Group labels (one per flat element, in [0, G)) from the `groups` tensor: either integer labels with the
// layer's shape, or G 0/1 masks [G, *layer shape] that together cover every element exactly once.
std::vector<std::int64_t> group_labels(const Settings& s, const std::string& layer, at::IntArrayRef layer_shape,
                                       std::int64_t numel) {
  const auto& g = s.groups;
  const std::string what = "groups: '" + s.groups_path + "' (" + c10::toString(g.scalar_type()) + ", shape " + shape_string(g.sizes()) + ")";
  const std::string expected = " for layer '" + layer + "' of shape " + shape_string(layer_shape) +
                               ": give integer group ids with the layer's shape, or 0/1 masks [G, " +
                               shape_string(layer_shape).substr(1);
  torch::Tensor labels;
  if (!at::isFloatingType(g.scalar_type()) && g.scalar_type() != torch::kBool) {
    if (g.sizes() != layer_shape) throw ShapeError(what + " does not fit" + expected);
    labels = g.to(torch::kLong).reshape({-1});
    if (labels.numel() > 0 && labels.min().item<std::int64_t>() < 0)
      throw ConfigError(what + " holds negative group ids; every element needs a group id ≥ 0");
  } else {
    if (g.dim() != static_cast<std::int64_t>(layer_shape.size()) + 1 || g.sizes().slice(1) != layer_shape)
      throw ShapeError(what + " does not fit" + expected);
    const auto masks = g.to(torch::kDouble).reshape({g.size(0), -1});
    if (!torch::logical_or(masks == 0, masks == 1).all().item<bool>())
      throw ConfigError(what + " holds values other than 0 and 1; masks select the elements of each group");
    if (!(masks.sum(0) == 1).all().item<bool>())
      throw ConfigError(what + ": every element of the layer must be in exactly one group (mask sums over groups "
                               "must be 1)");
    labels = masks.argmax(0);
  }
  const auto flat = labels.contiguous();
  std::vector<std::int64_t> out(flat.data_ptr<std::int64_t>(), flat.data_ptr<std::int64_t>() + numel);
  return out;
}

Players make_players(const Settings& s, const std::string& layer, at::IntArrayRef layer_shape) {
  std::int64_t numel = 1;
  for (auto d : layer_shape) numel *= d;
  Players p;
  switch (s.grouping) {
    case Grouping::Neuron:
      for (std::int64_t j = 0; j < numel; ++j) p.runs.push_back({{j, 1}});
      p.value_shape = layer_shape.vec();
      break;
    case Grouping::Filter: {
      if (layer_shape.empty()) throw ShapeError("unit = \"filter\": layer '" + layer + "' has no channel dimension");
      const auto channels = layer_shape[0];
      const auto per = numel / channels;
      for (std::int64_t c = 0; c < channels; ++c) p.runs.push_back({{c * per, per}});
      p.value_shape = {channels};
      break;
    }
    case Grouping::Layer:
      p.runs.push_back({{0, numel}});
      p.value_shape = {1};
      break;
    case Grouping::Groups: {
      const auto labels = group_labels(s, layer, layer_shape, numel);
      const auto count = numel == 0 ? 0 : *std::max_element(labels.begin(), labels.end()) + 1;
      p.runs.resize(static_cast<std::size_t>(count));
      for (std::int64_t j = 0; j < numel; ++j) {
        auto& r = p.runs[static_cast<std::size_t>(labels[j])];
        if (!r.empty() && r.back().start + r.back().len == j)
          ++r.back().len;
        else
          r.push_back({j, 1});
      }
      for (std::int64_t u = 0; u < count; ++u)
        if (p.runs[u].empty())
          throw ConfigError("groups: '" + s.groups_path + "' has no element in group " + std::to_string(u) +
                            " (ids must run from 0 to G − 1 without gaps)");
      p.value_shape = {count};
      break;
    }
  }
  return p;
}

// The game on one shard at one layer: writes coalition activations and evaluates v on them in chunks.
class Game {
 public:
  Game(const MethodContext& ctx, const TailForward& tail, const Players& players, const torch::Tensor& act,
       const torch::Tensor& ref, std::int64_t chunk)
      : ctx_(ctx), tail_(tail), players_(players), layer_shape_(act.sizes().slice(1).vec()),
        a_(act.reshape({act.size(0), -1}).to(torch::kCPU).contiguous()),
        r_(ref.reshape({ref.size(0), -1}).to(torch::kCPU).contiguous()), chunk_(chunk),
        elem_(a_.element_size()), row_bytes_(static_cast<std::size_t>(a_.size(1)) * elem_) {}

  std::size_t row_bytes() const { return row_bytes_; }
  const char* act_row(std::int64_t b) const { return static_cast<const char*>(a_.data_ptr()) + b * row_bytes_; }
  const char* ref_row(std::int64_t b) const { return static_cast<const char*>(r_.data_ptr()) + b * row_bytes_; }
  /// Switches unit `u` of a coalition row of input `b` to its activation on x.
  void add(char* row, std::int64_t b, std::int64_t u) const {
    const char* src = act_row(b);
    for (const auto& run : players_.runs[static_cast<std::size_t>(u)]) {
      const auto off = static_cast<std::size_t>(run.start) * elem_;
      std::memcpy(row + off, src + off, static_cast<std::size_t>(run.len) * elem_);
    }
  }

  /// v on `count` coalitions. `fill(i, row, previous)` writes coalition i's activation into `row`; `previous`
  /// is coalition i − 1's row when that is in the same chunk (fill may start from it), else null.
  /// `input_of(i)` is the input the coalition belongs to.
  std::vector<double> values(std::int64_t count, const std::function<std::int64_t(std::int64_t)>& input_of,
                             const std::function<void(std::int64_t, char*, const char*)>& fill) const {
    std::vector<double> v(static_cast<std::size_t>(count));
    if (count == 0) return v;
    const auto device = ctx_.inputs().device();
    auto buffer = torch::empty({std::min(chunk_, count), a_.size(1)}, a_.options());
    auto rows = torch::empty({buffer.size(0)}, torch::TensorOptions().dtype(torch::kLong));
    for (std::int64_t start = 0; start < count; start += chunk_) {
      const auto len = std::min(chunk_, count - start);
      char* base = static_cast<char*>(buffer.data_ptr());
      auto* input = rows.data_ptr<std::int64_t>();
      for (std::int64_t i = 0; i < len; ++i) {
        fill(start + i, base + i * row_bytes_, i > 0 ? base + (i - 1) * row_bytes_ : nullptr);
        input[i] = input_of(start + i);
      }
      std::vector<std::int64_t> shape{len};
      shape.insert(shape.end(), layer_shape_.begin(), layer_shape_.end());
      const auto act = buffer.narrow(0, 0, len).view(shape).to(device);
      const auto idx = rows.narrow(0, 0, len).to(device);
      const auto x = tail_.needs_input() ? ctx_.inputs().index_select(0, idx) : torch::Tensor();
      const auto f = ctx_.objective()(tail_.forward(act, x), ctx_.targets().index_select(0, idx));
      const auto fd = f.to(torch::kCPU, torch::kDouble).contiguous();
      std::copy(fd.data_ptr<double>(), fd.data_ptr<double>() + len, v.begin() + start);
    }
    return v;
  }

 private:
  const MethodContext& ctx_;
  const TailForward& tail_;
  const Players& players_;
  std::vector<std::int64_t> layer_shape_;
  torch::Tensor a_, r_;  // [B, N] on the CPU, in the activation's dtype
  std::int64_t chunk_;
  std::size_t elem_, row_bytes_;
};

// Per-input estimates, [B, U] row-major, and the number of permutations each input used.
struct Estimates {
  std::vector<double> phi, se;
  std::vector<std::int64_t> permutations;
  std::vector<double> v_all, v_none;
};

std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform in [0, n) from a 64-bit draw (multiply-shift): the same on every standard library, unlike
// std::uniform_int_distribution.
std::uint64_t below(std::mt19937_64& rng, std::uint64_t n) {
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(rng()) * n) >> 64);
}

Estimates exact(const Game& game, std::int64_t batch, std::int64_t units) {
  const std::int64_t subsets = std::int64_t{1} << units;
  const auto v = game.values(
      batch * subsets, [&](std::int64_t i) { return i / subsets; },
      [&](std::int64_t i, char* row, const char*) {
        const auto b = i / subsets, m = i % subsets;
        std::memcpy(row, game.ref_row(b), game.row_bytes());
        for (std::int64_t u = 0; u < units; ++u)
          if (m >> u & 1) game.add(row, b, u);
      });
  // Weight of a coalition of size s not holding the unit: s!·(U − s − 1)!/U!.
  std::vector<double> weight(static_cast<std::size_t>(units));
  for (std::int64_t s = 0; s < units; ++s) {
    double w = 1.0 / static_cast<double>(units);
    for (std::int64_t j = 1; j <= s; ++j) w *= static_cast<double>(j) / static_cast<double>(units - j);
    weight[s] = w;
  }
  double factorial = 1;
  for (std::int64_t j = 2; j <= units; ++j) factorial *= static_cast<double>(j);
  Estimates e;
  e.phi.assign(static_cast<std::size_t>(batch * units), 0.0);
  e.se.assign(e.phi.size(), 0.0);
  e.permutations.assign(static_cast<std::size_t>(batch), static_cast<std::int64_t>(factorial));
  for (std::int64_t b = 0; b < batch; ++b) {
    const double* vb = v.data() + b * subsets;
    e.v_none.push_back(vb[0]);
    e.v_all.push_back(vb[subsets - 1]);
    for (std::int64_t u = 0; u < units; ++u) {
      double sum = 0;
      for (std::int64_t m = 0; m < subsets; ++m)
        if (!(m >> u & 1)) sum += weight[std::popcount(static_cast<std::uint64_t>(m))] * (vb[m | (1LL << u)] - vb[m]);
      e.phi[b * units + u] = sum;
    }
  }
  return e;
}

Estimates sample(const Game& game, const Settings& s, std::int64_t batch, std::int64_t units, std::int64_t offset) {
  Estimates e;
  // v(all) and v(∅) once per input: every permutation starts and ends there.
  const auto ends = game.values(
      2 * batch, [](std::int64_t i) { return i / 2; },
      [&](std::int64_t i, char* row, const char*) {
        std::memcpy(row, i % 2 == 0 ? game.act_row(i / 2) : game.ref_row(i / 2), game.row_bytes());
      });
  for (std::int64_t b = 0; b < batch; ++b) {
    e.v_all.push_back(ends[2 * b]);
    e.v_none.push_back(ends[2 * b + 1]);
  }
  std::vector<std::mt19937_64> rng;
  for (std::int64_t b = 0; b < batch; ++b)
    rng.emplace_back(splitmix64(splitmix64(s.seed) ^ static_cast<std::uint64_t>(offset + b)));

  // Running mean and M2 (Welford) per unit over samples: a permutation, or an antithetic pair.
  std::vector<double> mean(static_cast<std::size_t>(batch * units), 0.0), m2(mean.size(), 0.0);
  std::vector<std::int64_t> samples(static_cast<std::size_t>(batch), 0);
  e.permutations.assign(static_cast<std::size_t>(batch), 0);
  auto se_of = [&](std::int64_t b, std::int64_t u) {
    const auto n = static_cast<double>(samples[b]);
    return n < 2 ? std::numeric_limits<double>::quiet_NaN() : std::sqrt(m2[b * units + u] / (n - 1) / n);
  };

  std::vector<std::int64_t> active(static_cast<std::size_t>(batch));
  std::iota(active.begin(), active.end(), 0);
  const std::int64_t steps = units - 1;  // coalitions strictly between ∅ and all along one permutation
  std::vector<std::int32_t> perms;
  std::vector<double> marginal(static_cast<std::size_t>(units)), first(marginal.size());
  std::int64_t done = 0;
  while (!active.empty() && done < s.max_permutations) {
    const std::int64_t round = std::min(s.check_every, s.max_permutations - done);
    const auto n_active = static_cast<std::int64_t>(active.size());
    perms.resize(static_cast<std::size_t>(n_active * round * units));
    for (std::int64_t ai = 0; ai < n_active; ++ai)
      for (std::int64_t q = 0; q < round; ++q) {
        auto* p = perms.data() + (ai * round + q) * units;
        if (s.antithetic && q % 2 == 1) {
          std::reverse_copy(p - units, p, p);
          continue;
        }
        std::iota(p, p + units, 0);
        auto& g = rng[static_cast<std::size_t>(active[ai])];
        for (std::int64_t i = units - 1; i > 0; --i) std::swap(p[i], p[below(g, static_cast<std::uint64_t>(i + 1))]);
      }
    const auto v = game.values(
        n_active * round * steps, [&](std::int64_t i) { return active[i / (round * steps)]; },
        [&](std::int64_t i, char* row, const char* previous) {
          const auto b = active[i / (round * steps)];
          const auto* p = perms.data() + (i / steps) * units;
          const auto k = i % steps + 1;  // coalition {p₀, …, p_{k−1}}
          if (previous != nullptr && k > 1) {
            std::memcpy(row, previous, game.row_bytes());
            game.add(row, b, p[k - 1]);
            return;
          }
          std::memcpy(row, game.ref_row(b), game.row_bytes());
          for (std::int64_t j = 0; j < k; ++j) game.add(row, b, p[j]);
        });
    std::vector<std::int64_t> still;
    for (std::int64_t ai = 0; ai < n_active; ++ai) {
      const auto b = active[ai];
      for (std::int64_t q = 0; q < round; ++q) {
        const auto* p = perms.data() + (ai * round + q) * units;
        const double* vq = v.data() + (ai * round + q) * steps;
        double previous = e.v_none[b];
        for (std::int64_t k = 1; k <= units; ++k) {
          const double now = k < units ? vq[k - 1] : e.v_all[b];
          marginal[p[k - 1]] = now - previous;
          previous = now;
        }
        if (s.antithetic && q % 2 == 0) {
          first = marginal;
          continue;
        }
        const auto n = static_cast<double>(++samples[b]);
        for (std::int64_t u = 0; u < units; ++u) {
          const double x = s.antithetic ? 0.5 * (first[u] + marginal[u]) : marginal[u];
          auto& mu = mean[b * units + u];
          const double d = x - mu;
          mu += d / n;
          m2[b * units + u] += d * (x - mu);
        }
      }
      e.permutations[b] += round;
      bool converged = false;
      if (s.target_se > 0 && samples[b] >= 2) {
        double worst = 0, lo = std::numeric_limits<double>::infinity(), hi = -lo;
        for (std::int64_t u = 0; u < units; ++u) {
          worst = std::max(worst, se_of(b, u));
          lo = std::min(lo, mean[b * units + u]);
          hi = std::max(hi, mean[b * units + u]);
        }
        converged = worst <= (s.target_relative ? s.target_se * (hi - lo) : s.target_se);
      }
      if (!converged) still.push_back(b);
    }
    active = std::move(still);
    done += round;
  }
  e.phi = mean;
  e.se.resize(mean.size());
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t u = 0; u < units; ++u) e.se[b * units + u] = se_of(b, u);
  return e;
}

class ShapleySampling : public Method {
 public:
  explicit ShapleySampling(Settings s) : s_(std::move(s)) {}

  MethodNeeds needs() const override { return {}; }  // runs its own head and tail forwards

  // Before any shard: the players of every layer (unit kind, groups file) and the exact-enumeration limit.
  void validate(const MethodPlan& plan) const override {
    for (const auto& layer : plan.layers) {
      const auto shape = plan.model->layer(layer).shape;
      if (!shape.empty()) check_players(layer, make_players(s_, layer, shape));
    }
  }

  std::vector<Attribution> attribute(const MethodContext& ctx, const std::vector<std::string>& layers) const override {
    std::vector<Attribution> out;
    for (const auto& layer : layers) out.push_back(attribute_at(ctx, layer));
    return out;
  }

 private:
  void check_players(const std::string& layer, const Players& players) const {
    const auto units = players.count();
    if (s_.exact && units > kMaxExactUnits)
      throw ConfigError("exact: layer '" + layer + "' has " + std::to_string(units) +
                        " units; exact enumeration (2^U coalitions) is limited to " + std::to_string(kMaxExactUnits) +
                        " units. Set exact = false, or group units with unit = \"filter\" or groups = \"file.pt\"");
  }

  Attribution attribute_at(const MethodContext& ctx, const std::string& layer) const {
    torch::NoGradGuard no_grad;
    const Model& model = ctx.model();
    const auto& x = ctx.inputs();
    const auto batch = x.size(0);
    const auto tapped = model.tapped({layer});
    std::vector<torch::Tensor> captured;
    torch::Tensor act, ref, f_input, f_baseline;
    if (s_.reference_baseline) {
      // Inputs and baselines in one head forward; their outputs give F(x) and F(x′) for the delta. A baseline
      // shared by all inputs (zeros, a mean image) runs once: N + 1 rows instead of 2N.
      auto baselines = ctx.baselines();
      if (batch > 1 && torch::equal(baselines, baselines.narrow(0, 0, 1).expand_as(baselines)))
        baselines = baselines.narrow(0, 0, 1);
      const auto refs = baselines.size(0);
      const auto out = tapped->forward(torch::cat({x, baselines}), taps::capture(captured));
      const auto lined_up = [&](const torch::Tensor& t) {  // the baselines' rows, one per input
        auto rows = t.narrow(0, batch, refs);
        auto sizes = rows.sizes().vec();
        sizes[0] = batch;
        return rows.expand(sizes);
      };
      act = captured.at(0).narrow(0, 0, batch);
      ref = lined_up(captured.at(0));
      f_input = ctx.objective()(out.narrow(0, 0, batch), ctx.targets());
      f_baseline = ctx.objective()(lined_up(out), ctx.targets());
      ctx.provide_outputs(f_input, f_baseline);
    } else {
      act = layer_output(*tapped, x);  // only the activation is needed: the forward stops at the layer
      ref = torch::zeros_like(act);
    }
    const auto players = make_players(s_, layer, act.sizes().slice(1));
    const auto units = players.count();
    check_players(layer, players);

    const auto tail = model.tail(layer);
    const auto numel = act[0].numel();
    // Tail-only forwards hold no gradients: chunks of about a million activation values.
    const auto chunk = ctx.internal_batch() > 0
                           ? ctx.internal_batch()
                           : std::clamp<std::int64_t>((std::int64_t{1} << 20) / std::max<std::int64_t>(numel, 1), 16,
                                                      4096);
    const Game game(ctx, *tail, players, act, ref, chunk);
    const auto e = s_.exact ? exact(game, batch, units) : sample(game, s_, batch, units, ctx.offset());

    const auto dtype = ctx.double_precision() ? torch::kDouble : act.scalar_type();
    auto as_tensor = [&](const std::vector<double>& v, std::vector<std::int64_t> shape) {
      return torch::tensor(v, torch::TensorOptions().dtype(torch::kDouble)).view(shape).to(x.device(), dtype);
    };
    std::vector<std::int64_t> shape{batch};
    shape.insert(shape.end(), players.value_shape.begin(), players.value_shape.end());
    std::vector<double> efficiency(static_cast<std::size_t>(batch));
    for (std::int64_t b = 0; b < batch; ++b) {
      double sum = 0;
      for (std::int64_t u = 0; u < units; ++u) sum += e.phi[b * units + u];
      efficiency[b] = sum - (e.v_all[b] - e.v_none[b]);
    }
    Attribution a;
    a.layer = layer;
    a.values = as_tensor(e.phi, shape);
    a.extras["stderr"] = as_tensor(e.se, shape);
    a.extras["efficiency"] = as_tensor(efficiency, {batch});
    a.extras["permutations"] = torch::tensor(e.permutations, torch::TensorOptions().dtype(torch::kLong)).to(x.device());
    if (s_.reference_baseline) a.delta = completeness_delta(a.values, f_input, f_baseline);
    if (tail->needs_input())
      a.notes.push_back("shapley-sampling at layer '" + layer + "': " + tail->cut_note());
    return a;
  }

  Settings s_;
};

std::unique_ptr<Method> make(const Options& o) {
  Settings s;
  // `unit` is also read by the host, which sums [B, *layer shape] values into units; here it decides who the
  // players are, so filter and layer values come back per unit already ([B, C], [B, 1]).
  const auto unit = o.get_choice("unit", "neuron", {"neuron", "filter", "layer"});
  s.groups_path = o.get_path("groups", "");
  if (!s.groups_path.empty()) {
    if (o.has("unit"))
      throw ConfigError(o.key_path("groups") + ": give either unit or groups (each group is one player), not both");
    s.grouping = Grouping::Groups;
    s.groups = load_tensor(s.groups_path).to(torch::kCPU);
  } else {
    s.grouping = unit == "filter" ? Grouping::Filter : unit == "layer" ? Grouping::Layer : Grouping::Neuron;
  }
  s.reference_baseline = o.get_choice("reference", "baseline", {"baseline", "zero"}) == "baseline";
  s.exact = o.get_bool("exact", false);
  s.antithetic = o.get_bool("antithetic", true);
  s.max_permutations = o.get_int_in("max_permutations", s.max_permutations, 2, std::int64_t{1} << 30);
  s.check_every = o.get_int_in("check_every", s.check_every, 2, std::int64_t{1} << 30);
  s.target_se = o.get_double_in("target_se", 0.0, 0.0, std::numeric_limits<double>::max());
  s.target_relative = o.get_bool("target_se_relative", false);
  s.seed = static_cast<std::uint64_t>(o.get_int("seed", 0));
  if (s.antithetic) {
    auto require_even = [&](const char* key, std::int64_t value) {
      if (value % 2 != 0)
        throw ConfigError(o.key_path(key) +
                          ": antithetic sampling draws permutations in pairs (each with its reverse); give an even "
                          "number, or set antithetic = false");
    };
    require_even("max_permutations", s.max_permutations);
    require_even("check_every", s.check_every);
    if (s.max_permutations < 4)
      throw ConfigError(o.key_path("max_permutations") +
                        ": a standard error needs at least 2 antithetic pairs; give 4 or more");
  }
  return std::make_unique<ShapleySampling>(std::move(s));
}

}  // namespace
}  // namespace galvani::plugins::shapley

GALVANI_PLUGIN("shapley-sampling", "0.1.0", [](galvani::Registrar& r) {
  r.add_method("shapley-sampling",
               "Shapley value of every unit (neuron, filter, or group from a mask tensor) by antithetic permutation "
               "sampling over tail-only forwards, with standard errors; exact = true enumerates all coalitions",
               galvani::plugins::shapley::make);
})
