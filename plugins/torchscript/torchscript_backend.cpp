// The TorchScript model backend: loads traced and scripted models and runs forwards with taps on any layers.
//
// libtorch has no forward hooks for torch::jit::Module, so taps are a graph rewrite (graph_rewrite.h): for a set
// of layers the backend copies the root forward graph, inlines module calls only along the paths to those layers,
// inserts `galvani::tap(out, slot)` after each requested call site, and runs the copy as a GraphFunction with the
// original module as `self`. Everything not tapped, skip connections included, runs as in the original forward.
//
// Call sites are named by module path; a module called at several sites (a reused ReLU, traced `forward1`,
// `forward2`…) is listed once per site as `path#k`, k in graph order.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

#include "galvani/galvani.h"
#include "graph_rewrite.h"

namespace galvani::plugins::torchscript {
namespace {

/// `text` as a small non-negative index ("0" to "999999": a position, a call index), or nullopt.
std::optional<std::size_t> small_index(const std::string& text) {
  if (text.empty() || text.size() > 6 ||
      !std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); }))
    return std::nullopt;
  return static_cast<std::size_t>(std::stoul(text));
}

/// One element of a forward's result, for messages: its type and, for a Tensor, its shape.
std::string describe_value(const c10::IValue& v) {
  if (v.isTensor()) return "Tensor " + shape_string(v.toTensor().sizes());
  return v.tagKind();
}

/// What a forward returned, for messages: "a tuple of 2 (0: Tensor [1, 3], 1: …)", "a dict {"logits": …}".
std::string describe_result(const c10::IValue& out) {
  std::string listing;
  if (out.isGenericDict()) {
    for (const auto& entry : out.toGenericDict())
      listing += (listing.empty() ? "" : ", ") +
                 (entry.key().isString() ? "\"" + entry.key().toStringRef() + "\"" : entry.key().tagKind()) + ": " +
                 describe_value(entry.value());
    return "the model returns a dict {" + listing + "}";
  }
  const c10::ArrayRef<c10::IValue> elements =
      out.isTuple() ? out.toTupleRef().elements().asArrayRef() : out.toListRef();
  for (std::size_t i = 0; i < elements.size(); ++i)
    listing += (i ? ", " : "") + std::to_string(i) + ": " + describe_value(elements[i]);
  return std::string("the model returns a ") + (out.isTuple() ? "tuple" : "list") + " of " +
         std::to_string(elements.size()) + " (" + listing + ")";
}

/// Picks the Tensor [B, C] (or [B]) that attributions explain from what the forward returns: the Tensor itself,
/// or the element `[model] output_element` names of a tuple, a list or a dict (ModelOptions::output_element).
/// Runs after every forward: what the result holds is described only when the choice fails.
class OutputSelector {
 public:
  explicit OutputSelector(std::string element = "") : element_(std::move(element)), position_(small_index(element_)) {}

  torch::Tensor operator()(const c10::IValue& out) const {
    if (out.isTensor()) {
      if (!element_.empty())
        throw ModelError("[model] output_element = \"" + element_ +
                         "\", but the model returns one Tensor, not a tuple or dict: remove the key");
      return out.toTensor();
    }
    if (out.isTuple() || out.isList()) {
      if (element_.empty())
        throw ModelError(describe_result(out) + "; set [model] output_element to the position of the Tensor to explain");
      const c10::ArrayRef<c10::IValue> elements =
          out.isTuple() ? out.toTupleRef().elements().asArrayRef() : out.toListRef();
      if (!position_ || *position_ >= elements.size())
        throw ModelError(describe_result(out) + "; [model] output_element = \"" + element_ +
                         "\" is not one of its positions (0 to " + std::to_string(elements.size() - 1) + ")");
      return pick(elements[*position_], out);
    }
    if (out.isGenericDict()) {
      if (element_.empty())
        throw ModelError(describe_result(out) + "; set [model] output_element to the key of the Tensor to explain");
      for (const auto& entry : out.toGenericDict())
        if (entry.key().isString() && entry.key().toStringRef() == element_) return pick(entry.value(), out);
      throw ModelError(describe_result(out) + "; it has no key \"" + element_ + "\" ([model] output_element)");
    }
    throw ModelError("the model returned a " + out.tagKind() +
                     "; attributions need a forward that returns a Tensor [batch, classes], or a tuple, list or dict "
                     "of them with [model] output_element naming one");
  }

