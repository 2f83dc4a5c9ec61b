// DeepLIFT (Shrikumar et al., "Learning Important Features Through Propagating Activation Differences") on the
// hidden layers of any TorchScript model.
//
// Inputs and references run as one paired batch [x; r]; a reference shared by several inputs (a zero baseline,
// each of DeepSHAP's references) appears in it once, so the batch is N + 1 rows rather than 2N. Every operation of the graph that depends on the input
// is classified (Model::operations): linear ones (convolutions, dense layers, eval batch norm, average pools,
// sums, reshapes, ...) keep their gradient, which is their exact multiplier; nonlinear elementwise ones and max
// pools are swapped, through op taps, for autograd functions whose backward applies a DeepLIFT multiplier,
// computed in the forward from the pair's two rows. One backward from F of the input rows then gives the
// multipliers m of every tapped layer, and the contributions are C = m · (a(x) − a(r)). They sum to
// F(x) − F(r) at every complete layer cut (summation-to-delta); the deviation is reported per input. Unless the
// input is attributed, the tapped layers are the leaves of the backward, and the ops below them run without rules.
//
// Rules for elementwise nonlinearities y = f(x):
//  - Rescale: m = Δy / Δx (the derivative at x where |Δx| < eps).
//  - RevealCancel: Δx is split into its positive and negative parts Δx⁺, Δx⁻ — the sums of the positive and of
//    the negative terms wᵢⱼΔaᵢ of the linear or convolution layer right before the nonlinearity — and
//      Δy⁺ = ½(f(r + Δx⁺) − f(r)) + ½(f(r + Δx⁻ + Δx⁺) − f(r + Δx⁻)),  m⁺ = Δy⁺/Δx⁺,
//      Δy⁻ = ½(f(r + Δx⁻) − f(r)) + ½(f(r + Δx⁺ + Δx⁻) − f(r + Δx⁺)),  m⁻ = Δy⁻/Δx⁻;
//    the multiplier of the layer's input aᵢ is Σⱼ wᵢⱼ gⱼ (m⁺ⱼ if wᵢⱼΔaᵢ > 0, m⁻ⱼ if < 0). The linear layer and
//    the nonlinearity become one autograd function of a.
//  - default: RevealCancel after dense layers, Rescale elsewhere (the reference implementation's default).
// Max pools: "sum-to-delta" sends max(y(x), y(r)) − y(r) back to the input's winning positions and
// y(x) − max(y(x), y(r)) to the reference's, so pooled differences are conserved; "gradient" keeps the pool's
// gradient at x (the reference implementation's rule), which does not conserve them.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "galvani/galvani.h"

namespace galvani::plugins::deeplift {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using torch::Tensor;

enum class Rule { Rescale, RevealCancel, Default };
enum class PoolRule { SumToDelta, Gradient };

// Operations whose multiplier is their gradient: linear in each argument that depends on the input (for
// products: when only one factor does), or independent of the input's values (shapes, `zeros_like`).
const std::set<std::string>& linear_ops() {
  static const std::set<std::string> ops{
      "aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::convolution",
      "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d", "aten::linear", "aten::addmm",
      "aten::batch_norm", "aten::avg_pool1d", "aten::avg_pool2d", "aten::avg_pool3d", "aten::adaptive_avg_pool1d",
      "aten::adaptive_avg_pool2d", "aten::adaptive_avg_pool3d", "aten::add", "aten::sub", "aten::neg",
      "aten::cat", "aten::stack", "aten::flatten", "aten::view", "aten::reshape", "aten::permute",
      "aten::transpose", "aten::t", "aten::contiguous", "aten::squeeze", "aten::unsqueeze", "aten::clone",
      "aten::select", "aten::slice", "aten::narrow", "aten::index_select", "aten::expand", "aten::expand_as",
      "aten::repeat", "aten::sum", "aten::mean", "aten::dropout", "aten::feature_dropout", "aten::alpha_dropout",
      "aten::to", "aten::type_as", "aten::constant_pad_nd", "aten::pad", "aten::zero_pad2d",
      "aten::upsample_nearest1d", "aten::upsample_nearest2d", "aten::upsample_nearest3d", "aten::pixel_shuffle",
      "aten::zeros_like", "aten::ones_like", "aten::full_like", "aten::empty_like", "aten::view_as",
      "aten::reshape_as", "aten::unflatten", "aten::movedim", "aten::roll", "aten::flip",
      // linear when only one factor depends on the input (checked below)
      "aten::mul", "aten::div", "aten::matmul", "aten::mm", "aten::bmm", "aten::einsum"};
  return ops;
}

const std::set<std::string>& products() {
  static const std::set<std::string> ops{"aten::mul", "aten::div", "aten::matmul", "aten::mm", "aten::bmm",
                                         "aten::einsum", "aten::addmm"};
  return ops;
}

const std::set<std::string>& elementwise_ops() {
  static const std::set<std::string> ops{"aten::relu",     "aten::sigmoid", "aten::tanh",
                                         "aten::softplus", "aten::elu",     "aten::leaky_relu"};
  return ops;
}

bool is_max_pool(const std::string& op) {
  return op == "aten::max_pool1d" || op == "aten::max_pool2d" || op == "aten::max_pool3d";
}

// Dense layers (RevealCancel under the default rule) and convolutions whose weights RevealCancel can split.
bool is_dense(const std::string& op) { return op == "aten::linear" || op == "aten::addmm"; }
bool is_convolution(const OpSite& s) {
  if (s.op == "aten::conv1d" || s.op == "aten::conv2d" || s.op == "aten::conv3d") return true;
  // _convolution(input, weight, bias, stride, padding, dilation, transposed, ...): not transposed.
  return s.op == "aten::_convolution" && s.args.size() > 6 && s.args[6].isBool() && !s.args[6].toBool();
}

std::size_t dependent_args(const OpSite& s) {
  return static_cast<std::size_t>(std::count_if(s.producers.begin(), s.producers.end(), [](auto p) { return p >= -1; }));
}

double scalar_arg(const OpSite& s, std::size_t i, double fallback) {
  if (i >= s.args.size() || s.args[i].isNone()) return fallback;
  return s.args[i].isDouble() ? s.args[i].toDouble() : static_cast<double>(s.args[i].toInt());
}

// f and f′ of an elementwise nonlinearity, with the site's constant arguments.
Tensor apply(const OpSite& s, const Tensor& x) {
  if (s.op == "aten::relu") return at::relu(x);
  if (s.op == "aten::sigmoid") return at::sigmoid(x);
  if (s.op == "aten::tanh") return at::tanh(x);
  if (s.op == "aten::softplus") return at::softplus(x, scalar_arg(s, 1, 1.0), scalar_arg(s, 2, 20.0));
  if (s.op == "aten::elu") return at::elu(x, scalar_arg(s, 1, 1.0), scalar_arg(s, 2, 1.0), scalar_arg(s, 3, 1.0));
  return at::leaky_relu(x, scalar_arg(s, 1, 0.01));
}

Tensor derivative(const OpSite& s, const Tensor& x) {
  if (s.op == "aten::relu") return (x > 0).to(x.scalar_type());
  if (s.op == "aten::sigmoid") {
    const auto y = at::sigmoid(x);
    return y * (1 - y);
  }
  if (s.op == "aten::tanh") return 1 - at::tanh(x).square();
  if (s.op == "aten::softplus") {
    const double beta = scalar_arg(s, 1, 1.0), threshold = scalar_arg(s, 2, 20.0);
    return at::where(x * beta > threshold, at::ones_like(x), at::sigmoid(x * beta));
  }
  if (s.op == "aten::elu") {
    const double alpha = scalar_arg(s, 1, 1.0), scale = scalar_arg(s, 2, 1.0), input_scale = scalar_arg(s, 3, 1.0);
    return at::where(x > 0, at::full_like(x, scale), at::exp(x * input_scale) * (scale * alpha * input_scale));
  }
  return at::where(x > 0, at::ones_like(x), at::full_like(x, scalar_arg(s, 1, 0.01)));
}

// Δy/Δx where |Δx| ≥ eps, the derivative at x elsewhere.
Tensor ratio(const Tensor& dy, const Tensor& dx, const Tensor& slope, double eps) {
  return at::where(dx.abs() >= eps, dy / at::where(dx.abs() >= eps, dx, at::ones_like(dx)), slope);
}

// The rows of a paired batch: P input rows, then Q reference rows, Q dividing P; input row i pairs with
// reference row i mod Q. Q = P for per-input baselines, Q = 1 when every input has the same baseline (the
// reference is then run once, not P times), Q = R for R shared references (DeepSHAP), the inputs repeated R times.
struct Pairing {
  std::int64_t inputs, references;

