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
};

/// Copies the root `forward` graph of `module` and inserts a tap after every call site of the modules in
/// `paths`, inlining the module calls in `through` (and calls on `self`) to reach them. With `paths` nullopt
/// every module call is inlined and every call site tapped: the listing of all layers, whose `callers` give
/// the `through` for any subset. The module's own method graphs are never modified: scripted models share
/// one class type between submodules of the same class, so editing a method graph would tap every instance.
TappedGraph insert_taps(const torch::jit::Module& module, const std::optional<std::set<std::string>>& paths,
                        const std::set<std::string>& through = {});

/// Removes every tap whose slot is not in `keep` (its input flows on in its place).
void remove_taps_except(torch::jit::Graph& graph, const std::set<std::int64_t>& keep);

/// Whether `module` was frozen with torch.jit.freeze: its submodules and parameters were folded into constants
/// of a forward without module calls, and the `training` attribute is gone.
bool looks_frozen(const torch::jit::Module& module);

}  // namespace galvani::plugins::torchscript
