// Graph rewriting for layer taps (see graph_rewrite.h).
#include "graph_rewrite.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>

#include <algorithm>
#include <cctype>

#include "galvani/tap.h"

namespace galvani::plugins::torchscript {
namespace {

using torch::jit::Block;
using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

// Marks call sites already handled, so the scan can restart after each inlining without tapping twice.
const c10::Symbol kVisited = c10::Symbol::attr("galvani_visited");
// On call sites that came from inlining: the module paths of the calls inlined to reach them.
const c10::Symbol kCallers = c10::Symbol::attr("galvani_callers");

c10::Symbol tap_symbol() {
  static const c10::Symbol symbol = c10::Symbol::fromQualString(tap_operator_name());
  return symbol;
}

// `forward`, or `forward1`, `forward2`…: tracing a module called several times records one method per call.
bool is_forward_name(const std::string& name) {
  constexpr std::size_t kLength = 7;
  return name.rfind("forward", 0) == 0 &&
         std::all_of(name.begin() + kLength, name.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

// The module path of a module-typed value, when it is a chain of prim::GetAttr from `self` ("" for self).
std::optional<std::string> module_path(Value* v, Value* self) {
  std::vector<std::string> names;
  for (; v != self; v = v->node()->input(0)) {
    if (v->node()->kind() != c10::prim::GetAttr) return std::nullopt;
    names.push_back(v->node()->s(c10::attr::name));
  }
  std::string path;
  for (auto it = names.rbegin(); it != names.rend(); ++it) path += (path.empty() ? "" : ".") + *it;
  return path;
}

void collect_nodes(Block* block, std::vector<Node*>& out) {
  for (Node* n : block->nodes()) {
    out.push_back(n);
    for (Block* b : n->blocks()) collect_nodes(b, out);
  }
}

std::vector<Node*> all_nodes(Graph& graph) {
  std::vector<Node*> nodes;
  collect_nodes(graph.block(), nodes);
  return nodes;
}

// Marks every module call in the nodes after `first` and before `end` (and in their blocks) with `callers`.
void mark_callers(Node* first, Node* end, const std::vector<std::string>& callers) {
  for (Node* n = first; n != end; n = n->next()) {
    if (n->kind() == c10::prim::CallMethod) n->ss_(kCallers, callers);
    for (Block* b : n->blocks()) mark_callers(b->nodes().front(), b->return_node(), callers);
  }
}

// `__torch__.torch.nn.modules.conv.___torch_mangle_3.Conv2d` → `Conv2d`.
std::string class_name(const c10::TypePtr& type) {
  const auto cls = type->cast<c10::ClassType>();
  return cls && cls->name() ? cls->name()->name() : std::string();
}

}  // namespace

TappedGraph insert_taps(const torch::jit::Module& module, const std::optional<std::set<std::string>>& paths,
                        const std::set<std::string>& through) {
  TappedGraph r;
  r.graph = torch::jit::toGraphFunction(module.get_method("forward").function()).graph()->copy();
  Graph& g = *r.graph;
  Value* self = g.inputs().at(0);
  const auto is_tapped = [&](const std::string& path) { return !paths || paths->count(path) > 0; };
  const auto leads_to_tap = [&](const std::string& path) { return !paths || path.empty() || through.count(path); };

  std::map<Node*, CallSite> taps;  // tap node → its site (index assigned once the graph is final)
  std::int64_t next_slot = 0;
  for (bool inlined = true; inlined;) {
    inlined = false;
    for (Node* n : all_nodes(g)) {
      if (n->kind() != c10::prim::CallMethod || n->hasAttribute(kVisited)) continue;
      n->i_(kVisited, 1);
      const auto path = module_path(n->input(0), self);
      if (!path) continue;  // a module value of unknown origin cannot be named: leave the call as it is
      const std::string method = n->s(c10::attr::name);
      std::vector<std::string> callers;
      if (n->hasAttribute(kCallers)) callers = n->ss(kCallers);
      if (!path->empty() && is_forward_name(method) && is_tapped(*path)) {
        Value* out = n->output();
        if (out->type()->isSubtypeOf(*c10::TensorType::get())) {
          torch::jit::WithInsertPoint guard(n->next());
          Value* tapped = g.insert(tap_symbol(), {out, g.insertConstant(next_slot)});
          tapped->setType(out->type());
          out->replaceAllUsesWith(tapped);
          tapped->node()->replaceInput(0, out);
          taps.emplace(tapped->node(), CallSite{*path, class_name(n->input(0)->type()), 0, next_slot++, callers});
        } else {
          r.untappable.emplace(*path, out->type()->repr_str());
        }
      }
      if (!leads_to_tap(*path)) continue;
      const auto cls = n->input(0)->type()->cast<c10::ClassType>();
      torch::jit::Function* callee = cls ? cls->findMethod(method) : nullptr;
      torch::jit::GraphFunction* fn = callee ? torch::jit::tryToGraphFunction(*callee) : nullptr;
      if (!fn) continue;
      // The callee's unoptimised graph: its optimised graph has its own module calls inlined already, so the
      // call sites inside it could no longer be found. Tapped outputs of `n` now point at the inlined result.
      Node* const before = n->prev();
      Node* const after = n->next();
      torch::jit::inlineCallTo(n, fn, /*inline_optimized_graph=*/false);
      callers.push_back(*path);
      mark_callers(before->next(), after, callers);
      inlined = true;  // the inlined nodes are scanned in the next pass; inlining destroyed only `n`
    }
  }

  std::map<std::string, int> counts;
  for (Node* n : all_nodes(g)) {
    if (n->hasAttribute(kVisited)) n->removeAttribute(kVisited);
    if (n->hasAttribute(kCallers)) n->removeAttribute(kCallers);
    if (auto it = taps.find(n); it != taps.end()) {
      CallSite site = it->second;
      site.index = counts[site.path]++;
      r.sites.push_back(std::move(site));
    }
  }
  return r;
}

void remove_taps_except(Graph& graph, const std::set<std::int64_t>& keep) {
  for (Node* n : all_nodes(graph)) {
    if (n->kind() != tap_symbol()) continue;
    const auto slot = torch::jit::constant_as<std::int64_t>(n->input(1));
    if (slot && keep.count(*slot)) continue;
    n->output()->replaceAllUsesWith(n->input(0));
    n->destroy();
  }
  torch::jit::EliminateDeadCode(graph.block());
}

bool looks_frozen(const torch::jit::Module& module) {
  if (module.named_children().size() > 0 || module.hasattr("training")) return false;
  const auto graph = torch::jit::toGraphFunction(module.get_method("forward").function()).graph();
  bool tensor_constants = false;
  for (Node* n : all_nodes(*graph)) {
    if (n->kind() == c10::prim::CallMethod) return false;
    tensor_constants |= n->kind() == c10::prim::Constant && n->output()->type()->isSubtypeOf(*c10::TensorType::get());
  }
  return tensor_constants;
}

}  // namespace galvani::plugins::torchscript
