// The `galvani::tap` operator that backends insert into graphs, and ready-made tap behaviours.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "galvani/error.h"
#include "galvani/model.h"

namespace galvani {

/// Installs, for the current thread and the scope's lifetime, the callback that the `galvani::tap(Tensor x,
/// int slot) -> Tensor` operator calls. The operator is registered by the SDK library (only there); backends
/// insert it after each tapped call site. Nested scopes stack; without a scope the operator returns x.
class GALVANI_API TapScope {
 public:
  using Callback = std::function<torch::Tensor(std::int64_t slot, const torch::Tensor& x)>;
  explicit TapScope(Callback callback);
  ~TapScope();
  TapScope(const TapScope&) = delete;
  TapScope& operator=(const TapScope&) = delete;
  /// How many times each slot fired in this scope.
  const std::vector<int>& counts() const { return counts_; }

  /// Implementation detail of the operator.
  static torch::Tensor dispatch(const torch::Tensor& x, std::int64_t slot);

 private:
  Callback callback_;
  std::vector<int> counts_;
  TapScope* previous_;
};

/// The qualified name of the operator, for graph rewriting.
GALVANI_API const char* tap_operator_name();

/// `galvani::linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor`: aten::linear, computed on the
/// CPU in float32 as oneDNN 1×1 convolutions over blocks of 32 rows. Debian's libtorch sends aten::linear to the
/// reference BLAS, which is 5–10× slower for the row counts of a path chunk (docs/benchmarks.md); backends put
/// this operator in place of aten::linear. Other dtypes and devices, and libtorch builds without oneDNN, run
/// aten::linear itself. Differentiable in both modes (its parts are ATen ops).
GALVANI_API const char* linear_operator_name();
GALVANI_API torch::Tensor dense_linear(const torch::Tensor& input, const torch::Tensor& weight,
                                       const c10::optional<torch::Tensor>& bias);

/// Like TapScope, for the `galvani::op_tap(Tensor out, Tensor?[] args, int slot) -> Tensor` operator that
/// backends insert after individual operations: the callback gets the op's output and its tensor arguments
/// (undefined for None) and returns what flows on. Without a scope the operator returns `out`.
class GALVANI_API OpTapScope {
 public:
  using Callback =
      std::function<torch::Tensor(std::int64_t slot, const torch::Tensor& out, const std::vector<torch::Tensor>& args)>;
  explicit OpTapScope(Callback callback);
  ~OpTapScope();
  OpTapScope(const OpTapScope&) = delete;
  OpTapScope& operator=(const OpTapScope&) = delete;

  /// Implementation detail of the operator.
  static torch::Tensor dispatch(const torch::Tensor& out, const c10::List<c10::optional<torch::Tensor>>& args,
                                std::int64_t slot);

 private:
  Callback callback_;
  OpTapScope* previous_;
};

/// The qualified name of the op-tap operator, for graph rewriting.
GALVANI_API const char* op_tap_operator_name();

/// Tap behaviours for TapFn. All return a fresh tensor, never the layer output itself: in-place ops after
/// the layer must not write into a tensor the caller holds or autograd saved.
namespace taps {
/// Keeps the layer in the autograd graph and stores it in `sink` (indexed by tap index).
GALVANI_API TapFn capture(std::vector<torch::Tensor>& sink);
/// Replaces the layer by a detached leaf that requires grad (stored in `sink`): the layer becomes an input.
GALVANI_API TapFn leaf(std::vector<torch::Tensor>& sink);
/// Replaces the layer output by `replacements[i]` for tap i (undefined tensors leave that layer as it is).
GALVANI_API TapFn replace(const std::vector<torch::Tensor>& replacements);
/// Blends: `a*m + c*(1-m)` with a = the layer output, m = masks[i], c = constants[i] (broadcastable).
GALVANI_API TapFn blend(const std::vector<torch::Tensor>& masks, const std::vector<torch::Tensor>& constants);
}  // namespace taps

/// The output of `forward`'s first tapped layer on `input`, detached (a copy): the forward stops there
/// (StopForward), so nothing after the layer is computed. For activations that feed no backward; run it under
/// torch::NoGradGuard.
GALVANI_API torch::Tensor layer_output(const TappedForward& forward, const torch::Tensor& input);

}  // namespace galvani