  Tensor input_rows(const Tensor& t) const { return t.narrow(0, 0, inputs); }
  Tensor reference_rows(const Tensor& t) const { return t.narrow(0, inputs, references); }
  // Reference rows [Q, ...] lined up with the P input rows: a view for Q = 1 or Q = P, a copy otherwise.
  Tensor expand(const Tensor& r) const {
    if (references == inputs) return r;
    auto sizes = r.sizes().vec();
    sizes[0] = inputs;
    if (references == 1) return r.expand(sizes);
    std::vector<std::int64_t> tiled{inputs / references};
    tiled.insert(tiled.end(), r.sizes().begin(), r.sizes().end());
    return r.unsqueeze(0).expand(tiled).reshape(sizes);
  }
  // t(xᵢ) − t(x′ᵢ) for every input row.
  Tensor delta(const Tensor& t) const { return input_rows(t) - expand(reference_rows(t)); }
};

// The Rescale multiplier of the pair's rows: (yᵢ − yᵣ)/(xᵢ − xᵣ), or the derivative at xᵢ where |Δx| < eps.
// On the CPU one fused pass (these elementwise passes are a large share of a small CNN's forward); the
// derivative is computed only if some |Δx| is that small.
Tensor rescale_multiplier(const OpSite& s, const Tensor& x, const Tensor& y, const Pairing& pair, double eps) {
  const auto xi = pair.input_rows(x), xr = pair.reference_rows(x);
  const auto yi = pair.input_rows(y), yr = pair.reference_rows(y);
  if (!x.is_cpu() || !x.is_contiguous() || !y.is_contiguous() || x.sizes() != y.sizes())
    return ratio(pair.delta(y), pair.delta(x), derivative(s, xi), eps);
  auto m = at::empty_like(xi);
  const std::int64_t row = xi.numel() / pair.inputs, references = pair.references;
  bool small = false;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "deeplift_rescale", [&] {
    const scalar_t* pxi = xi.data_ptr<scalar_t>();
    const scalar_t* pxr = xr.data_ptr<scalar_t>();
    const scalar_t* pyi = yi.data_ptr<scalar_t>();
    const scalar_t* pyr = yr.data_ptr<scalar_t>();
    scalar_t* pm = m.data_ptr<scalar_t>();
    const auto e = static_cast<scalar_t>(eps);
    std::atomic<bool> any_small{false};
    at::parallel_for(0, xi.numel(), 1 << 14, [&](std::int64_t begin, std::int64_t end) {
      bool local = false;
      std::int64_t r = begin / row, k = begin % row;  // input row and offset in it
      for (std::int64_t i = begin; i < end; ++i) {
        const std::int64_t j = (r % references) * row + k;  // the same element of the paired reference row
        const scalar_t dx = pxi[i] - pxr[j];
        const bool tiny = std::abs(dx) < e;
        local |= tiny;
        pm[i] = tiny ? scalar_t(0) : (pyi[i] - pyr[j]) / dx;
        if (++k == row) k = 0, ++r;
      }
      if (local) any_small = true;
    });
    small = any_small;
  });
  if (small) {
    const auto tiny = pair.delta(x).abs() < eps;
    m = at::where(tiny, derivative(s, xi), m);
  }
  return m;
}