 private:
  torch::Tensor pick(const c10::IValue& v, const c10::IValue& out) const {
    if (!v.isTensor())
      throw ModelError(describe_result(out) + "; [model] output_element = \"" + element_ + "\" is a " + v.tagKind() +
                       ", not a Tensor");
    return v.toTensor();
  }

  std::string element_;
  std::optional<std::size_t> position_;  // element_ as a position, when it is one
};

/// Tensors made under c10::InferenceMode cannot enter autograd; a copy made here can.
torch::Tensor autograd_safe(const torch::Tensor& input) { return input.is_inference() ? input.clone() : input; }

/// A forward with taps, run by the SIMPLE graph executor: no profiling and no JIT autodiff subgraphs, so
/// forward-mode AD (dual tensors) and custom autograd functions go through it, and the first call costs no
/// profiling runs.
///
/// Contract with taps: what a tap returns flows on in place of the layer output, and ops after the layer may
/// modify it in place (ResNet's `out += identity`, `ReLU(inplace=True)`). A tap that keeps the output (to
/// capture it or to differentiate with respect to it) must therefore return a different tensor; the SDK's
/// `taps::*` helpers return fresh tensors, so nothing here clones again. Grad mode is the caller's.
/// Thread-safe: the tap callback is installed per thread (TapScope) and per call.
class TorchScriptTappedForward : public TappedForward, public OpTappedForward {
 public:
  TorchScriptTappedForward(torch::jit::Module module, std::shared_ptr<torch::jit::Graph> graph,
                           std::vector<std::string> names, std::map<std::int64_t, std::size_t> slot_to_layer,
                           OutputSelector output, std::vector<std::size_t> sites = {})
      : module_(std::move(module)), names_(std::move(names)), slot_to_layer_(std::move(slot_to_layer)),
        sites_(std::move(sites)), output_(std::move(output)) {
    fn_ = std::make_unique<torch::jit::GraphFunction>(c10::QualifiedName("__galvani__.tapped_forward"),
                                                      std::move(graph), nullptr,
                                                      torch::jit::ExecutorExecutionMode::SIMPLE);
    // The original argument names and defaults.
    fn_->setSchema(module_.get_method("forward").function().getSchema().cloneWithName("tapped_forward", ""));
  }

  const std::vector<std::string>& layers() const override { return names_; }
  const std::vector<std::size_t>& sites() const override { return sites_; }

  torch::Tensor forward(const torch::Tensor& input, const TapFn& tap) const override {
    return run(input, tap, nullptr, /*strict=*/true);
  }

  torch::Tensor forward(const torch::Tensor& input, const TapFn& layer_tap, const OpTapFn& op_tap) const override {
    return run(input, layer_tap, &op_tap, /*strict=*/true);
  }

