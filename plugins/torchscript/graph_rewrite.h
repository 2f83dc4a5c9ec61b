// Graph rewriting for layer taps: finds the call sites of submodules in a TorchScript forward and inserts the
// `galvani::tap` operator after them.
#pragma once

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "galvani/model.h"

namespace galvani::plugins::torchscript {

/// One tapped call site of a submodule in a rewritten graph.
struct CallSite {
  std::string path;       ///< module path, e.g. `layer1.0.relu`
  std::string type;       ///< class name without its qualification, e.g. `ReLU`
  int index = 0;          ///< among the call sites of the same path, in graph order
  std::int64_t slot = 0;  ///< the slot argument of the `galvani::tap` node after it
  /// The module calls inlined to reach this site, outermost first (`layer1`, `layer1.0` for
  /// `layer1.0.conv2`; a module passed as an argument is reached through the callee it was passed to).
  std::vector<std::string> callers;
};

/// A copy of a module's forward graph with taps after the call sites of some submodules.
struct TappedGraph {
  std::shared_ptr<torch::jit::Graph> graph;
  std::vector<CallSite> sites;  ///< in graph order; slots are 0..sites.size()-1
  /// Submodules called in the graph whose output is not a Tensor (path → output type): they cannot be tapped.
  std::map<std::string, std::string> untappable;
  /// For nodes that came from inlining: the module whose forward they belong to (innermost caller).
  std::map<const torch::jit::Node*, std::string> locations;
};

/// The fully inlined forward with every call site tapped, and its operations that depend on the input.
struct OpGraph {
  TappedGraph tapped;
  std::vector<torch::jit::Node*> nodes;  ///< op sites in graph order, parallel to `sites`
  std::vector<galvani::OpSite> sites;
};

/// Lists the operations of `module`'s forward that take a tensor depending on the model input and return a
/// tensor. In-place ones (`relu_`) are rewritten out of place (`relu`), later reads of their first argument
/// redirected to the result, so an op tap sees the op's real input. Deterministic: listing twice gives the
/// same sites in the same order.
OpGraph list_operations(const torch::jit::Module& module);

/// A copy of `g` whose `nodes` point into the copied graph (same sites, same order).
OpGraph copy_op_graph(const OpGraph& g);

/// Inserts `galvani::op_tap(out, [tensor args], slot = site index)` after each site in `sites`.
void insert_op_taps(OpGraph& g, const std::set<std::size_t>& sites);

/// Cuts `graph` (with exactly one tap left, of slot `slot`) at that tap: the tapped value becomes a new last
/// graph input and what only fed it is removed. Returns whether the cut graph still reads the model input.
bool cut_at_tap(const std::shared_ptr<torch::jit::Graph>& graph, std::int64_t slot);

/// Copies the root `forward` graph of `module` and inserts a tap after every call site of the modules in
/// `paths`, inlining the module calls in `through` (and calls on `self`) to reach them. With `paths` nullopt
/// every module call is inlined and every call site tapped: the listing of all layers, whose `callers` give
/// the `through` for any subset. The module's own method graphs are never modified: scripted models share
/// one class type between submodules of the same class, so editing a method graph would tap every instance.
TappedGraph insert_taps(const torch::jit::Module& module, const std::optional<std::set<std::string>>& paths,
                        const std::set<std::string>& through = {});

/// Removes every tap whose slot is not in `keep` (its input flows on in its place).
void remove_taps_except(torch::jit::Graph& graph, const std::set<std::int64_t>& keep);

/// What evaluation mode changed in a module's graphs (see set_evaluation_mode).
struct EvaluationMode {
  int dropout = 0;     ///< dropout calls recorded with train=True (by tracing in training mode)
  int batch_norm = 0;  ///< batch normalisations recorded with training=True
  int other = 0;       ///< other ops with a training flag recorded as True (rrelu, ...)
  /// Random-number ops left in the forwards (`aten::bernoulli in features`): results vary between runs.
  std::vector<std::string> random_ops;
};

/// Tracing records `self.training` as a constant, so `module.eval()` does not reach a model traced in training
/// mode: its dropout stays on and its batch normalisation keeps using (and updating) the batch's statistics.
/// With `rewrite`, every aten op argument named `train` or `training` that is the constant True becomes False
/// in every method graph of `module` and its submodules; without, they are only counted.
EvaluationMode set_evaluation_mode(torch::jit::Module& module, bool rewrite);

/// Puts `galvani::linear` (oneDNN on the CPU, see galvani/tap.h) in place of every `aten::linear` in every
/// method graph of `module` and its submodules; the same arguments, the same result. Returns how many. Op
/// listings (list_operations) still call them `aten::linear`.
int route_dense_layers(torch::jit::Module& module);

/// Makes every method graph of `module` skip PyTorch's fused inference kernels (nn.TransformerEncoderLayer's and
/// nn.MultiheadAttention's fast paths, taken when nothing requires grad): the branch that calls one is never
/// taken, so the layers inside run as modules, can be tapped and differentiated, whatever grad mode a forward
/// runs in. The unfused path computes the same function. Returns how many calls were routed around.
int avoid_fused_kernels(torch::jit::Module& module);

/// Whether `module` was frozen with torch.jit.freeze: its submodules and parameters were folded into constants
/// of a forward without module calls, and the `training` attribute is gone.
bool looks_frozen(const torch::jit::Module& module);

}  // namespace galvani::plugins::torchscript