// y flows on unchanged; the gradient to x is g·m on the input rows, 0 on the reference rows (F is F(x)).
struct Multiply : public torch::autograd::Function<Multiply> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& m, const Tensor& y) {
    ctx->saved_data["m"] = m;
    (void)x;
    // Not a copy: the op graph holds no in-place ops (Model::operations lists them out of place), so nothing
    // writes into y after this.
    return y.detach();
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const auto m = ctx->saved_data["m"].toTensor();
    auto grad = at::empty_like(g[0]);
    const auto pairs = m.size(0);
    auto head = grad.narrow(0, 0, pairs);
    at::mul_out(head, g[0].narrow(0, 0, pairs), m);
    grad.narrow(0, pairs, grad.size(0) - pairs).zero_();
    return {grad, Tensor(), Tensor()};
  }
};

// a·Kᵀ for a dense kernel K [out, in] (a: [..., in]). Debian's libtorch multiplies matrices with the reference
// BLAS; oneDNN's 1×1 convolution gives the same float32 product about ten times faster for the few rows of a
// shard (measured with libtorch 1.13 on the example CNN's 1568 → 64 layer), so float32 CPU products run as such
// convolutions, 32 rows at a time (larger blocks make oneDNN pick a slower kernel). Everything else: matmul.
Tensor dense_product(const Tensor& a, const Tensor& kernel) {
  if (!a.is_cpu() || a.scalar_type() != at::kFloat || kernel.scalar_type() != at::kFloat || !at::hasMKLDNN() ||
      !at::globalContext().userEnabledMkldnn())
    return at::matmul(a, kernel.t());
  const auto in = kernel.size(1), out = kernel.size(0);
  const auto rows = a.reshape({-1, in});
  const auto weight = kernel.view({out, in, 1, 1});
  auto result = at::empty({rows.size(0), out}, a.options());
  constexpr std::int64_t block = 32;
  for (std::int64_t start = 0; start < rows.size(0); start += block) {
    const auto len = std::min(block, rows.size(0) - start);
    const auto part = rows.narrow(0, start, len).contiguous().view({len, in, 1, 1});
    const auto product = at::mkldnn_convolution(part, weight, {}, {0, 0}, {1, 1}, {1, 1}, 1);
    result.narrow(0, start, len).copy_(product.view({len, out}));
  }
  auto shape = a.sizes().vec();
  shape.back() = out;
  return result.view(shape);
}

// The linear or convolution layer before a RevealCancel nonlinearity, with its weights split by sign.
struct LinearPart {
  const OpSite* site = nullptr;
  // With W = W⁺ + W⁻ and Δa = Δa⁺ + Δa⁻, the four sign-split products reduce to two: the positive part of
  // the layer's output difference is Δz⁺ = Δa⁺W⁺ + Δa⁻W⁻ = (Δz + |Δa|·|W|)/2 and Δz⁻ = (Δz − |Δa|·|W|)/2,
  // with Δz the layer's own output difference. One product with |W| instead of four (and two instead of four
  // in the backward), which matters where dense layers run on a reference BLAS.
  Tensor weight, weight_abs;
  // Dense layers: W and |W| as dense_product kernels, for the forward ([out, in]) and the transpose ([in, out]).
  std::array<Tensor, 2> forward_kernel, backward_kernel;  // [0]: W, [1]: |W|
  Tensor input;         // a, both halves, in the autograd graph: the RevealCancel function's input
  Tensor input_delta;   // Δa for the input rows
  Tensor output_delta;  // Δz = z(xᵢ) − z(xᵣ), the layer's output rows (the bias cancels)

  void set_weight(const Tensor& w) {
    weight = w;
    weight_abs = w.abs();
    if (!is_dense(site->op)) return;
    const bool addmm = site->op == "aten::addmm";  // addmm's weight is [in, out], linear's [out, in]
    for (std::size_t k = 0; k < 2; ++k) {
      const auto& v = k ? weight_abs : weight;
      forward_kernel[k] = (addmm ? v.t() : v).contiguous();
      backward_kernel[k] = (addmm ? v : v.t()).contiguous();
    }
  }
  // The layer without bias, applied to `a` with W or |W|.
  Tensor apply(const Tensor& a, bool absolute) const {
    if (is_dense(site->op)) return dense_product(a, forward_kernel[absolute]);
    const Convolution c = convolution();
    return at::convolution(a, absolute ? weight_abs : weight, {}, c.stride, c.padding, c.dilation, false,
                           c.output_padding, c.groups);
  }
  // The transpose (vector–Jacobian product) of `apply` for cotangent g; `like` has the input's shape.
  Tensor transpose(const Tensor& g, bool absolute, const Tensor& like) const {
    if (is_dense(site->op)) return dense_product(g, backward_kernel[absolute]);
    const Convolution c = convolution();
    return std::get<0>(at::convolution_backward(g, like, absolute ? weight_abs : weight, c10::nullopt, c.stride,
                                                c.padding, c.dilation, false, c.output_padding, c.groups,
                                                {true, false, false}));
  }

 private:
  // conv1d/2d/3d(input, weight, bias, stride, padding, dilation, groups) and
  // _convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, ...).
  struct Convolution {
    std::vector<std::int64_t> stride, padding, dilation, output_padding;
    std::int64_t groups;
  };
  Convolution convolution() const {
    const auto& args = site->args;
    Convolution c{args.at(3).toIntVector(), args.at(4).toIntVector(), args.at(5).toIntVector(), {}, 0};
    c.output_padding.assign(c.stride.size(), 0);
    c.groups = (site->op == "aten::_convolution" ? args.at(8) : args.at(6)).toInt();
    return c;
  }
};

