// The TorchScript model backend: loads traced and scripted models and runs forwards with taps on any layers.
//
// libtorch has no forward hooks for torch::jit::Module, so taps are a graph rewrite. For a set of layers the
// backend copies the root forward graph (the module's own method graphs are never edited: scripted models
// share class types between submodules), inlines module calls only along the paths that lead to the
// requested layers, inserts `galvani::tap(out, slot)` after each requested call site, and runs the copy as a
// GraphFunction with the original module as `self` in the SIMPLE executor (no profiling, no JIT autodiff
// subgraphs, so forward-mode AD and custom autograd functions run through it). Everything not tapped — skip
// connections included — runs as in the original forward.
//
// Call sites are identified by module path; a module called at several sites (a reused ReLU, traced
// `forward1`, `forward2`…) is listed once per site as `path#k`, k in graph order.
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "galvani/galvani.h"

namespace galvani::plugins::torchscript {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

const c10::Symbol kTapSymbol = c10::Symbol::fromQualString("galvani::tap");
const c10::Symbol kVisited = c10::Symbol::attr("galvani_visited");

bool is_forward_name(const std::string& n) {
  if (n.rfind("forward", 0) != 0) return false;
  return std::all_of(n.begin() + 7, n.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

bool is_strict_prefix(const std::string& prefix, const std::string& path) {
  if (prefix.empty()) return !path.empty();
  return path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 && path[prefix.size()] == '.';
}

// The module path of a module-typed value: a chain of prim::GetAttr from `self`.
std::optional<std::string> module_path(Value* v, Value* self) {
  if (v == self) return std::string();
  Node* n = v->node();
  if (n->kind() != c10::prim::GetAttr) return std::nullopt;
  auto parent = module_path(n->input(0), self);
  if (!parent) return std::nullopt;
  return parent->empty() ? n->s(c10::attr::name) : *parent + "." + n->s(c10::attr::name);
}

void collect_nodes(torch::jit::Block* b, std::vector<Node*>& out) {
  for (Node* n : b->nodes()) {
    out.push_back(n);
    for (auto* sb : n->blocks()) collect_nodes(sb, out);
  }
}

std::string class_name(Value* module_value) {
  auto cls = module_value->type()->cast<c10::ClassType>();
  if (!cls || !cls->name()) return "";
  return cls->name()->name();
}

// One tap node in a rewritten graph.
struct Site {
  std::string path;
  std::string type;
  int index = 0;        // among the sites of the same path, in graph order
  std::int64_t slot = 0;
};

// A rewritten forward: taps after every call site of `paths` (all module paths if `all`).
struct Rewritten {
  std::shared_ptr<Graph> graph;
  std::vector<Site> sites;  // in graph order
  std::vector<std::string> warnings;
};

Rewritten rewrite(const torch::jit::Module& module, const std::set<std::string>& paths, bool all) {
  Rewritten r;
  r.graph = torch::jit::toGraphFunction(module.get_method("forward").function()).graph()->copy();
  Graph& g = *r.graph;
  Value* self = g.inputs().at(0);
  std::map<Value*, Site> pending;  // tap output → site (index assigned at the end)
  std::int64_t next_slot = 0;
  for (bool again = true; again;) {
    again = false;
    std::vector<Node*> nodes;
    collect_nodes(g.block(), nodes);
    for (Node* n : nodes) {
      if (n->kind() != c10::prim::CallMethod || n->hasAttribute(kVisited)) continue;
      n->i_(kVisited, 1);
      const auto path = module_path(n->input(0), self);
      if (!path) continue;  // a module value of unknown origin: cannot be named, left as it is
      const std::string method = n->s(c10::attr::name);
      if (!path->empty() && is_forward_name(method) && (all || paths.count(*path))) {
        for (Value* out : n->outputs()) {
          if (!out->type()->isSubtypeOf(*c10::TensorType::get())) {
            r.warnings.push_back("call of '" + *path + "' returns " + out->type()->repr_str() + ", not a Tensor");
            continue;
          }
          torch::jit::WithInsertPoint guard(n->next());
          Value* slot = g.insertConstant(c10::IValue(next_slot));
          Value* tapped = g.insert(kTapSymbol, {out, slot});
          tapped->setType(out->type());
          out->replaceAllUsesWith(tapped);
          tapped->node()->replaceInput(0, out);
          pending[tapped] = Site{*path, class_name(n->input(0)), 0, next_slot++};
        }
      }
      bool inline_it = all || path->empty();
      for (const auto& p : paths) inline_it = inline_it || is_strict_prefix(*path, p);
      if (!inline_it) continue;
      auto cls = n->input(0)->type()->cast<c10::ClassType>();
      if (!cls) continue;
      torch::jit::GraphFunction* fn = torch::jit::tryToGraphFunction(cls->getMethod(method));
      if (!fn) continue;
      // The callee's unoptimised graph: its optimised graph is already inlined, child calls gone.
      torch::jit::inlineCallTo(n, fn, /*inline_optimized_graph=*/false);
      again = true;
      break;
    }
  }
  std::vector<Node*> nodes;
  collect_nodes(g.block(), nodes);
  for (Node* n : nodes)
    if (n->hasAttribute(kVisited)) n->removeAttribute(kVisited);
  std::map<std::string, int> counts;
  for (Node* n : nodes) {
    if (n->kind() != kTapSymbol) continue;
    auto it = pending.find(n->output());
    if (it == pending.end()) continue;
    Site s = it->second;
    s.index = counts[s.path]++;
    r.sites.push_back(s);
  }
  return r;
}

std::string site_name(const std::string& path, int index, int count) {
  return count > 1 ? path + "#" + std::to_string(index) : path;
}

class TorchScriptTappedForward : public TappedForward {
 public:
  TorchScriptTappedForward(torch::jit::Module module, std::shared_ptr<Graph> graph, std::vector<std::string> names,
                           std::map<std::int64_t, std::size_t> slot_to_layer)
      : module_(std::move(module)), names_(std::move(names)), slot_to_layer_(std::move(slot_to_layer)) {
    fn_ = std::make_unique<torch::jit::GraphFunction>(c10::QualifiedName("__galvani__.tapped_forward"), std::move(graph),
                                                      nullptr, torch::jit::ExecutorExecutionMode::SIMPLE);
    // Keep argument names and defaults of the original forward.
    fn_->setSchema(module_.get_method("forward").function().getSchema().cloneWithName("tapped_forward", ""));
  }

  const std::vector<std::string>& layers() const override { return names_; }

  torch::Tensor forward(const torch::Tensor& input, const TapFn& tap) const override {
    std::vector<int> fired(names_.size(), 0);
    TapScope scope([&](std::int64_t slot, const torch::Tensor& x) -> torch::Tensor {
      auto it = slot_to_layer_.find(slot);
      if (it == slot_to_layer_.end()) return x;
      ++fired[it->second];
      return tap(it->second, x);
    });
    std::vector<c10::IValue> stack{module_._ivalue(), input.is_inference() ? input.clone() : input};
    c10::IValue out;
    try {
      out = (*fn_)(std::move(stack));
    } catch (const StopForward&) {
      return {};
    }
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (fired[i] == 1) continue;
      if (fired[i] == 0)
        throw ModelError("layer '" + names_[i] + "' did not run in this forward (a branch not taken?)");
      throw ModelError("layer '" + names_[i] + "' ran " + std::to_string(fired[i]) +
                       " times in one forward (inside a loop); taps need one output per layer");
    }
    if (!out.isTensor())
      throw ModelError("the model returned a " + out.tagKind() + "; attributions need one Tensor [batch, classes]");
    return out.toTensor();
  }

 private:
  torch::jit::Module module_;
  std::vector<std::string> names_;
  std::map<std::int64_t, std::size_t> slot_to_layer_;
  std::unique_ptr<torch::jit::GraphFunction> fn_;
};

class TorchScriptModel : public Model {
 public:
  TorchScriptModel(torch::jit::Module module, std::string path, torch::Device device,
                   std::optional<torch::ScalarType> dtype)
      : module_(std::move(module)), path_(std::move(path)), device_(device) {
    for (const auto& p : module_.parameters()) p.requires_grad_(false);
    // The dtype inputs are converted to: as asked, else the parameters', else float32.
    dtype_ = dtype.value_or(torch::kFloat);
    if (!dtype)
      for (const auto& p : module_.parameters()) {
        dtype_ = p.scalar_type();
        break;
      }
    discover();
  }

  std::vector<LayerInfo> layers() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return layers_;
  }

  void probe(const torch::Tensor& example) override {
    std::vector<std::string> names;
    for (const auto& l : layers()) names.push_back(l.name);
    if (names.empty()) return;
    auto tapped = this->tapped(names);
    std::vector<std::vector<int64_t>> shapes(names.size());
    torch::NoGradGuard no_grad;
    tapped->forward(example.to(device_), [&](std::size_t i, const torch::Tensor& y) {
      shapes[i] = y.sizes().slice(1).vec();
      return y;
    });
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::size_t i = 0; i < names.size(); ++i) layers_[i].shape = shapes[i];
  }

