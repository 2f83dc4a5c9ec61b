// Graph rewriting for layer taps (see graph_rewrite.h).
#include "graph_rewrite.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/remove_mutation.h>
#include <torch/csrc/jit/runtime/operator.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <set>

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
  if (name.rfind("forward", 0) != 0) return false;
  // forward, forward1, … (traced calls) and forward__0, … (scripted overloads, e.g. nn.LSTM's)
  auto rest = name.begin() + kLength;
  if (name.compare(kLength, 2, "__") == 0 && name.size() > kLength + 2) rest += 2;
  return std::all_of(rest, name.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
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

// Marks every node after `first` and before `end` (and in their blocks) with `callers`: module calls use it
// to know how they were reached, other nodes to know which module's forward they belong to.
void mark_callers(Node* first, Node* end, const std::vector<std::string>& callers) {
  for (Node* n = first; n != end; n = n->next()) {
    n->ss_(kCallers, callers);
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
    if (n->hasAttribute(kCallers)) {
      if (!n->ss(kCallers).empty()) r.locations[n] = n->ss(kCallers).back();
      n->removeAttribute(kCallers);
    }
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

namespace {

c10::Symbol op_tap_symbol() {
  static const c10::Symbol symbol = c10::Symbol::fromQualString(op_tap_operator_name());
  return symbol;
}

bool is_tensor(const c10::TypePtr& type) { return type->isSubtypeOf(*c10::TensorType::get()); }

// Whether argument `i` of `n` is a tensor argument (Tensor or Optional[Tensor] in its schema).
bool tensor_argument(const Node* n, std::size_t i) {
  if (const auto* schema = n->maybeSchema(); schema && i < schema->arguments().size()) {
    c10::TypePtr type = schema->arguments()[i].type();
    if (const auto opt = type->cast<c10::OptionalType>()) type = opt->getElementType();
    return is_tensor(type);
  }
  return is_tensor(n->input(i)->type());
}

// Lists of ints, floats or bools typed as such (folded constants can come back as generic lists), so that
// int[] arguments read back with toIntVector.
c10::IValue typed(c10::IValue v) {
  if (!v.isList()) return v;
  const auto list = v.toList();
  const auto all = [&](auto is) { return std::all_of(list.begin(), list.end(), [&](const c10::IValue& e) { return is(e); }); };
  if (all([](const c10::IValue& e) { return e.isInt(); })) return c10::impl::toTypedList<std::int64_t>(list);
  if (all([](const c10::IValue& e) { return e.isDouble(); })) return c10::impl::toTypedList<double>(list);
  if (all([](const c10::IValue& e) { return e.isBool(); })) return c10::impl::toTypedList<bool>(list);
  return v;
}

// A non-tensor value known before the forward runs: a constant, or computed from constants only — a list
// built from them (traced kernel sizes), a branch on a constant (scripted `if stride is None:`), an op on
// them. Evaluated here rather than left to constant propagation, whose folding of such values is not
// reliable, so that listing the same model always gives the same arguments.
std::optional<c10::IValue> constant_value(Value* v, int depth = 0) {
  if (auto c = torch::jit::toIValue(v)) return typed(*c);
  constexpr int kMaxDepth = 16;
  Node* n = v->node();
  if (depth > kMaxDepth || is_tensor(v->type()) || n->kind() == c10::prim::Param ||
      n->kind() == c10::prim::GetAttr || n->hasSideEffects())
    return std::nullopt;
  if (n->kind() == c10::prim::If) {
    const auto condition = constant_value(n->input(0), depth + 1);
    if (!condition || !condition->isBool()) return std::nullopt;
    return constant_value(n->blocks()[condition->toBool() ? 0 : 1]->outputs()[v->offset()], depth + 1);
  }
  if (n->kind() == c10::prim::ListConstruct) {
    const auto list_type = v->type()->cast<c10::ListType>();
    if (!list_type) return std::nullopt;
    c10::impl::GenericList list(list_type->getElementType());
    for (Value* element : n->inputs()) {
      auto c = constant_value(element, depth + 1);
      if (!c) return std::nullopt;
      list.push_back(std::move(*c));
    }
    return typed(c10::IValue(list));
  }
  if (!n->blocks().empty() || !n->maybeOperator()) return std::nullopt;
  torch::jit::Stack stack;
  for (Value* input : n->inputs()) {
    auto c = constant_value(input, depth + 1);
    if (!c) return std::nullopt;
    stack.push_back(std::move(*c));
  }
  try {
    n->getOperation()(stack);
  } catch (const std::exception&) {
    return std::nullopt;  // an op that cannot run on its own here: the value stays unknown
  }
  if (stack.size() != n->outputs().size()) return std::nullopt;
  return typed(stack[v->offset()]);
}

// `aten::relu_` → `aten::relu`, when that exists; nullopt for ops that are not in place.
std::optional<c10::Symbol> out_of_place(const Node* n) {
  const std::string name = n->kind().toQualString();
  if (n->kind().ns() != c10::namespaces::aten || name.size() < 2 || name.back() != '_' || name[name.size() - 2] == '_')
    return std::nullopt;
  const auto symbol = c10::Symbol::fromQualString(name.substr(0, name.size() - 1));
  if (torch::jit::getAllOperatorsFor(symbol).empty()) return std::nullopt;
  return symbol;
}

// Rewrites the in-place `n` out of place; reads of its first argument after it now read the result.
Node* make_out_of_place(Graph& g, Node* n, c10::Symbol symbol) {
  torch::jit::WithInsertPoint guard(n);
  // Keyword-only arguments by name (`add_(self, other, *, alpha)`), or another overload would match.
  const auto& schema = n->schema();
  std::vector<torch::jit::NamedValue> args, kwargs;
  for (std::size_t i = 0; i < n->inputs().size(); ++i) {
    if (i < schema.arguments().size() && schema.arguments()[i].kwarg_only())
      kwargs.emplace_back(schema.arguments()[i].name(), n->input(i));
    else
      args.emplace_back(n->input(i));
  }
  Value* out = g.insert(symbol, args, kwargs);
  out->setType(n->output()->type());
  Value* modified = n->input(0);
  n->output()->replaceAllUsesWith(out);
  modified->replaceAllUsesAfterNodeWith(n, out);
  n->destroy();
  return out->node();
}

void set_location(Block* block, const std::string& location, std::map<const Node*, std::string>& locations) {
  for (Node* n : block->nodes()) {
    locations[n] = location;
    for (Block* b : n->blocks()) set_location(b, location, locations);
  }
}

// Inlines calls of free functions (scripted `F.relu`, `F.max_pool2d`, ...): their ops must be seen and tapped.
// The inlined nodes belong to the module whose forward made the call. Branches on constants (`if inplace:`)
// are then folded away.
void inline_functions(std::shared_ptr<Graph> graph, std::map<const Node*, std::string>& locations) {
  for (bool inlined = true; inlined;) {
    inlined = false;
    for (Node* n : all_nodes(*graph)) {
      if (n->kind() != c10::prim::CallFunction) continue;
      const auto type = n->input(0)->type()->cast<c10::FunctionType>();
      torch::jit::GraphFunction* fn = type ? torch::jit::tryToGraphFunction(*type->function()) : nullptr;
      if (!fn) continue;
      const std::string location = locations.count(n) ? locations.at(n) : "";
      locations.erase(n);
      Node* const before = n->prev();
      Node* const after = n->next();
      n->removeInput(0);  // the function value: the callee's graph takes the arguments only
      torch::jit::inlineCallTo(n, fn, /*inline_optimized_graph=*/false);
      for (Node* m = before->next(); m != after; m = m->next()) {
        locations[m] = location;
        for (Block* b : m->blocks()) set_location(b, location, locations);
      }
      inlined = true;
      break;  // the node list changed
    }
  }
  torch::jit::ConstantPropagation(graph);
  // Folding destroyed nodes: forget them (a new node could reuse an address).
  std::set<const Node*> alive;
  for (Node* n : all_nodes(*graph)) alive.insert(n);
  for (auto it = locations.begin(); it != locations.end();) it = alive.count(it->first) ? std::next(it) : locations.erase(it);
}

}  // namespace

OpGraph list_operations(const torch::jit::Module& module) {
  OpGraph r;
  r.tapped = insert_taps(module, std::nullopt);
  inline_functions(r.tapped.graph, r.tapped.locations);
  Graph& g = *r.tapped.graph;
  // Values computed from the model input (graph input 1); parameters and constants are not.
  std::set<const Value*> dependent;
  if (g.inputs().size() > 1) dependent.insert(g.inputs()[1]);
  std::map<const Value*, std::int64_t> producer;  // dependent tensor value → op site index
  std::vector<Node*> nodes = all_nodes(g);
  for (Node*& n : nodes) {
    bool depends = false;
    for (Value* v : n->inputs()) depends |= dependent.count(v) > 0;
    // A loop or branch depends on the input when anything inside it does (its outputs come from its blocks).
    for (Block* b : n->blocks())
      for (Value* v : b->outputs()) depends |= dependent.count(v) > 0;
    if (!depends) continue;
    if (n->kind() != tap_symbol() && n->outputs().size() == 1 && is_tensor(n->output()->type()) &&
        !n->kind().is_prim()) {
      if (const auto symbol = out_of_place(n)) {
        const std::string location = r.tapped.locations.count(n) ? r.tapped.locations.at(n) : "";
        r.tapped.locations.erase(n);
        n = make_out_of_place(g, n, *symbol);
        r.tapped.locations[n] = location;
      }
      OpSite site;
      site.op = n->kind().toQualString();
      if (site.op == linear_operator_name()) site.op = "aten::linear";  // route_dense_layers' stand-in
      if (const auto it = r.tapped.locations.find(n); it != r.tapped.locations.end()) site.location = it->second;
      for (std::size_t i = 0; i < n->inputs().size(); ++i) {
        Value* v = n->input(i);
        if (tensor_argument(n, i)) {
          site.args.emplace_back();
          const auto p = producer.find(v);
          site.producers.push_back(p != producer.end() ? p->second : dependent.count(v) ? -1 : -2);
        } else if (const auto constant = constant_value(v)) {
          site.args.push_back(*constant);
        } else {
          site.args.emplace_back();
          site.dynamic_args = true;
        }
      }
      producer[n->output()] = static_cast<std::int64_t>(r.sites.size());
      r.nodes.push_back(n);
      r.sites.push_back(std::move(site));
    }
    // A layer tap passes its input's producer on.
    if (n->kind() == tap_symbol())
      if (const auto p = producer.find(n->input(0)); p != producer.end()) producer[n->output()] = p->second;
    for (Value* v : n->outputs()) dependent.insert(v);
  }
  return r;
}

OpGraph copy_op_graph(const OpGraph& g) {
  OpGraph c;
  c.tapped.graph = g.tapped.graph->copy();
  c.tapped.sites = g.tapped.sites;
  c.tapped.untappable = g.tapped.untappable;
  c.sites = g.sites;
  // Copying keeps the order of nodes, blocks included: a site is the node at the same position.
  const auto from = all_nodes(*g.tapped.graph), to = all_nodes(*c.tapped.graph);
  std::map<const Node*, std::size_t> position;
  for (std::size_t i = 0; i < from.size(); ++i) position[from[i]] = i;
  for (const Node* n : g.nodes) c.nodes.push_back(to.at(position.at(n)));
  return c;
}

void insert_op_taps(OpGraph& r, const std::set<std::size_t>& sites) {
  Graph& g = *r.tapped.graph;
  for (std::size_t s : sites) {
    Node* n = r.nodes.at(s);
    torch::jit::WithInsertPoint guard(n->next());
    std::vector<Value*> tensors;
    for (std::size_t i = 0; i < n->inputs().size(); ++i)
      if (tensor_argument(n, i)) tensors.push_back(n->input(i));
    Value* list = g.insertNode(g.createList(c10::OptionalType::create(c10::TensorType::get()), tensors))->output();
    Value* out = n->output();
    Value* tapped = g.insert(op_tap_symbol(), {out, list, g.insertConstant(static_cast<std::int64_t>(s))});
    tapped->setType(out->type());
    out->replaceAllUsesWith(tapped);
    tapped->node()->replaceInput(0, out);
  }
}

bool cut_at_tap(const std::shared_ptr<Graph>& shared, std::int64_t slot) {
  Graph& graph = *shared;
  Node* tap = nullptr;
  for (Node* n : all_nodes(graph))
    if (n->kind() == tap_symbol() && torch::jit::constant_as<std::int64_t>(n->input(1)) == slot) tap = n;
  if (tap == nullptr) throw std::logic_error("cut_at_tap: no tap with that slot");
  Value* activation = graph.addInput("galvani_activation");
  activation->setType(tap->output()->type());
  tap->output()->replaceAllUsesWith(activation);
  tap->destroy();
  // In-place ops (ReLU(inplace=True), `out += identity`) make dead-code elimination keep the head: it cannot
  // prove their writes unobserved. Out of place, what only fed the layer is plainly dead.
  torch::jit::RemoveTensorMutation(shared);
  // Lists built by appending (a scripted `[conv(x) for conv in self.convs]`, unrolled) become one ListConstruct;
  // an append left over is a side effect that the cut below would delete, emptying the list.
  torch::jit::RemoveListMutation(shared);
  static const std::set<std::string> list_mutations = {"aten::append", "aten::insert", "aten::extend",
                                                       "aten::_set_item", "aten::pop", "aten::clear",
                                                       "aten::remove", "aten::reverse", "aten::sort"};
  bool lists_mutated = false;
  for (Node* n : all_nodes(graph)) lists_mutated |= list_mutations.count(n->kind().toQualString()) > 0;
  // Scripted modules check their input (BatchNorm's `_check_input_dim` raises) and count batches in training
  // mode: side effects that would keep the head alive. The model runs in eval mode on shapes the head made, so
  // the cut drops them with the rest of the head; unless a list is still mutated, where deleting side effects
  // would change values (the head is then kept, and the tail reads the input).
  torch::jit::EliminateDeadCode(graph.block(), true,
                                lists_mutated ? torch::jit::DCESideEffectPolicy::DONT_DELETE_NODES_WITH_SIDE_EFFECTS
                                              : torch::jit::DCESideEffectPolicy::ALLOW_DELETING_NODES_WITH_SIDE_EFFECTS);
  return graph.inputs().size() > 1 && graph.inputs()[1]->hasUses();
}

// Calls fn(module path, graph) once for every method graph of `module` and its submodules (scripted submodules
// of one class share their method graphs: each is visited once, with the first path that has it).
void for_each_method_graph(torch::jit::Module& module,
                           const std::function<void(const std::string&, const std::shared_ptr<Graph>&)>& fn) {
  std::set<const Graph*> seen;
  for (const auto& child : module.named_modules())
    for (const auto& method : child.value.get_methods()) {
      const auto graph = torch::jit::toGraphFunction(method.function()).graph();
      if (seen.insert(graph.get()).second) fn(child.name, graph);
    }
}

EvaluationMode set_evaluation_mode(torch::jit::Module& module, bool rewrite) {
  static const std::set<std::string> random = {
      "aten::rand",     "aten::rand_like",   "aten::randn",       "aten::randn_like", "aten::randint",
      "aten::randint_like", "aten::randperm", "aten::bernoulli",  "aten::bernoulli_", "aten::normal",
      "aten::normal_",  "aten::uniform_",    "aten::exponential_", "aten::multinomial", "aten::poisson",
      "aten::cauchy_",  "aten::geometric_",  "aten::log_normal_", "aten::random_"};
  EvaluationMode result;
  for_each_method_graph(module, [&](const std::string& where, const std::shared_ptr<Graph>& graph) {
    for (Node* n : all_nodes(*graph)) {
      const std::string kind = n->kind().toQualString();
      if (random.count(kind)) {
        result.random_ops.push_back(kind + (where.empty() ? std::string() : " in " + where));
        continue;
      }
      const c10::FunctionSchema* schema = n->kind().is_aten() ? n->maybeSchema() : nullptr;
      if (!schema) continue;
      const auto& args = schema->arguments();
      for (std::size_t i = 0; i < args.size() && i < n->inputs().size(); ++i) {
        if (args[i].name() != "train" && args[i].name() != "training") continue;
        const auto value = torch::jit::toIValue(n->input(i));
        if (!value || !value->isBool() || !value->toBool()) continue;
        (kind.find("dropout") != std::string::npos      ? result.dropout
         : kind.find("batch_norm") != std::string::npos ? result.batch_norm
                                                        : result.other)++;
        if (rewrite) {
          torch::jit::WithInsertPoint here(n);
          n->replaceInput(i, graph->insertConstant(false));
        }
      }
    }
  });
  return result;
}

int route_dense_layers(torch::jit::Module& module) {
  static const c10::Symbol linear = c10::Symbol::fromQualString("aten::linear");
  static const c10::Symbol dense = c10::Symbol::fromQualString(linear_operator_name());
  int routed = 0;
  for_each_method_graph(module, [&](const std::string&, const std::shared_ptr<Graph>& graph) {
    for (Node* n : all_nodes(*graph)) {
      if (n->kind() != linear || n->inputs().size() != 3 || n->outputs().size() != 1) continue;
      Node* d = graph->create(dense, n->inputs(), 1);
      d->insertBefore(n);
      d->copyMetadata(n);
      d->output()->copyMetadata(n->output());
      n->output()->replaceAllUsesWith(d->output());
      n->destroy();
      ++routed;
    }
  });
  return routed;
}

int avoid_fused_kernels(torch::jit::Module& module) {
  // PyTorch's inference fast paths: one fused kernel for a whole encoder layer or attention block, taken when
  // nothing requires grad. Their insides (attention, the MLP) then never run as modules, and no backward exists.
  static const std::set<std::string> fused = {"aten::_transformer_encoder_layer_fwd",
                                              "aten::_native_multi_head_attention",
                                              "aten::_transformer_decoder_only_layer_fwd"};
  int avoided = 0;
  for_each_method_graph(module, [&](const std::string&, const std::shared_ptr<Graph>& graph) {
    for (Node* n : all_nodes(*graph)) {
      if (!fused.count(n->kind().toQualString())) continue;
      // The innermost `if` holding the call: its condition becomes the constant that takes the other branch.
      Node* branch = n->owningBlock()->owningNode();
      if (branch == nullptr || branch->kind() != c10::prim::If) continue;
      const bool in_then = n->owningBlock() == branch->blocks()[0];
      torch::jit::WithInsertPoint here(branch);
      branch->replaceInput(0, graph->insertConstant(!in_then));
      ++avoided;
    }
  });
  return avoided;
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