// RevealCancel: the linear layer and the nonlinearity after it as one function of the linear layer's input a.
struct RevealCancel : public torch::autograd::Function<RevealCancel> {
  // `part` (weights split by sign, Δa) outlives the backward: it belongs to the forward's caller.
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& y, const Tensor& m_pos,
                        const Tensor& m_neg, const LinearPart* part) {
    ctx->saved_data["m_pos"] = m_pos;
    ctx->saved_data["m_neg"] = m_neg;
    ctx->saved_data["like"] = a.narrow(0, 0, m_pos.size(0)).detach();
    ctx->saved_data["references"] = a.size(0) - m_pos.size(0);
    ctx->saved_data["part"] = reinterpret_cast<std::int64_t>(part);
    return y.detach();  // not a copy: no in-place op follows in the op graph (see Multiply)
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto* part = reinterpret_cast<const LinearPart*>(ctx->saved_data["part"].toInt());
    const auto m_pos = ctx->saved_data["m_pos"].toTensor(), m_neg = ctx->saved_data["m_neg"].toTensor();
    const auto like = ctx->saved_data["like"].toTensor();
    const auto g = grads[0].narrow(0, 0, m_pos.size(0));
    const auto gp = g * m_pos, gn = g * m_neg;
    // Δaᵢ > 0: terms with wᵢⱼ > 0 are positive (m⁺), with wᵢⱼ < 0 negative (m⁻); Δaᵢ < 0 the other way round.
    // up = gp·W⁺ᵀ + gn·W⁻ᵀ and down = gn·W⁺ᵀ + gp·W⁻ᵀ, from their sum (gp + gn)·Wᵀ and difference (gp − gn)·|W|ᵀ.
    const auto sum = part->transpose(gp + gn, false, like);
    const auto difference = part->transpose(gp - gn, true, like);
    const auto& delta = part->input_delta;
    auto ga = at::where(delta > 0, (sum + difference) * 0.5,
                        at::where(delta < 0, (sum - difference) * 0.5, sum * 0.5));
    auto zero_shape = ga.sizes().vec();
    zero_shape[0] = ctx->saved_data["references"].toInt();
    ga = at::cat({ga, at::zeros(zero_shape, ga.options())});  // references: no gradient of F(x)
    return {ga, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// A max pool with its winners' indices: 1-d pools run as 2-d pools of height 1.
struct Pool {
  const OpSite* site;
  int dims() const { return site->op == "aten::max_pool3d" ? 3 : 2; }
  std::vector<std::int64_t> arg(std::size_t i, std::int64_t fill) const {
    auto v = site->args.at(i).toIntVector();
    if (site->op == "aten::max_pool1d") v.insert(v.begin(), fill);
    return v;
  }
  std::vector<std::int64_t> kernel() const { return arg(1, 1); }
  std::vector<std::int64_t> stride() const {
    return site->args.at(2).toIntVector().empty() ? kernel() : arg(2, 1);
  }
  Tensor lift(const Tensor& x) const { return site->op == "aten::max_pool1d" ? x.unsqueeze(-2) : x; }
  Tensor lower(const Tensor& x) const { return site->op == "aten::max_pool1d" ? x.squeeze(-2) : x; }
  std::pair<Tensor, Tensor> forward(const Tensor& x) const {
    const bool ceil = site->args.at(5).toBool();
    auto r = dims() == 3 ? at::max_pool3d_with_indices(x, kernel(), stride(), arg(3, 0), arg(4, 1), ceil)
                         : at::max_pool2d_with_indices(lift(x), kernel(), stride(), arg(3, 0), arg(4, 1), ceil);
    return {std::get<0>(r), std::get<1>(r)};
  }
  // Sends `g` (pooled shape) back to the winners `indices` of `x`.
  Tensor unpool(const Tensor& g, const Tensor& x, const Tensor& indices) const {
    const bool ceil = site->args.at(5).toBool();
    if (dims() == 3)
      return at::max_pool3d_with_indices_backward(g, x, kernel(), stride(), arg(3, 0), arg(4, 1), ceil, indices);
    return lower(at::max_pool2d_with_indices_backward(g, lift(x), kernel(), stride(), arg(3, 0), arg(4, 1), ceil, indices));
  }
};

// The window geometry of a max pool on the CPU, lifted to three spatial dimensions (leading ones of size 1).
struct Window {
  std::array<std::int64_t, 3> kernel{1, 1, 1}, stride{1, 1, 1}, padding{0, 0, 0}, dilation{1, 1, 1};
  std::array<std::int64_t, 3> in{1, 1, 1}, out{1, 1, 1};
  std::int64_t in_plane() const { return in[0] * in[1] * in[2]; }
  std::int64_t out_plane() const { return out[0] * out[1] * out[2]; }

  // `x` and `y` lifted to 2-d for 1-d pools (Pool::lift). One-element lists apply to every dimension.
  Window(const Pool& pool, const Tensor& x, const Tensor& y) {
    const int dims = pool.dims(), skip = 3 - dims;
    const auto fill = [&](std::array<std::int64_t, 3>& to, std::vector<std::int64_t> from) {
      if (from.size() == 1) from.assign(static_cast<std::size_t>(dims), from[0]);
      for (int d = 0; d < dims; ++d) to[static_cast<std::size_t>(skip + d)] = from.at(static_cast<std::size_t>(d));
    };
    fill(kernel, pool.kernel());
    fill(stride, pool.stride());
    fill(padding, pool.arg(3, 0));
    fill(dilation, pool.arg(4, 1));
    for (int d = 0; d < dims; ++d) {
      in[static_cast<std::size_t>(skip + d)] = x.size(x.dim() - dims + d);
      out[static_cast<std::size_t>(skip + d)] = y.size(y.dim() - dims + d);
    }
  }

  // A 2-d pool with 2 × 2 windows at stride 2, no padding or dilation, every window inside the input.
  bool plain_2x2() const {
    return in[0] == 1 && out[0] == 1 && kernel[1] == 2 && kernel[2] == 2 && stride[1] == 2 && stride[2] == 2 &&
           padding[1] == 0 && padding[2] == 0 && dilation[1] == 1 && dilation[2] == 1 && 2 * out[1] <= in[1] &&
           2 * out[2] <= in[2];
  }

  // Calls f(o, k) for every output o of a plane, in order, with k the position of its winner in the input
  // plane: the first maximum of its window, as ATen's pools pick it (NaN wins). Nested loops without divisions:
  // this scan is most of the rule's cost.
  template <typename T, typename F>
  void for_each_winner(const T* plane, F&& f) const {
    if (plain_2x2()) {  // the common pool, without bounds checks: two thirds of the general loop's time
      std::int64_t o = 0;
      for (std::int64_t oh = 0; oh < out[1]; ++oh) {
        const T* top = plane + 2 * oh * in[2];
        const T* bottom = top + in[2];
        for (std::int64_t ow = 0; ow < out[2]; ++ow, ++o) {
          const std::int64_t w = 2 * ow, row = 2 * oh * in[2];
          std::int64_t best = row + w;
          T high = top[w];
          if (top[w + 1] > high || top[w + 1] != top[w + 1]) best = row + w + 1, high = top[w + 1];
          if (bottom[w] > high || bottom[w] != bottom[w]) best = row + in[2] + w, high = bottom[w];
          if (bottom[w + 1] > high || bottom[w + 1] != bottom[w + 1]) best = row + in[2] + w + 1;
          f(o, best);
        }
      }
      return;
    }
    std::int64_t o = 0;
    for (std::int64_t od = 0; od < out[0]; ++od) {
      const std::int64_t d0 = od * stride[0] - padding[0];
      for (std::int64_t oh = 0; oh < out[1]; ++oh) {
        const std::int64_t h0 = oh * stride[1] - padding[1];
        for (std::int64_t ow = 0; ow < out[2]; ++ow, ++o) {
          const std::int64_t w0 = ow * stride[2] - padding[2];
          std::int64_t best = -1;
          T high = 0;
          for (std::int64_t kd = 0; kd < kernel[0]; ++kd) {
            const std::int64_t d = d0 + kd * dilation[0];
            if (d < 0 || d >= in[0]) continue;
            for (std::int64_t kh = 0; kh < kernel[1]; ++kh) {
              const std::int64_t h = h0 + kh * dilation[1];
              if (h < 0 || h >= in[1]) continue;
              const std::int64_t row = (d * in[1] + h) * in[2];
              for (std::int64_t kw = 0; kw < kernel[2]; ++kw) {
                const std::int64_t w = w0 + kw * dilation[2];
                if (w < 0 || w >= in[2]) continue;
                const T v = plane[row + w];
                if (best < 0 || v > high || v != v) best = row + w, high = v;
              }
            }
          }
          f(o, best);
        }
      }
    }
  }
};

// Max pool, sum-to-delta rule (see the file comment), on the paired batch x = [xᵢ; xᵣ]. The forward keeps the
// graph's own pooled output (no second pool); the backward finds the winners.
struct MaxPoolDelta : public torch::autograd::Function<MaxPoolDelta> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& y, const OpSite* site,
                        const Pairing& pair, double eps) {
    // Views, not copies: no in-place op follows in the op graph (see Multiply).
    ctx->saved_data["x"] = x.detach();
    ctx->saved_data["y"] = y.detach();
    ctx->saved_data["inputs"] = pair.inputs;
    ctx->saved_data["site"] = reinterpret_cast<std::int64_t>(site);
    ctx->saved_data["eps"] = eps;
    return y.detach();
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Pool pool{reinterpret_cast<const OpSite*>(ctx->saved_data["site"].toInt())};
    const auto x = ctx->saved_data["x"].toTensor(), y = ctx->saved_data["y"].toTensor();
    const Pairing pair{ctx->saved_data["inputs"].toInt(), x.size(0) - ctx->saved_data["inputs"].toInt()};
    const auto xi = pair.input_rows(x), xr = pair.reference_rows(x);
    const auto g = pool.lift(grads[0].narrow(0, 0, pair.inputs)).contiguous();
    const double eps = ctx->saved_data["eps"].toDouble();
    if (x.is_cpu())
      return {fused_cpu(pool, g, pool.lift(x).contiguous(), pool.lift(y).contiguous(), pair, eps), Tensor(), Tensor(),
              Tensor(), Tensor()};
    const auto [yi, index_i] = pool.forward(xi);
    const auto [yr, index_r] = pool.forward(xr);
    // The reference rows lined up with the input rows.
    const auto xr_p = pair.expand(xr).contiguous(), yr_p = pair.expand(yr), index_r_p = pair.expand(index_r).contiguous();
    const auto high = at::maximum(yi, yr_p);
    // The input's winners carry max(yᵢ, yᵣ) − yᵣ, the reference's winners yᵢ − max(yᵢ, yᵣ).
    const auto sent = pool.unpool(g * (high - yr_p), xi, index_i) + pool.unpool(g * (yi - high), xr_p, index_r_p);
    const auto gradient = pool.unpool(g, xi, index_i);
    const auto m = ratio(sent, xi - xr_p, gradient, eps);
    auto zero_shape = m.sizes().vec();
    zero_shape[0] = pair.references;
    return {at::cat({m, at::zeros(zero_shape, m.options())}), Tensor(), Tensor(), Tensor(), Tensor()};
  }

  // The same multipliers in one pass per pooling plane (a channel of one row): each output's winners in the
  // input and in the reference plane get its share and gradient in plane-sized scratch buffers, which are then
  // divided by Δx. The reference planes' winners are found once, however many inputs share them. x and y are the
  // whole paired batch (lifted to 2-d for 1-d pools); returns [mᵢ; 0], lowered again.
  static Tensor fused_cpu(const Pool& pool, const Tensor& g, const Tensor& x, const Tensor& y, const Pairing& pair,
                          double eps) {
    const Window window(pool, x, y);
    const std::int64_t in_plane = window.in_plane(), out_plane = window.out_plane();
    const auto planes_per_row = x[0].numel() / in_plane;
    const auto inputs = pair.inputs, references = pair.references;
    auto out = at::empty_like(x);
    out.narrow(0, inputs, references).zero_();
    auto reference_winners = at::empty({references * planes_per_row * out_plane}, x.options().dtype(at::kLong));
    std::int64_t* pw = reference_winners.data_ptr<std::int64_t>();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "deeplift_maxpool", [&] {
      const scalar_t* px = x.data_ptr<scalar_t>();
      const scalar_t* py = y.data_ptr<scalar_t>();
      const scalar_t* pg = g.data_ptr<scalar_t>();
      scalar_t* pm = out.data_ptr<scalar_t>();
      const std::int64_t input_planes = inputs * planes_per_row, reference_planes = references * planes_per_row;
      // Plane p of the batch starts at p·in_plane in x and p·out_plane in y; reference planes follow the inputs'.
      at::parallel_for(0, reference_planes, 1, [&](std::int64_t begin, std::int64_t end) {
        for (auto q = begin; q < end; ++q)
          window.for_each_winner(px + (input_planes + q) * in_plane,
                                 [&](std::int64_t o, std::int64_t k) { pw[q * out_plane + o] = k; });
      });
      const auto e = static_cast<scalar_t>(eps);
      at::parallel_for(0, input_planes, 1, [&](std::int64_t begin, std::int64_t end) {
        // Scratch, zero between planes: only winners are written, and reset after use.
        std::vector<scalar_t> sent(static_cast<std::size_t>(in_plane)), grad(static_cast<std::size_t>(in_plane));
        std::vector<std::int64_t> winners(static_cast<std::size_t>(out_plane));
        for (auto p = begin; p < end; ++p) {
          // The same plane of the paired reference row.
          const auto q = (p / planes_per_row % references) * planes_per_row + p % planes_per_row;
          const scalar_t* xi = px + p * in_plane;
          const scalar_t* xr = px + (input_planes + q) * in_plane;
          const scalar_t* yi = py + p * out_plane;
          const scalar_t* yr = py + (input_planes + q) * out_plane;
          const scalar_t* gp = pg + p * out_plane;
          const std::int64_t* wr = pw + q * out_plane;
          window.for_each_winner(xi, [&](std::int64_t o, std::int64_t wi) {
            const scalar_t gi = gp[o], a = yi[o], b = yr[o], high = std::max(a, b);
            winners[o] = wi;
            sent[wi] += gi * (high - b);
            grad[wi] += gi;
            sent[wr[o]] += gi * (a - high);
          });
          // Only winners have a nonzero multiplier.
          scalar_t* m = pm + p * in_plane;
          std::fill(m, m + in_plane, scalar_t(0));
          const auto finish = [&](std::int64_t k) {
            const scalar_t dx = xi[k] - xr[k];
            m[k] = std::abs(dx) >= e ? sent[k] / dx : grad[k];
          };
          for (std::int64_t o = 0; o < out_plane; ++o) finish(winners[o]), finish(wr[o]);
          for (std::int64_t o = 0; o < out_plane; ++o) {
            sent[winners[o]] = grad[winners[o]] = 0;
            sent[wr[o]] = grad[wr[o]] = 0;
          }
        }
      });
    });
    return pool.lower(out);
  }
};

