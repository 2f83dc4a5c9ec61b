// The `galvani::tap` operator. Only the SDK registers operators in the `galvani` namespace.
#include "galvani/tap.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <algorithm>
#include <vector>

#include <torch/library.h>

#include "galvani/tensor_io.h"

namespace galvani {
namespace {
thread_local TapScope* tl_current = nullptr;
thread_local OpTapScope* tl_op_current = nullptr;
}  // namespace

TapScope::TapScope(Callback callback) : callback_(std::move(callback)), previous_(tl_current) { tl_current = this; }
TapScope::~TapScope() { tl_current = previous_; }

torch::Tensor TapScope::dispatch(const torch::Tensor& x, std::int64_t slot) {
  TapScope* scope = tl_current;
  if (scope == nullptr) return x;
  if (slot < 0) throw ModelError("galvani::tap called with a negative slot");
  if (static_cast<std::size_t>(slot) >= scope->counts_.size()) scope->counts_.resize(slot + 1, 0);
  ++scope->counts_[slot];
  return scope->callback_(slot, x);
}

const char* tap_operator_name() { return "galvani::tap"; }

OpTapScope::OpTapScope(Callback callback) : callback_(std::move(callback)), previous_(tl_op_current) {
  tl_op_current = this;
}
OpTapScope::~OpTapScope() { tl_op_current = previous_; }

torch::Tensor OpTapScope::dispatch(const torch::Tensor& out, const c10::List<c10::optional<torch::Tensor>>& args,
                                   std::int64_t slot) {
  OpTapScope* scope = tl_op_current;
  if (scope == nullptr) return out;
  if (slot < 0) throw ModelError("galvani::op_tap called with a negative slot");
  std::vector<torch::Tensor> tensors;
  tensors.reserve(args.size());
  for (const auto& a : args) {
    const c10::optional<torch::Tensor> t = a;
    tensors.push_back(t.has_value() ? *t : torch::Tensor());
  }
  return scope->callback_(slot, out, tensors);
}

const char* op_tap_operator_name() { return "galvani::op_tap"; }

namespace taps {

TapFn capture(std::vector<torch::Tensor>& sink) {
  return [&sink](std::size_t i, const torch::Tensor& y) {
    if (sink.size() <= i) sink.resize(i + 1);
    sink[i] = y;
    // A fresh tensor flows on, so in-place ops after the layer cannot modify the captured one.
    return y.clone();
  };
}

TapFn leaf(std::vector<torch::Tensor>& sink) {
  return [&sink](std::size_t i, const torch::Tensor& y) {
    if (sink.size() <= i) sink.resize(i + 1);
    sink[i] = y.detach().clone().requires_grad_(true);
    return sink[i] * 1;  // a non-leaf copy: in-place ops downstream must not touch the leaf
  };
}

TapFn replace(const std::vector<torch::Tensor>& replacements) {
  return [&replacements](std::size_t i, const torch::Tensor& y) {
    if (i >= replacements.size() || !replacements[i].defined()) return y.clone();
    const auto& r = replacements[i];
    if (r.sizes() != y.sizes())
      throw ShapeError("tap replacement for layer " + std::to_string(i) + " has shape " + shape_string(r.sizes()) +
                       " but the layer output has " + shape_string(y.sizes()));
    return r.clone();
  };
}

TapFn blend(const std::vector<torch::Tensor>& masks, const std::vector<torch::Tensor>& constants) {
  return [&masks, &constants](std::size_t i, const torch::Tensor& y) {
    if (i >= masks.size() || !masks[i].defined()) return y.clone();
    const auto& m = masks[i];
    return y * m + constants.at(i) * (1 - m);
  };
}

}  // namespace taps

torch::Tensor layer_output(const TappedForward& forward, const torch::Tensor& input) {
  torch::Tensor output;
  forward.forward(input, [&output](std::size_t, const torch::Tensor& y) -> torch::Tensor {
    output = y.detach().clone();
    throw StopForward{};
  });
  return output;  // defined: a tapped layer that does not run is a ModelError of the forward
}

const char* linear_operator_name() { return "galvani::linear"; }

torch::Tensor dense_linear(const torch::Tensor& input, const torch::Tensor& weight,
                           const c10::optional<torch::Tensor>& bias) {
  if (input.dim() < 2 || weight.dim() != 2 || !input.device().is_cpu() || input.scalar_type() != torch::kFloat ||
      weight.scalar_type() != torch::kFloat || (bias && bias->defined() && bias->scalar_type() != torch::kFloat) ||
      !at::hasMKLDNN() || !at::globalContext().userEnabledMkldnn())
    return at::linear(input, weight, bias ? *bias : torch::Tensor());
  const auto in = input.size(-1), out = weight.size(0);
  const auto rows = input.numel() / std::max<std::int64_t>(in, 1);
  if (rows < 2 || in == 0) return at::linear(input, weight, bias ? *bias : torch::Tensor());
  const auto kernel = weight.view({out, in, 1, 1});
  const auto flat = input.reshape({rows, in, 1, 1});
  // Blocks of 32 rows: oneDNN picks a slower kernel for 64 and more (measured with DeepLIFT's products).
  constexpr std::int64_t kBlock = 32;
  torch::Tensor y;
  if (rows <= kBlock) {
    y = at::conv2d(flat, kernel, bias);
  } else {
    std::vector<torch::Tensor> parts;
    for (std::int64_t start = 0; start < rows; start += kBlock)
      parts.push_back(at::conv2d(flat.narrow(0, start, std::min(kBlock, rows - start)), kernel, bias));
    y = torch::cat(parts);
  }
  auto sizes = input.sizes().vec();
  sizes.back() = out;
  return y.view(sizes);
}

}  // namespace galvani

TORCH_LIBRARY(galvani, m) {
  // CONSERVATIVE: the JIT treats the op as side-effecting, so it is never removed, merged or folded.
  m.def(torch::schema("tap(Tensor x, int slot) -> Tensor", c10::AliasAnalysisKind::CONSERVATIVE));
  m.def(torch::schema("op_tap(Tensor out, Tensor?[] args, int slot) -> Tensor", c10::AliasAnalysisKind::CONSERVATIVE));
  m.def("linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor");
}
TORCH_LIBRARY_IMPL(galvani, CompositeImplicitAutograd, m) {
  m.impl("tap", &galvani::TapScope::dispatch);
  m.impl("op_tap", &galvani::OpTapScope::dispatch);
  m.impl("linear", &galvani::dense_linear);
}