  /// The forward; `strict` checks that every layer went through its tap exactly once (off for probing shapes,
  /// where layers in branches not taken or in loops are expected).
  torch::Tensor run(const torch::Tensor& input, const TapFn& tap, const OpTapFn* op_tap, bool strict) const {
    std::vector<int> fired(names_.size(), 0);
    // The interpreter turns exceptions thrown inside an operator into std::runtime_error with a TorchScript
    // traceback; the tap's own exception (a galvani::ShapeError, StopForward) is kept here and rethrown as is.
    std::exception_ptr tap_error;
    bool stopped = false;
    TapScope scope([&](std::int64_t slot, const torch::Tensor& x) -> torch::Tensor {
      const auto it = slot_to_layer_.find(slot);
      if (it == slot_to_layer_.end()) return x;
      ++fired[it->second];
      try {
        return tap(it->second, x);
      } catch (const StopForward&) {
        stopped = true;
        throw;
      } catch (...) {
        tap_error = std::current_exception();
        throw;
      }
    });
    std::optional<OpTapScope> op_scope;
    if (op_tap)
      op_scope.emplace([&](std::int64_t slot, const torch::Tensor& out, const std::vector<torch::Tensor>& args) {
        try {
          return (*op_tap)(static_cast<std::size_t>(slot), out, args);
        } catch (const StopForward&) {
          stopped = true;
          throw;
        } catch (...) {
          tap_error = std::current_exception();
          throw;
        }
      });
    c10::IValue out;
    try {
      out = (*fn_)({module_._ivalue(), autograd_safe(input)});
    } catch (...) {
      if (stopped) return {};
      if (tap_error) std::rethrow_exception(tap_error);
      throw;
    }
    for (std::size_t i = 0; strict && i < names_.size(); ++i) {
      if (fired[i] == 0)
        throw ModelError("layer '" + names_[i] + "' did not run in this forward (a branch not taken?)");
      if (fired[i] > 1)
        throw ModelError("layer '" + names_[i] + "' ran " + std::to_string(fired[i]) +
                         " times in one forward (it is called inside a loop); taps need one output per layer");
    }
    return output_(out);
  }

 private:
  torch::jit::Module module_;
  std::vector<std::string> names_;
  std::map<std::int64_t, std::size_t> slot_to_layer_;
  std::vector<std::size_t> sites_;
  OutputSelector output_;
  std::unique_ptr<torch::jit::GraphFunction> fn_;
};

/// The graph after one layer, cut there (graph_rewrite.h: cut_at_tap), run by the SIMPLE executor.
class TorchScriptTail : public TailForward {
 public:
  TorchScriptTail(torch::jit::Module module, std::shared_ptr<torch::jit::Graph> graph, std::string layer,
                  bool needs_input, std::vector<c10::IValue> defaults, OutputSelector output)
      : module_(std::move(module)), layer_(std::move(layer)), needs_input_(needs_input),
        defaults_(std::move(defaults)), output_(std::move(output)) {
    fn_ = std::make_unique<torch::jit::GraphFunction>(c10::QualifiedName("__galvani__.tail"), std::move(graph),
                                                      nullptr, torch::jit::ExecutorExecutionMode::SIMPLE);
  }
  const std::string& layer() const override { return layer_; }
  bool needs_input() const override { return needs_input_; }
  std::string cut_note() const override {
    return needs_input_ ? "the graph cannot be cut cleanly after '" + layer_ +
                              "' (something after it reads the model input, e.g. a skip connection around it, or "
                              "a list that the part before it appends to), so each evaluation also runs the part of "
                              "the network that feeds it from the input"
                        : "";
  }
  torch::Tensor forward(const torch::Tensor& activation, const torch::Tensor& input) const override {
    if (needs_input_ && (!input.defined() || input.size(0) != activation.size(0)))
      throw ShapeError("the tail after layer '" + layer_ + "' needs the input row-aligned with the activation (" +
                       std::to_string(activation.size(0)) + " rows)");
    std::vector<c10::IValue> stack{module_._ivalue(), needs_input_ ? autograd_safe(input) : activation};
    stack.insert(stack.end(), defaults_.begin(), defaults_.end());
    stack.emplace_back(autograd_safe(activation));
    return output_(fn_->operator()(std::move(stack)));
  }

 private:
  torch::jit::Module module_;
  std::string layer_;
  bool needs_input_;
  std::vector<c10::IValue> defaults_;  // forward arguments after the input, at their defaults
  OutputSelector output_;
  std::unique_ptr<torch::jit::GraphFunction> fn_;
};