// What happens at each op site of the model.
enum class Action { Keep, Rescale, RevealCancel, LinearBeforeRevealCancel, MaxPool };

struct SitePlan {
  std::vector<Action> actions;        // per op site
  std::vector<std::int64_t> partner;  // RevealCancel nonlinearity → its linear layer's site
  std::vector<std::size_t> tapped;
  std::vector<std::string> notes;
};

std::string where(const OpSite& s) { return s.location.empty() ? "the model's own forward" : "'" + s.location + "'"; }

// "aten::softmax in 'classifier' (×2), aten::exp in the model's own forward".
std::string list_sites(const std::vector<const OpSite*>& sites) {
  std::map<std::pair<std::string, std::string>, int> counts;
  for (const auto* s : sites) ++counts[{s->op, where(*s)}];
  std::ostringstream out;
  bool first = true;
  for (const auto& [key, n] : counts) {
    out << (first ? "" : ", ") << key.first << " in " << key.second;
    if (n > 1) out << " (×" << n << ")";
    first = false;
  }
  return out.str();
}

class DeepLift : public Method {
 public:
  DeepLift(Rule rule, PoolRule pool, bool unsupported_gradient, bool input, double eps, torch::Tensor references)
      : rule_(rule), pool_(pool), unsupported_gradient_(unsupported_gradient), input_(input), eps_(eps),
        references_(std::move(references)) {}