  torch::Device device() const override { return device_; }
  torch::ScalarType dtype() const override { return dtype_; }

  torch::Tensor forward(const torch::Tensor& input) const override {
    c10::IValue out = const_cast<torch::jit::Module&>(module_).forward({input.is_inference() ? input.clone() : input});
    if (!out.isTensor())
      throw ModelError("the model returned a " + out.tagKind() + "; attributions need one Tensor [batch, classes]");
    return out.toTensor();
  }

  std::shared_ptr<const TappedForward> tapped(const std::vector<std::string>& names) const override {
    // Rewriting and the executor's first-run planning cost more than a small forward: keep every tapped
    // forward made, per layer list (a run asks for a handful).
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (auto it = cache_.find(names); it != cache_.end()) return it->second;
    }
    auto made = make_tapped(names);
    std::lock_guard<std::mutex> lock(mutex_);
    return cache_.emplace(names, std::move(made)).first->second;
  }

 private:
  std::shared_ptr<const TappedForward> make_tapped(const std::vector<std::string>& names) const {
    // Resolve names to (path, site index).
    std::vector<std::pair<std::string, int>> wanted;
    std::set<std::string> paths;
    for (const auto& name : names) {
      auto [path, index] = resolve(name);
      if (std::find(wanted.begin(), wanted.end(), std::make_pair(path, index)) != wanted.end())
        throw ModelError("layer '" + name + "' is requested twice in one tapped forward");
      wanted.emplace_back(path, index);
      paths.insert(path);
    }
    Rewritten r = rewrite(module_, paths, false);
    std::map<std::int64_t, std::size_t> slot_to_layer;
    std::set<std::int64_t> keep;
    for (const auto& s : r.sites) {
      auto it = std::find(wanted.begin(), wanted.end(), std::make_pair(s.path, s.index));
      if (it == wanted.end()) continue;
      slot_to_layer[s.slot] = static_cast<std::size_t>(it - wanted.begin());
      keep.insert(s.slot);
    }
    for (std::size_t i = 0; i < names.size(); ++i) {
      bool found = false;
      for (const auto& [slot, layer] : slot_to_layer) found |= layer == i;
      if (!found) throw ModelError("layer '" + names[i] + "' has no call site in the forward graph");
    }
    // Drop taps at call sites of those modules that were not asked for.
    std::vector<Node*> nodes;
    collect_nodes(r.graph->block(), nodes);
    for (Node* n : nodes) {
      if (n->kind() != kTapSymbol) continue;
      const auto slot = torch::jit::constant_as<std::int64_t>(n->input(1));
      if (slot && keep.count(*slot)) continue;
      n->output()->replaceAllUsesWith(n->input(0));
      n->destroy();
    }
    torch::jit::EliminateDeadCode(r.graph);
    return std::make_shared<TorchScriptTappedForward>(module_, r.graph, names, std::move(slot_to_layer));
  }

  void discover() {
    Rewritten r = rewrite(module_, {}, true);
    std::map<std::string, int> counts;
    for (const auto& s : r.sites) ++counts[s.path];
    for (const auto& s : r.sites) {
      LayerInfo info;
      info.module = s.path;
      info.type = s.type;
      info.call_index = s.index;
      info.call_count = counts[s.path];
      info.name = site_name(s.path, s.index, info.call_count);
      layers_.push_back(info);
    }
    for (const auto& child : module_.named_modules()) {
      if (child.name.empty()) continue;
      if (!counts.count(child.name)) uncalled_.insert(child.name);
    }
  }

  std::pair<std::string, int> resolve(const std::string& name) const {
    std::string path = name;
    int index = -1;
    if (auto hash = name.rfind('#'); hash != std::string::npos) {
      path = name.substr(0, hash);
      try {
        index = std::stoi(name.substr(hash + 1));
      } catch (const std::exception&) {
        throw ModelError("layer '" + name + "': the part after '#' must be a call index");
      }
    }
    int count = 0;
    for (const auto& l : layers_)
      if (l.module == path) count = l.call_count;
    if (count == 0) {
      if (uncalled_.count(path))
        throw ModelError("layer '" + path + "' is a submodule of " + path_ +
                         " but is never called in its forward graph. A traced nn.Identity (or any module that "
                         "returns its input unchanged) leaves no call behind when traced: script the model with "
                         "torch.jit.script, or tap the layer before or after it");
      (void)layer(name);  // throws with the closest names
    }
    if (index < 0) {
      if (count > 1) {
        std::ostringstream msg;
        msg << "layer '" << path << "' is called " << count << " times in one forward; name the call: ";
        for (int k = 0; k < count; ++k) msg << (k ? ", " : "") << path << "#" << k;
        throw ModelError(msg.str());
      }
      index = 0;
    } else if (index >= count) {
      throw ModelError("layer '" + name + "': '" + path + "' has " + std::to_string(count) + " call site" +
                       (count == 1 ? "" : "s") + (count == 1 ? "; use '" + path + "'" : ""));
    } else if (count == 1) {
      throw ModelError("layer '" + name + "': '" + path + "' has one call site; use '" + path + "'");
    }
    return {path, index};
  }

  torch::jit::Module module_;
  std::string path_;
  torch::Device device_;
  torch::ScalarType dtype_;
  mutable std::mutex mutex_;
  std::vector<LayerInfo> layers_;
  std::set<std::string> uncalled_;
  mutable std::map<std::vector<std::string>, std::shared_ptr<const TappedForward>> cache_;
};