class TorchScriptModel : public Model {
 public:
  TorchScriptModel(torch::jit::Module module, std::string path, torch::Device device, torch::ScalarType dtype,
                   OutputSelector output)
      : module_(std::move(module)), path_(std::move(path)), output_(std::move(output)), device_(device),
        dtype_(dtype) {
    const TappedGraph all = insert_taps(module_, std::nullopt);
    std::map<std::string, int> counts;
    for (const auto& s : all.sites) ++counts[s.path];
    for (const auto& s : all.sites) {
      LayerInfo info;
      info.name = counts[s.path] > 1 ? s.path + "#" + std::to_string(s.index) : s.path;
      info.module = s.path;
      info.type = s.type;
      info.call_index = s.index;
      info.call_count = counts[s.path];
      layers_.push_back(std::move(info));
      callers_[s.path].insert(s.callers.begin(), s.callers.end());
    }
    untappable_ = all.untappable;
    for (const auto& child : module_.named_modules())
      if (!child.name.empty() && !counts.count(child.name) && !untappable_.count(child.name))
        uncalled_.insert(child.name);
  }

  std::vector<LayerInfo> layers() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return layers_;
  }

  void probe(const torch::Tensor& example) override {
    std::vector<std::string> names;
    for (const auto& l : layers()) names.push_back(l.name);
    if (names.empty()) return;
    std::vector<std::optional<std::vector<std::int64_t>>> shapes(names.size());
    torch::Tensor x = example.to(device_);
    if (x.is_floating_point()) x = x.to(dtype_);
    // A model kept between runs (a Python session) is probed once per input shape and kind.
    const auto key = std::make_pair(x.sizes().slice(1).vec(), x.scalar_type());
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (probed_ == key) return;
    }
    torch::NoGradGuard no_grad;
    // Not cached: a forward with every layer tapped is for this one call.
    make_tapped(names)->run(
        x,
        [&](std::size_t i, const torch::Tensor& y) {
          if (!shapes[i] && y.dim() > 0) shapes[i] = y.sizes().slice(1).vec();
          return y;
        },
        nullptr, /*strict=*/false);
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::size_t i = 0; i < names.size(); ++i) layers_[i].shape = shapes[i].value_or(std::vector<std::int64_t>{});
    probed_ = key;
  }

  torch::Device device() const override { return device_; }
  torch::ScalarType dtype() const override { return dtype_; }
  std::vector<std::string> notes() const override { return notes_; }
  void set_notes(std::vector<std::string> notes) { notes_ = std::move(notes); }
  ModelCapabilities capabilities() const override {
    ModelCapabilities c;
    c.operations = true;
    c.tail_cut = true;
    c.randomized = true;
    return c;
  }

  std::shared_ptr<Model> randomized(const std::vector<std::string>& modules, std::uint64_t seed) const override {
    torch::jit::Module copy = module_.clone();  // its own parameter tensors: the original stays as it is
    std::set<std::string> known;
    for (const auto& m : copy.named_modules()) known.insert(m.name);
    for (const auto& name : modules)
      if (!name.empty() && !known.count(name)) {
        std::string valid;
        for (const auto& k : known)
          if (!k.empty()) valid += (valid.empty() ? "" : ", ") + k;
        throw ModelError("cannot randomise module '" + name + "': the model has no such module (modules: " + valid + ")");
      }
    const auto under = [&](const std::string& parameter) {
      for (const auto& name : modules)
        if (name.empty() || parameter.rfind(name + ".", 0) == 0) return true;
      return false;
    };
    auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    torch::NoGradGuard no_grad;
    for (const auto& p : copy.named_parameters(/*recurse=*/true)) {
      if (!under(p.name)) continue;
      const auto original = p.value.detach().to(torch::kCPU, torch::kDouble);
      const double mean = original.mean().item<double>();
      const double sd = original.numel() > 1 ? original.std().item<double>() : std::abs(original.item<double>());
      const auto fresh = at::normal(mean, sd, original.sizes(), generator, torch::TensorOptions().dtype(torch::kDouble));
      p.value.copy_(fresh.to(p.value.options()));
    }
    auto model = std::make_shared<TorchScriptModel>(copy, path_, device_, dtype_, output_);
    model->notes_ = notes_;
    std::lock_guard<std::mutex> lock(mutex_);
    model->layers_ = layers_;  // same layers and shapes
    return model;
  }

  torch::Tensor forward(const torch::Tensor& input) const override {
    torch::jit::Module module = module_;  // a handle: Module::forward is not const
    return output_(module.forward({autograd_safe(input)}));
  }

  std::shared_ptr<const TappedForward> tapped(const std::vector<std::string>& names) const override {
    // Rewriting costs more than a small forward and a run asks for a handful of layer lists: keep them.
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (auto it = cache_.find(names); it != cache_.end()) return it->second;
    }
    std::shared_ptr<const TappedForward> made = make_tapped(names);
    std::lock_guard<std::mutex> lock(mutex_);
    return cache_.emplace(names, std::move(made)).first->second;
  }

  std::shared_ptr<const TailForward> tail(const std::string& name) const override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (auto it = tails_.find(name); it != tails_.end()) return it->second;
    }
    const std::vector<Site> wanted = resolve_all({name});
    std::unique_lock<std::mutex> build(build_mutex_);
    // Everything inlined: a module call left in the graph counts as a side effect, so dead-code elimination
    // would keep the head's calls.
    TappedGraph rewritten = insert_taps(module_, std::nullopt);
    const std::int64_t slot = keep_layer_taps(rewritten, wanted).begin()->first;
    const bool needs_input = cut_at_tap(rewritten.graph, slot);
    std::vector<c10::IValue> defaults;
    const auto& schema = module_.get_method("forward").function().getSchema();
    for (std::size_t i = 2; i < schema.arguments().size(); ++i) {
      if (!schema.arguments()[i].default_value())
        throw ModelError("the forward of '" + path_ + "' has a required argument '" + schema.arguments()[i].name() +
                         "' besides the input; attributions need forward(input)");
      defaults.push_back(*schema.arguments()[i].default_value());
    }
    auto made =
        std::make_shared<TorchScriptTail>(module_, rewritten.graph, name, needs_input, std::move(defaults), output_);
    build.unlock();
    std::lock_guard<std::mutex> lock(mutex_);
    return tails_.emplace(name, std::move(made)).first->second;
  }

  std::vector<OpSite> operations() const override {
    std::lock_guard<std::mutex> lock(build_mutex_);
    return op_graph().sites;
  }

  std::shared_ptr<const OpTappedForward> op_tapped(const std::vector<std::string>& names,
                                                   const std::vector<std::size_t>& sites) const override {
    const auto key = std::make_pair(names, sites);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (auto it = op_cache_.find(key); it != op_cache_.end()) return it->second;
    }
    const std::vector<Site> wanted = resolve_all(names);
    std::unique_lock<std::mutex> build(build_mutex_);
    // A copy of the listed graph, so the site indices are those operations() gave.
    OpGraph g = copy_op_graph(op_graph());
    std::set<std::size_t> chosen;
    for (auto s : sites) {
      if (s >= g.sites.size())
        throw ModelError("op site " + std::to_string(s) + " does not exist (the model has " +
                         std::to_string(g.sites.size()) + ")");
      if (!chosen.insert(s).second) throw ModelError("op site " + std::to_string(s) + " is requested twice");
    }
    insert_op_taps(g, chosen);
    auto slot_to_layer = keep_layer_taps(g.tapped, wanted);
    auto made = std::make_shared<TorchScriptTappedForward>(module_, g.tapped.graph, names, std::move(slot_to_layer),
                                                           output_, sites);
    build.unlock();
    std::lock_guard<std::mutex> lock(mutex_);
    return op_cache_.emplace(key, std::move(made)).first->second;
  }

 private:
  /// One call site: a module path and which of its calls.
  using Site = std::pair<std::string, int>;

  std::shared_ptr<TorchScriptTappedForward> make_tapped(const std::vector<std::string>& names) const {
    const std::vector<Site> wanted = resolve_all(names);
    std::set<std::string> paths, through;
    for (const auto& site : wanted) {
      paths.insert(site.first);
      const auto& callers = callers_.at(site.first);
      through.insert(callers.begin(), callers.end());
    }
    std::lock_guard<std::mutex> build(build_mutex_);
    // Only the calls on the way to the requested layers are inlined; the rest stay calls, as in the model.
    TappedGraph rewritten = insert_taps(module_, paths, through);
    auto slot_to_layer = keep_layer_taps(rewritten, wanted);
    return std::make_shared<TorchScriptTappedForward>(module_, rewritten.graph, names, std::move(slot_to_layer),
                                                      output_);
  }

  /// The fully inlined graph with its op sites, listed once. Call with build_mutex_ held.
  const OpGraph& op_graph() const {
    if (!op_graph_) op_graph_ = list_operations(module_);
    return *op_graph_;
  }

  /// Layer names → call sites, refusing a layer named twice.
  std::vector<Site> resolve_all(const std::vector<std::string>& names) const {
    std::vector<Site> wanted;
    for (const auto& name : names) {
      Site site = resolve(name);
      if (std::find(wanted.begin(), wanted.end(), site) != wanted.end())
        throw ModelError("layer '" + name + "' is requested twice in one tapped forward");
      wanted.push_back(std::move(site));
    }
    return wanted;
  }

  /// Removes every tap of `g` but those of `wanted`; returns tap slot → index into `wanted`. Every rewrite
  /// sees the call sites the full listing saw, so a site not found is a bug here.
  std::map<std::int64_t, std::size_t> keep_layer_taps(TappedGraph& g, const std::vector<Site>& wanted) const {
    std::map<std::int64_t, std::size_t> slot_to_layer;
    std::set<std::int64_t> keep;
    for (const auto& s : g.sites) {
      const auto it = std::find(wanted.begin(), wanted.end(), Site{s.path, s.index});
      if (it == wanted.end()) continue;  // another call site of a requested module
      slot_to_layer[s.slot] = static_cast<std::size_t>(it - wanted.begin());
      keep.insert(s.slot);
    }
    if (keep.size() != wanted.size())
      throw ModelError("internal error in the TorchScript backend: not every requested layer of '" + path_ +
                       "' was found in the rewritten graph");
    remove_taps_except(*g.graph, keep);
    return slot_to_layer;
  }

  /// A layer name → (module path, call index), or a ModelError that says what to ask for instead.
  Site resolve(const std::string& name) const {
    std::string path = name;
    int index = -1;
    if (const auto hash = name.rfind('#'); hash != std::string::npos) {
      path = name.substr(0, hash);
      const auto call = small_index(name.substr(hash + 1));
      if (!call) throw ModelError("layer '" + name + "': the part after '#' must be a call index (0, 1, ...)");
      index = static_cast<int>(*call);
    }
    int count = 0;
    for (const auto& l : layers_)
      if (l.module == path) count = l.call_count;
    if (count == 0) {
      const auto untappable = untappable_.find(path);
      // Tracing a module that returns its input unchanged (nn.Identity) records no op, so the traced graph calls
      // it without arguments, for nothing (`forward(self) -> None`), or not at all.
      if (uncalled_.count(path) || (untappable != untappable_.end() && untappable->second == "NoneType"))
        throw ModelError("layer '" + path + "' is a submodule of " + path_ +
                         " but is never called on a tensor in its forward graph. A traced nn.Identity (or any "
                         "module that returns its input unchanged) leaves no call behind, because tracing records "
                         "only the ops it saw. Script the model with torch.jit.script, or tap the layer before or "
                         "after it");
      if (untappable != untappable_.end())
        throw ModelError("layer '" + path + "' returns " + untappable->second +
                         ", not a Tensor, so it cannot be tapped; tap one of its submodules instead");
      (void)layer(name);  // throws ModelError with the closest names
    }
    if (index < 0) {
      if (count > 1) {
        std::ostringstream msg;
        msg << "layer '" << path << "' is called " << count << " times in one forward; name the call: ";
        for (int k = 0; k < count; ++k) msg << (k ? ", " : "") << path << "#" << k;
        throw ModelError(msg.str());
      }
      return {path, 0};
    }
    if (count == 1) throw ModelError("layer '" + name + "': '" + path + "' has one call site; use '" + path + "'");
    if (index >= count)
      throw ModelError("layer '" + name + "': '" + path + "' has " + std::to_string(count) + " call sites, " + path +
                       "#0 to " + path + "#" + std::to_string(count - 1));
    return {path, index};
  }

  torch::jit::Module module_;
  std::string path_;
  OutputSelector output_;           // the element of the forward's result that is explained
  std::vector<std::string> notes_;  // what loading found or changed (evaluation mode, random ops)
  torch::Device device_;
  torch::ScalarType dtype_;
  std::map<std::string, std::string> untappable_;  // submodules whose output is not a Tensor → its type
  std::set<std::string> uncalled_;                 // submodules without a call site in the forward graph
  std::map<std::string, std::set<std::string>> callers_;  // module path → the calls inlined to reach its sites
  mutable std::mutex mutex_;                       // guards layers_ (shapes), probed_ and cache_
  std::vector<LayerInfo> layers_;
  std::optional<std::pair<std::vector<std::int64_t>, torch::ScalarType>> probed_;  // what layers_' shapes are for
  mutable std::map<std::vector<std::string>, std::shared_ptr<const TappedForward>> cache_;
  mutable std::map<std::string, std::shared_ptr<const TailForward>> tails_;
  mutable std::map<std::pair<std::vector<std::string>, std::vector<std::size_t>>,
                   std::shared_ptr<const OpTappedForward>>
      op_cache_;
  // Serialises graph building (rewrites, op listing, cuts) and guards op_graph_. Scripted functions are
  // compiled lazily on first use, without a lock of their own: two threads inlining the same function at once
  // could see it half built.
  mutable std::mutex build_mutex_;
  mutable std::optional<OpGraph> op_graph_;
};