  MethodNeeds needs() const override { return {}; }  // one paired forward+backward of its own
  bool needs_layers() const override { return !input_; }

  // Everything that can be refused before a shard runs: the objective, the backend, a rule for every op on the
  // way from the input to F, the references' shape.
  void validate(const MethodPlan& plan) const override {
    check_objective(plan.output);
    if (!plan.model->capabilities().operations)
      throw ModelError("deeplift swaps the model's nonlinearities through op taps, which this model backend does not "
                       "have");
    (void)plan_sites(plan.model->operations());
    check_references(plan.input_shape);
  }

  std::vector<Attribution> attribute(const MethodContext& ctx, const std::vector<std::string>& layers) const override {
    check_objective(ctx.objective().mode);
    const Model& model = ctx.model();
    const std::vector<OpSite> sites = model.operations();
    const SitePlan plan = plan_sites(sites);
    const auto forward = model.op_tapped(layers, plan.tapped);

    const auto x = ctx.inputs();
    const auto n = x.size(0);
    check_references(x.sizes().slice(1).vec());
    torch::Tensor refs = references_.defined() ? references_.to(x.device(), x.scalar_type()) : torch::Tensor();
    const std::int64_t r = refs.defined() ? refs.size(0) : 1;
    const std::int64_t chunk_inputs =
        std::max<std::int64_t>(1, ctx.internal_batch() > 0 ? ctx.internal_batch() / r : n);

    std::vector<std::vector<torch::Tensor>> values(layers.size() + (input_ ? 1 : 0)), deltas(values.size());
    std::vector<bool> unused(values.size(), false);
    std::vector<torch::Tensor> f_pairs;  // [2, chunk]: F(x) and F(x') of every chunk
    for (std::int64_t start = 0; start < n; start += chunk_inputs) {
      const auto len = std::min(chunk_inputs, n - start);
      const auto xi = x.narrow(0, start, len).repeat_interleave(r, 0);
      // Shared references run once: R rows for R references; one row when all baselines of the chunk are equal
      // (a zero or mean-image baseline), which halves the work of the usual [x; x′] batch.
      torch::Tensor xr = refs;
      if (!xr.defined()) {
        xr = ctx.baselines().narrow(0, start, len);
        if (len > 1 && torch::equal(xr, xr.narrow(0, 0, 1).expand_as(xr))) xr = xr.narrow(0, 0, 1);
      }
      const auto targets = ctx.targets().narrow(0, start, len).repeat_interleave(r, 0);
      run_chunk(ctx, sites, plan, *forward, xi, xr, targets, r, values, deltas, unused, f_pairs);
    }
    if (!refs.defined()) {  // the paired forwards ran on the configured baselines: the host need not run them
      const auto f = torch::cat(f_pairs, 1);
      ctx.provide_outputs(f[0], f[1]);
    }

    std::vector<Attribution> out;
    for (std::size_t l = 0; l < values.size(); ++l) {
      Attribution a;
      const bool is_input = l == layers.size();
      a.layer = is_input ? "input" : layers[l];
      a.space = is_input ? Space::Input : Space::Layer;
      a.values = torch::cat(values[l]);
      a.delta = torch::cat(deltas[l]);
      a.notes = plan.notes;
      if (unused[l])
        a.notes.push_back("no multiplier reached this layer from F (it only feeds a linear layer that RevealCancel "
                          "merged into the nonlinearity after it, or it does not influence F): its contributions are "
                          "0 and its summation-to-delta error shows what is missing");
      out.push_back(std::move(a));
    }
    return out;
  }