bool looks_frozen(const torch::jit::Module& m) {
  if (m.named_children().size() > 0 || m.parameters().size() > 0) return false;
  const auto graph = torch::jit::toGraphFunction(m.get_method("forward").function()).graph();
  for (Node* n : graph->nodes())
    if (n->kind() == c10::prim::Constant && n->output()->type()->isSubtypeOf(*c10::TensorType::get())) return true;
  return false;
}

class TorchScriptBackend : public ModelBackend {
 public:
  std::shared_ptr<Model> load(const std::string& path, const ModelOptions& options) const override {
    if (options.device.is_cuda() && !torch::cuda::is_available())
      throw ModelError("cannot load '" + path + "' on " + options.device.str() + ": no CUDA device is available");
    torch::jit::Module module;
    try {
      module = torch::jit::load(path, options.device);
    } catch (const std::exception& e) {
      std::string why = e.what();
      if (auto nl = why.find('\n'); nl != std::string::npos) why.resize(nl);
      throw ModelError("cannot load TorchScript model '" + path + "': " + why +
                       " (save models with torch.jit.save(torch.jit.trace(model, example)) or torch.jit.script)");
    }
    if (!module.find_method("forward"))
      throw ModelError("the TorchScript model '" + path + "' has no forward method");
    if (looks_frozen(module))
      throw ModelError("the model '" + path +
                       "' was frozen with torch.jit.freeze, which folds its submodules into constants, so it has "
                       "no layers left to tap; save the scripted or traced module before freezing it");
    module.eval();
    if (options.dtype) module.to(*options.dtype);
    return std::make_shared<TorchScriptModel>(std::move(module), path, options.device, options.dtype);
  }
};

}  // namespace
}  // namespace galvani::plugins::torchscript

GALVANI_PLUGIN("torchscript", "0.1.0", [](galvani::Registrar& r) {
  r.add_backend("torchscript", "TorchScript models (traced or scripted), taps by graph rewriting",
                [] { return std::make_unique<galvani::plugins::torchscript::TorchScriptBackend>(); });
})