/// A ModelError for `device` when it cannot be used here.
void check_device(const std::string& path, const torch::Device& device) {
  if (!device.is_cuda()) return;
  if (!torch::cuda::is_available())
    throw ModelError("cannot load '" + path + "' on " + device.str() +
                     ": no CUDA device is available (this libtorch was built without CUDA, or no GPU is visible); "
                     "use device = \"cpu\"");
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count)
    throw ModelError("cannot load '" + path + "' on " + device.str() + ": there " +
                     (count == 1 ? "is 1 CUDA device (cuda:0)"
                                 : "are " + std::to_string(count) + " CUDA devices (cuda:0 to cuda:" +
                                       std::to_string(count - 1) + ")"));
}

/// The first line of a libtorch error, without its C++ backtrace.
std::string reason(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string why = c10_error ? c10_error->what_without_backtrace() : e.what();
  if (const auto nl = why.find('\n'); nl != std::string::npos) why.resize(nl);
  return why;
}

class TorchScriptBackend : public ModelBackend {
 public:
  std::shared_ptr<Model> load(const std::string& path, const ModelOptions& options) const override {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::exists(path, ec)) throw ModelError("cannot load model '" + path + "': the file does not exist");
    if (fs::is_directory(path, ec))
      throw ModelError("cannot load model '" + path + "': it is a directory, not a TorchScript file");
    check_device(path, options.device);
    try {
      verify_archive_file(path);
    } catch (const IoError& e) {
      throw ModelError(std::string("cannot load model: ") + e.what());
    }
    torch::jit::Module module;
    try {
      module = torch::jit::load(path, options.device);
    } catch (const std::exception& e) {
      const std::string why = reason(e);
      const bool pickle = why.find("constants.pkl") != std::string::npos;
      throw ModelError(
          "cannot load TorchScript model '" + path + "': " + why +
          (pickle ? ". It looks like a file written by torch.save (a state_dict or a pickled nn.Module), which "
                    "holds no TorchScript code"
                  : "") +
          ". Save models with torch.jit.trace(model, example).save(path) or torch.jit.script(model).save(path)");
    }
    if (!module.find_method("forward"))
      throw ModelError("the TorchScript model '" + path + "' has no forward method");
    if (looks_frozen(module))
      throw ModelError("the model '" + path +
                       "' was frozen with torch.jit.freeze, which folds its submodules into constants, so it has no "
                       "layers left to tap; save the scripted or traced module before freezing it");
    const bool saved_training = module.hasattr("training") && module.is_training();
    if (!options.training) module.eval();
    const auto notes = evaluation_notes(set_evaluation_mode(module, /*rewrite=*/!options.training),
                                        options.training, saved_training);
    if (options.onednn_linear) route_dense_layers(module);
    avoid_fused_kernels(module);
    if (options.dtype) module.to(*options.dtype);
    // The host makes inputs and taps require grad; parameters never do (no gradients wasted on them).
    for (const auto& p : module.parameters()) p.requires_grad_(false);
    const torch::ScalarType dtype = options.dtype.value_or(parameter_dtype(module));
    auto model = std::make_shared<TorchScriptModel>(std::move(module), path, options.device, dtype,
                                                    OutputSelector(options.output_element));
    model->set_notes(notes);
    return model;
  }

 private:
  static std::vector<std::string> evaluation_notes(const EvaluationMode& m, bool training, bool saved_training) {
    std::vector<std::string> notes;
    std::ostringstream flags;
    const auto count = [&](int n, const char* what) {
      if (n) flags << (flags.tellp() > 0 ? ", " : "") << n << " " << what;
    };
    count(m.dropout, "dropout");
    count(m.batch_norm, "batch-norm");
    count(m.other, "other");
    if (training && (saved_training || flags.tellp() > 0))
      notes.push_back("kept in training mode as saved ([model] training = true): dropout and batch-norm batch "
                      "statistics are on, so results differ between runs and between shard sizes");
    else if (training)
      notes.push_back("[model] training = true, but the model was saved in evaluation mode: nothing to keep");
    else if (flags.tellp() > 0)
      notes.push_back("the model was traced in training mode: " + flags.str() +
                      " call(s) recorded with training=True were switched to evaluation, as model.eval() before "
                      "tracing would have; [model] training = true keeps them");
    if (!m.random_ops.empty()) {
      std::string ops;
      for (std::size_t i = 0; i < m.random_ops.size() && i < 4; ++i) ops += (i ? ", " : "") + m.random_ops[i];
      if (m.random_ops.size() > 4) ops += ", ... (" + std::to_string(m.random_ops.size()) + " in all)";
      notes.push_back("the forward draws random numbers (" + ops + "): results differ between runs");
    }
    return notes;
  }

  /// The dtype of the model's first floating parameter or buffer (float32 for a model with none).
  static torch::ScalarType parameter_dtype(const torch::jit::Module& module) {
    for (const auto& p : module.parameters())
      if (p.is_floating_point()) return p.scalar_type();
    for (const auto& b : module.buffers())
      if (b.is_floating_point()) return b.scalar_type();
    return torch::kFloat;
  }
};

}  // namespace
}  // namespace galvani::plugins::torchscript

GALVANI_PLUGIN("torchscript", "0.1.0", [](galvani::Registrar& r) {
  r.add_backend("torchscript", "TorchScript models (traced or scripted), taps by graph rewriting",
                [] { return std::make_unique<galvani::plugins::torchscript::TorchScriptBackend>(); });
})