 private:
  static void check_objective(OutputMode mode) {
    if (mode == OutputMode::Probability)
      throw ConfigError("deeplift explains a linear readout of the logits: the softmax of output = \"probability\" "
                        "is a nonlinearity across classes that no DeepLIFT rule covers; use output = \"logit\" or "
                        "\"logit-minus-mean\"");
  }

  void check_references(const std::vector<std::int64_t>& input_shape) const {
    if (!references_.defined() || references_.sizes().slice(1).vec() == input_shape) return;
    const auto one = shape_string(input_shape);
    throw ShapeError("deeplift references have shape " + shape_string(references_.sizes()) + "; one input is " + one +
                     ", so references must be [R, " + one.substr(1));
  }

  SitePlan plan_sites(const std::vector<OpSite>& sites) const {
    SitePlan p;
    p.actions.assign(sites.size(), Action::Keep);
    p.partner.assign(sites.size(), -1);
    std::vector<const OpSite*> unsupported, rescaled_instead;
    for (std::size_t i = 0; i < sites.size(); ++i) {
      const OpSite& s = sites[i];
      const auto dependent = dependent_args(s);
      if (dependent == 0) continue;
      if (elementwise_ops().count(s.op)) {
        if (s.dynamic_args || s.producers.empty() || s.producers[0] < -1) {
          unsupported.push_back(&s);
          continue;
        }
        p.actions[i] = Action::Rescale;
        const bool want_rc = rule_ == Rule::RevealCancel ||
                             (rule_ == Rule::Default && s.producers[0] >= 0 && is_dense(sites[s.producers[0]].op));
        if (!want_rc) continue;
        const auto producer = s.producers[0];
        if (producer >= 0 && reveal_cancel_ready(sites[producer]) && p.actions[producer] == Action::Keep) {
          p.actions[i] = Action::RevealCancel;
          p.actions[producer] = Action::LinearBeforeRevealCancel;
          p.partner[i] = producer;
        } else {
          rescaled_instead.push_back(&s);
        }
      } else if (is_max_pool(s.op)) {
        if (s.dynamic_args) {
          unsupported.push_back(&s);
        } else if (pool_ == PoolRule::SumToDelta) {
          p.actions[i] = Action::MaxPool;
        }
      } else if (!linear_ops().count(s.op) || (products().count(s.op) && dependent > 1)) {
        unsupported.push_back(&s);
      }
    }
    if (!unsupported.empty()) {
      if (!unsupported_gradient_)
        throw ModelError("deeplift has no rule for " + list_sites(unsupported) +
                         ": these operations are nonlinear in the input (or their arguments are computed at run "
                         "time). Set unsupported = \"gradient\" to use their gradient there instead (the "
                         "contributions then no longer sum to the output difference exactly)");
      p.notes.push_back("gradient used instead of a DeepLIFT rule at " + list_sites(unsupported));
    }
    if (!rescaled_instead.empty())
      p.notes.push_back("RevealCancel needs a dense or convolution layer (weights not computed from the input) "
                        "directly before the nonlinearity; Rescale used at " + list_sites(rescaled_instead));
    for (std::size_t i = 0; i < sites.size(); ++i)
      if (p.actions[i] != Action::Keep) p.tapped.push_back(i);
    return p;
  }

  // Whether RevealCancel can split this layer's weights: a dense layer or a (not transposed) convolution whose
  // weights are parameters and whose one input depends on the model input.
  static bool reveal_cancel_ready(const OpSite& s) {
    if (!is_dense(s.op) && !is_convolution(s)) return false;
    if (s.dynamic_args && !is_dense(s.op)) return false;
    const std::size_t a = s.op == "aten::addmm" ? 1 : 0;
    if (s.producers.size() <= a + 1) return false;
    for (std::size_t i = 0; i < s.producers.size(); ++i)
      if ((i == a) != (s.producers[i] >= -1)) return false;
    return true;
  }

  void run_chunk(const MethodContext& ctx, const std::vector<OpSite>& sites, const SitePlan& plan,
                 const OpTappedForward& forward, const torch::Tensor& xi, const torch::Tensor& xr,
                 const torch::Tensor& targets, std::int64_t r, std::vector<std::vector<torch::Tensor>>& values,
                 std::vector<std::vector<torch::Tensor>>& deltas, std::vector<bool>& unused,
                 std::vector<torch::Tensor>& f_pairs) const {
    const Pairing pair{xi.size(0), xr.size(0)};
    const auto pairs = pair.inputs;
    torch::AutoGradMode grad_mode(true);
    // Only the part of the network between the tapped layers and F needs multipliers: the batch requires grad
    // only when the input is attributed, otherwise each tapped layer that does not already depend on an earlier
    // one becomes a leaf. Ops whose inputs do not require grad lie upstream of every layer the backward reaches:
    // they run as they are, without rules (on a CNN tapped halfway, half of the rules' elementwise work).
    const auto batch = torch::cat({xi, xr}).detach().requires_grad_(input_);
    std::vector<torch::Tensor> captured;
    const TapFn layer_tap = [&captured](std::size_t i, const torch::Tensor& y) {
      if (captured.size() <= i) captured.resize(i + 1);
      captured[i] = y.requires_grad() ? y : y.detach().requires_grad_(true);
      return captured[i].clone();  // in-place ops after the layer must not write into the captured tensor
    };
    std::map<std::size_t, LinearPart> parts;  // per forward: the split linear layers, alive until backward
    const OpTapFn op_tap = [&](std::size_t site, const torch::Tensor& y, const std::vector<torch::Tensor>& args) {
      const OpSite& s = sites[site];
      const bool reached =
          std::any_of(args.begin(), args.end(), [](const auto& a) { return a.defined() && a.requires_grad(); });
      if (!reached) return y;
      switch (plan.actions[site]) {
        case Action::Rescale: {
          const auto& in = args.at(0);
          return Multiply::apply(in, rescale_multiplier(s, in.detach(), y.detach(), pair, eps_), y.detach());
        }
        case Action::LinearBeforeRevealCancel: {
          const std::size_t a_index = s.op == "aten::addmm" ? 1 : 0;
          const auto& a = args.at(a_index);
          if (!a.requires_grad()) return y;  // only its weights require grad: no tapped layer lies below
          const auto& w = args.at(a_index + 1).detach();
          LinearPart& part = parts[site];
          part.site = &s;
          part.set_weight(w);
          part.output_delta = pair.delta(y).detach();
          part.input = a;
          part.input_delta = pair.delta(a).detach();
          return y;
        }
        case Action::RevealCancel: {
          const auto found = parts.find(static_cast<std::size_t>(plan.partner[site]));
          // The linear layer's input does not require grad (only its weights do): no layer is reached through it.
          if (found == parts.end()) return y;
          const auto& part = found->second;
          const auto& in = args.at(0);
          const auto xref = pair.expand(pair.reference_rows(in)).detach();
          const auto spread = part.apply(part.input_delta.abs(), true);
          const auto dx_pos = (part.output_delta + spread) * 0.5, dx_neg = (part.output_delta - spread) * 0.5;
          const auto f0 = apply(s, xref), fp = apply(s, xref + dx_pos), fn = apply(s, xref + dx_neg);
          const auto fb = apply(s, xref + dx_pos + dx_neg);
          const auto dy_pos = 0.5 * ((fp - f0) + (fb - fn));
          const auto dy_neg = 0.5 * ((fn - f0) + (fb - fp));
          const auto slope = derivative(s, pair.input_rows(in).detach());
          return RevealCancel::apply(part.input, y.detach(),
                                     ratio(dy_pos, dx_pos, slope, eps_), ratio(dy_neg, dx_neg, slope, eps_), &part);
        }
        case Action::MaxPool:
          return MaxPoolDelta::apply(args.at(0), y.detach(), &s, pair, eps_);
        case Action::Keep:
          break;
      }
      return y;
    };

    const auto output = forward.forward(batch, layer_tap, op_tap);
    // F of every pair's reference output for that pair's target.
    const auto fi = ctx.objective()(pair.input_rows(output), targets);
    const auto fr = ctx.objective()(pair.expand(pair.reference_rows(output)).detach(), targets).detach();
    f_pairs.push_back(torch::stack({fi.detach(), fr}));
    std::vector<torch::Tensor> wrt(captured.begin(), captured.end());
    if (input_) wrt.push_back(batch);
    // F does not depend on any tapped layer when none of them influences it.
    const auto grads = fi.requires_grad()
                           ? torch::autograd::grad({fi.sum()}, wrt, {}, /*retain_graph=*/false,
                                                   /*create_graph=*/false, /*allow_unused=*/true)
                           : variable_list(wrt.size());
    const auto n = pairs / r;
    const auto change = (fi - fr).detach().view({n, r});
    for (std::size_t l = 0; l < wrt.size(); ++l) {
      const auto a = wrt[l].detach();
      const auto da = pair.delta(a);
      torch::Tensor c;
      if (grads[l].defined()) {
        c = grads[l].narrow(0, 0, pairs) * da;
      } else {
        c = torch::zeros_like(da);
        unused[l] = true;
      }
      // Several references: the mean contribution (DeepSHAP); the delta against the mean output difference.
      // reshape, not view: a layer's output may be a non-contiguous view (a transpose before a convolution).
      auto per_pair = c.reshape({n, r, -1});
      auto shape = c.sizes().vec();
      shape[0] = n;
      values[l].push_back(per_pair.mean(1).reshape(shape));
      deltas[l].push_back((per_pair.sum(2) - change).mean(1));
    }
  }

  Rule rule_;
  PoolRule pool_;
  bool unsupported_gradient_;
  bool input_;
  double eps_;
  torch::Tensor references_;
};

}  // namespace
}  // namespace galvani::plugins::deeplift

GALVANI_PLUGIN("deeplift", "0.1.0", [](galvani::Registrar& r) {
  using namespace galvani::plugins::deeplift;
  r.add_method("deeplift",
               "DeepLIFT on hidden layers: Rescale / RevealCancel multipliers through swapped nonlinearities, "
               "paired input and reference batch (options nonlinear_rule, maxpool, unsupported, input, references, eps)",
               [](const galvani::Options& o) {
                 const auto rule = o.get_choice("nonlinear_rule", "default", {"default", "rescale", "reveal-cancel"});
                 const auto pool = o.get_choice("maxpool", "sum-to-delta", {"sum-to-delta", "gradient"});
                 const auto unsupported = o.get_choice("unsupported", "error", {"error", "gradient"});
                 const bool input = o.get_bool("input", false);
                 const double eps = o.get_double_in("eps", 1e-7, 0.0, 1.0);
                 const auto references_file = o.get_path("references", "");
                 torch::Tensor references;
                 if (!references_file.empty()) {
                   references = galvani::load_tensor(references_file);
                   if (references.dim() < 1 || references.size(0) < 1)
                     throw galvani::ConfigError("references: '" + references_file +
                                                "' must hold a tensor [R, *input shape] with R ≥ 1");
                 }
                 return std::make_unique<DeepLift>(
                     rule == "rescale" ? Rule::Rescale : rule == "reveal-cancel" ? Rule::RevealCancel : Rule::Default,
                     pool == "gradient" ? PoolRule::Gradient : PoolRule::SumToDelta, unsupported == "gradient", input,
                     eps, references);
               });
})
