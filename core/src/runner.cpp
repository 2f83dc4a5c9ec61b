#include "galvani/core/runner.h"

#include <ATen/Parallel.h>
#include <tbb/flow_graph.h>
#include <tbb/task_arena.h>
#include <torch/cuda.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "galvani/passes.h"
#include "galvani/tensor_io.h"

namespace fs = std::filesystem;

namespace galvani::core {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

torch::Device parse_device(const std::string& text) {
  try {
    torch::Device d(text);
    if (d.is_cuda() && !torch::cuda::is_available())
      throw ConfigError("model.device: \"" + text + "\" asked for, but no CUDA device is available to this build");
    if (d.is_cuda() && d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
      throw ConfigError("model.device: \"" + text + "\" does not exist; this machine has " +
                        std::to_string(torch::cuda::device_count()) + " CUDA device(s)");
    return d;
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception&) {
    throw ConfigError("model.device: \"" + text + "\" is not a device; use \"cpu\", \"cuda\" or \"cuda:N\"");
  }
}

torch::Tensor forward_chunked(const Model& model, const torch::Tensor& x, std::int64_t chunk) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> outs;
  for (std::int64_t s = 0; s < x.size(0); s += chunk) outs.push_back(model.forward(x.narrow(0, s, std::min(chunk, x.size(0) - s))));
  return torch::cat(outs, 0);
}

// The context a method sees for one shard.
class ShardContext : public MethodContext {
 public:
  ShardContext(const Plan& plan, const PlannedMethod& m, torch::Tensor inputs, torch::Tensor baselines,
               torch::Tensor targets, std::int64_t offset, const PathPass* pass, torch::Tensor* f_input = nullptr,
               torch::Tensor* f_baseline = nullptr)
      : plan_(plan), m_(m), inputs_(std::move(inputs)), baselines_(std::move(baselines)),
        targets_(std::move(targets)), offset_(offset), pass_(pass), f_input_(f_input), f_baseline_(f_baseline) {}
  const Model& model() const override { return *plan_.model; }
  const torch::Tensor& inputs() const override { return inputs_; }
  const torch::Tensor& baselines() const override { return baselines_; }
  const torch::Tensor& targets() const override { return targets_; }
  const Objective& objective() const override { return plan_.objective; }
  const PathGenerator& path() const override { return *m_.path; }
  int steps() const override { return m_.config.steps; }
  std::int64_t internal_batch() const override { return m_.config.internal_batch; }
  bool double_precision() const override { return plan_.config.run.precision == "double"; }
  std::int64_t offset() const override { return offset_; }
  const PathPass& pass() const override {
    if (!pass_)
      throw Error("method '" + m_.config.name + "' asked for a shared pass it did not declare in needs()");
    return *pass_;
  }
  void provide_outputs(const torch::Tensor& f_input, const torch::Tensor& f_baseline) const override {
    if (!f_input_) return;
    const auto b = inputs_.size(0);
    for (const auto* t : {&f_input, &f_baseline})
      if (t->defined() && (t->dim() != 1 || t->size(0) != b))
        throw PluginError(m_.plugin, "method '" + m_.config.name + "' provided F(x), F(x') that are not [" +
                                         std::to_string(b) + "] tensors");
    // The first provider of each wins.
    if (f_input.defined() && !f_input_->defined()) *f_input_ = f_input.detach();
    if (f_baseline.defined() && !f_baseline_->defined()) *f_baseline_ = f_baseline.detach();
  }

 private:
  const Plan& plan_;
  const PlannedMethod& m_;
  torch::Tensor inputs_, baselines_, targets_;
  std::int64_t offset_;
  const PathPass* pass_;
  torch::Tensor* f_input_;
  torch::Tensor* f_baseline_;
};

std::vector<std::string> merge_layers(std::vector<std::string> a, const std::vector<std::string>& b) {
  for (const auto& l : b)
    if (std::find(a.begin(), a.end(), l) == a.end()) a.push_back(l);
  return a;
}

// Checks one method's attributions against the shard and the layer shapes.
void check_attribution(const PlannedMethod& m, const Attribution& a, std::int64_t batch) {
  if (!a.values.defined())
    throw PluginError(m.plugin, "method '" + m.config.name + "' returned no values for layer '" + a.layer + "'");
  if (a.values.dim() < 1 || a.values.size(0) != batch)
    throw PluginError(m.plugin, "method '" + m.config.name + "' returned shape " + shape_string(a.values.sizes()) +
                                    " for layer '" + a.layer + "'; expected a batch of " + std::to_string(batch));
  require_finite(a.values, "method '" + m.config.name + "' attributions at layer '" + a.layer + "'");
  for (const auto& [key, t] : a.extras)
    if (!t.defined() || t.dim() < 1 || t.size(0) != batch)
      throw PluginError(m.plugin, "method '" + m.config.name + "' returned extra '" + key + "' for layer '" + a.layer +
                                      "' that is not batch first (a batch of " + std::to_string(batch) + ")");
}

// Shared passes: one group per distinct path; endpoint-only methods join the first path group.
void group_methods(Plan& plan) {
  plan.groups.clear();
  plan.standalone.clear();
  std::vector<std::size_t> endpoint_only;
  for (std::size_t i = 0; i < plan.methods.size(); ++i) {
    auto& m = plan.methods[i];
    if (!m.needs.path) {
      if (m.needs.endpoints) endpoint_only.push_back(i);
      continue;
    }
    const std::string key = "path: " + m.path->describe() + ", steps=" + std::to_string(m.config.steps) +
                            (m.config.internal_batch ? ", internal_batch=" + std::to_string(m.config.internal_batch) : "");
    auto it = std::find_if(plan.groups.begin(), plan.groups.end(), [&](const PassGroup& g) { return g.key == key; });
    if (it == plan.groups.end()) {
      PassGroup g;
      g.key = key;
      g.path = m.path;
      g.steps = m.config.steps;
      g.internal_batch = m.config.internal_batch;
      plan.groups.push_back(g);
      it = plan.groups.end() - 1;
    }
    it->tangents |= m.needs.tangents;
    it->input_grads |= m.needs.input_grads;
    it->layers = merge_layers(it->layers, m.config.layers);
    it->methods.push_back(i);
  }
  if (!endpoint_only.empty()) {
    if (plan.groups.empty()) {
      PassGroup g;
      g.key = "endpoints";
      plan.groups.push_back(g);
    }
    for (auto i : endpoint_only) {
      plan.groups.front().layers = merge_layers(plan.groups.front().layers, plan.methods[i].config.layers);
      plan.groups.front().methods.push_back(i);
    }
  }
  for (std::size_t i = 0; i < plan.methods.size(); ++i)
    if (!plan.methods[i].needs.path && !plan.methods[i].needs.endpoints) plan.standalone.push_back(plan.methods[i]);

}

}  // namespace

std::string Plan::describe() const {
  std::ostringstream out;
  out << "model: " << config.model.path << " on " << model->device() << "\n";
  out << "inputs: " << shape_string(inputs.sizes()) << ", baselines: " << config.data.baselines
      << ", target: " << config.data.target << ", F: " << to_string(objective.mode) << "\n";
  const auto n = inputs.size(0);
  const auto shards = (n + shard_size - 1) / shard_size;
  out << "shards: " << shards << " of up to " << shard_size << " inputs, " << concurrency
      << " at once, " << intra_threads << " ATen thread(s) each\n";
  for (const auto& g : groups) {
    out << "shared pass [" << g.key << "] over layers";
    for (const auto& l : g.layers) out << " " << l;
    const std::int64_t grid = g.path ? static_cast<std::int64_t>(g.path->quadrature(g.steps).alphas.size()) + 2 : 2;
    const std::int64_t chunk = g.internal_batch > 0 ? g.internal_batch : default_internal_batch(inputs[0].numel(), inputs.device());
    out << "\n  ~" << grid << " points per input, " << chunk << " points per forward+backward"
        << (g.tangents ? ", with tangents (JVP)" : "") << (g.input_grads ? ", with input gradients" : "")
        << "\n  methods:";
    for (auto i : g.methods) out << " " << methods[i].config.name;
    // Layer data held per shard: act, grad (and tangent) for every grid point.
    double bytes = 0;
    for (const auto& l : g.layers) {
      double numel = 1;
      for (auto s : model->layer(l).shape) numel *= static_cast<double>(s);
      bytes += numel * static_cast<double>(grid * shard_size) * (g.tangents ? 3 : 2) *
               (config.run.precision == "double" ? 8 : 4);
    }
    out << "\n  memory per shard for layer data: ~" << static_cast<std::int64_t>(bytes / (1 << 20)) << " MiB\n";
  }
  for (const auto& m : standalone) out << "method with its own passes: " << m.config.name << "\n";
  for (const auto& e : evaluators) out << "evaluator: " << e.config.name << "\n";
  return out.str();
}

Plan make_plan(const RunConfig& config, PluginHost& host) {
  Plan plan;
  plan.config = config;
  for (const auto& p : config.plugin_paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      host.load_directory(p);
    } else {
      host.load_file(p);
      host.require_loaded(p);
    }
  }
  const Registry& reg = host.registry();

  auto t0 = Clock::now();
  const auto& backend_c = reg.get(ComponentKind::Backend, config.model.backend);
  auto backend = call_plugin(backend_c.plugin, [&] { return backend_c.backend(); });
  ModelOptions mo;
  mo.device = parse_device(config.model.device);
  if (config.model.dtype == "float64") mo.dtype = torch::kDouble;
  if (config.model.dtype == "float32") mo.dtype = torch::kFloat;
  plan.model = call_plugin(backend_c.plugin, [&] { return backend->load(config.model.path, mo); });
  plan.timings["load model"] = seconds_since(t0);

  t0 = Clock::now();
  auto inputs = load_tensor(config.data.inputs);
  if (!inputs.is_floating_point())
    throw ShapeError("data.inputs: '" + config.data.inputs + "' holds " + std::string(c10::toString(inputs.scalar_type())) +
                     " values; inputs must be floating point");
  if (inputs.dim() < 2) throw ShapeError("data.inputs: expected a batch [N, ...], got shape " + shape_string(inputs.sizes()));
  if (config.data.limit > 0 && config.data.limit < inputs.size(0)) inputs = inputs.narrow(0, 0, config.data.limit);
  require_finite(inputs, "data.inputs '" + config.data.inputs + "'");
  const auto dtype = plan.model->dtype();
  plan.inputs = inputs.to(plan.model->device(), dtype).contiguous();
  torch::Tensor baselines;
  if (config.data.baselines == "zeros") {
    baselines = torch::zeros_like(plan.inputs);
  } else if (config.data.baselines == "mean") {
    baselines = plan.inputs.mean(0, true).expand_as(plan.inputs).contiguous();
  } else {
    baselines = load_tensor(config.data.baselines).to(plan.model->device(), dtype);
    if (baselines.sizes() == plan.inputs.sizes().slice(1)) baselines = baselines.unsqueeze(0);
    if (baselines.dim() == plan.inputs.dim() && baselines.size(0) == 1 && plan.inputs.size(0) != 1)
      baselines = baselines.expand_as(plan.inputs).contiguous();
    else if (baselines.dim() == plan.inputs.dim() && baselines.size(0) > plan.inputs.size(0) &&
             baselines.sizes().slice(1) == plan.inputs.sizes().slice(1))
      baselines = baselines.narrow(0, 0, plan.inputs.size(0)).contiguous();
    if (baselines.sizes() != plan.inputs.sizes())
      throw ShapeError("data.baselines: '" + config.data.baselines + "' has shape " + shape_string(baselines.sizes()) +
                       "; expected " + shape_string(plan.inputs.sizes()) + ", one sample " +
                       shape_string(plan.inputs.sizes().slice(1)) + ", or [1, ...]");
    require_finite(baselines, "data.baselines '" + config.data.baselines + "'");
  }
  plan.baselines = baselines;
  plan.objective.mode = config.model.output;
  plan.timings["load data"] = seconds_since(t0);

  // Probe layer shapes (also checks the model runs on these inputs).
  t0 = Clock::now();
  try {
    call_plugin(backend_c.plugin, [&] { plan.model->probe(plan.inputs.narrow(0, 0, 1)); return 0; });
  } catch (const PluginError& e) {
    throw ModelError("the model cannot run on inputs of shape " + shape_string(plan.inputs.sizes()) + ": " + e.what());
  }
  const auto chunk = std::max<std::int64_t>(64, default_internal_batch(plan.inputs[0].numel()));
  const auto out = forward_chunked(*plan.model, plan.inputs, chunk);
  require_finite(out, "the model's output on data.inputs");
  const std::int64_t classes = out.dim() == 2 ? out.size(1) : 1;
  const std::string& target = config.data.target;
  if (target == "predicted") {
    plan.targets = out.dim() == 2 ? out.argmax(1) : torch::zeros({out.size(0)}, torch::kLong);
  } else if (!target.empty() && std::all_of(target.begin(), target.end(), ::isdigit)) {
    const std::int64_t cls = std::stoll(target);
    if (cls >= classes)
      throw ConfigError("data.target: class " + target + " is out of range; the model has " + std::to_string(classes) +
                        " outputs");
    plan.targets = torch::full({plan.inputs.size(0)}, static_cast<int64_t>(cls), torch::TensorOptions().dtype(torch::kLong));
  } else {
    auto t = load_tensor(target).to(torch::kLong).flatten();
    if (t.size(0) < plan.inputs.size(0))
      throw ShapeError("data.target: '" + target + "' has " + std::to_string(t.size(0)) + " classes for " +
                       std::to_string(plan.inputs.size(0)) + " inputs");
    plan.targets = t.narrow(0, 0, plan.inputs.size(0));
    if (plan.targets.min().item<std::int64_t>() < 0 || plan.targets.max().item<std::int64_t>() >= classes)
      throw ConfigError("data.target: '" + target + "' holds classes outside [0, " + std::to_string(classes) + ")");
  }
  plan.targets = plan.targets.to(plan.model->device());
  plan.timings["targets"] = seconds_since(t0);

  // Components.
  const auto layer_names = [&] {
    std::set<std::string> names;
    for (const auto& l : plan.model->layers()) names.insert(l.name);
    return names;
  }();
  for (const auto& mc : config.methods) {
    PlannedMethod pm;
    pm.config = mc;
    const auto& path_c = reg.get(ComponentKind::Path, mc.path);
    pm.path = call_plugin(path_c.plugin, [&] { return std::shared_ptr<PathGenerator>(path_c.path(mc.options)); });
    const auto& method_c = reg.get(ComponentKind::Method, mc.plugin);
    pm.plugin = method_c.plugin;
    pm.method = call_plugin(method_c.plugin, [&] { return std::shared_ptr<Method>(method_c.method(mc.options)); });
    mc.options.check_all_used();
    pm.needs = call_plugin(pm.plugin, [&] { return pm.method->needs(); });
    if (pm.needs.tangents || pm.needs.input_grads) pm.needs.path = true;
    if (pm.method->needs_layers() && mc.layers.empty())
      throw ConfigError(mc.options.key_path("layers") + ": method '" + mc.name +
                        "' needs at least one layer (`galvani layers " + config.model.path + "` lists them)");
    for (const auto& l : mc.layers) (void)plan.model->layer(l);  // throws with suggestions
    if (!mc.layers.empty()) (void)plan.model->tapped(mc.layers);  // validates call sites early
    plan.methods.push_back(std::move(pm));
  }
  for (const auto& ec : config.evaluators) {
    const auto& c = reg.get(ComponentKind::Evaluator, ec.plugin);
    PlannedEvaluator pe;
    pe.config = ec;
    pe.plugin = c.plugin;
    pe.evaluator = call_plugin(c.plugin, [&] { return std::shared_ptr<Evaluator>(c.evaluator(ec.options)); });
    ec.options.check_all_used();
    plan.evaluators.push_back(std::move(pe));
  }

  group_methods(plan);

  // Shards and threads.
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  const int threads = config.run.threads > 0 ? config.run.threads : cores;
  const auto n = plan.inputs.size(0);
  // CPU: a shard per thread, at most 16 inputs; CUDA (one shard at a time): larger shards keep the device busy.
  const bool cuda = plan.model->device().is_cuda();
  plan.shard_size = config.run.shard_size > 0 ? config.run.shard_size
                    : cuda                    ? std::min<std::int64_t>(n, 64)
                                              : std::clamp<std::int64_t>((n + threads - 1) / threads, 1, 16);
  const auto shards = (n + plan.shard_size - 1) / plan.shard_size;
  plan.concurrency = static_cast<int>(std::min<std::int64_t>(threads, shards));
  if (cuda) plan.concurrency = 1;  // one stream; kernels already use the device
  plan.intra_threads = std::max(1, threads / plan.concurrency);
  return plan;
}

namespace {
// Runs every method of the plan over all shards: results and F(x), F(x'), no evaluators.
RunResult run_methods(const Plan& plan, const ProgressFn& progress) {
  RunResult result;
  const auto n = plan.inputs.size(0);
  const auto shard_size = plan.shard_size;
  const std::size_t shards = static_cast<std::size_t>((n + shard_size - 1) / shard_size);

  // One output slot per shard, filled concurrently, concatenated in order afterwards.
  struct ShardOutput {
    std::vector<std::vector<Attribution>> per_method;  // indexed like plan.methods
    torch::Tensor f_input, f_baseline;
    std::map<std::string, double> timings;
  };
  std::vector<ShardOutput> outputs(shards);
  std::mutex error_mutex;
  std::exception_ptr first_error;
  std::size_t done = 0;

  auto run_shard = [&](std::size_t s) {
    at::set_num_threads(plan.intra_threads);  // per worker thread under OpenMP
    ShardOutput& o = outputs[s];
    o.per_method.resize(plan.methods.size());
    const auto start = static_cast<std::int64_t>(s) * shard_size;
    const auto len = std::min<std::int64_t>(shard_size, n - start);
    const auto x = plan.inputs.narrow(0, start, len);
    const auto xb = plan.baselines.narrow(0, start, len);
    const auto tg = plan.targets.narrow(0, start, len);
    for (const auto& g : plan.groups) {
      auto t0 = Clock::now();
      PathPassSpec spec;
      spec.layers = g.layers;
      spec.path = g.path.get();
      spec.steps = g.steps;
      spec.tangents = g.tangents;
      spec.input_grads = g.input_grads;
      spec.internal_batch = g.internal_batch;
      spec.double_accumulate = plan.config.run.precision == "double";
      const PathPass pass = compute_path_pass(*plan.model, spec, x, xb, tg, plan.objective);
      o.timings["pass [" + g.key + "]"] += seconds_since(t0);
      // F(x), F(x') of the run come from the pass when its path kept the configured baselines.
      if (!o.f_input.defined() && torch::equal(pass.baselines, xb)) {
        o.f_input = pass.f_input().detach();
        o.f_baseline = pass.f_baseline().detach();
      }
      for (auto i : g.methods) {
        const auto& m = plan.methods[i];
        t0 = Clock::now();
        ShardContext ctx(plan, m, x, xb, tg, start, &pass);
        o.per_method[i] = call_plugin(m.plugin, [&] { return m.method->attribute(ctx, m.config.layers); });
        o.timings["method " + m.config.name] += seconds_since(t0);
      }
    }
    for (std::size_t i = 0; i < plan.methods.size(); ++i) {
      const auto& m = plan.methods[i];
      if (m.needs.path || m.needs.endpoints) continue;
      auto t0 = Clock::now();
      ShardContext ctx(plan, m, x, xb, tg, start, nullptr, &o.f_input, &o.f_baseline);
      o.per_method[i] = call_plugin(m.plugin, [&] { return m.method->attribute(ctx, m.config.layers); });
      o.timings["method " + m.config.name] += seconds_since(t0);
    }
    if (!o.f_input.defined() || !o.f_baseline.defined()) {  // what no pass or method computed
      torch::NoGradGuard ng;
      auto t0 = Clock::now();
      if (!o.f_input.defined()) o.f_input = plan.objective(plan.model->forward(x), tg);
      if (!o.f_baseline.defined()) o.f_baseline = plan.objective(plan.model->forward(xb), tg);
      o.timings["F(x), F(x')"] += seconds_since(t0);
    }
    for (std::size_t i = 0; i < plan.methods.size(); ++i)
      for (auto& a : o.per_method[i]) {
        check_attribution(plan.methods[i], a, len);
        if (a.space == Space::Layer) a.values = aggregate_units(a.values, plan.methods[i].config.unit);
      }
  };

  auto t_run = Clock::now();
  const int previous_threads = at::get_num_threads();
  tbb::task_arena arena(plan.concurrency);
  arena.execute([&] {
    tbb::flow::graph graph;
    tbb::flow::function_node<std::size_t, std::size_t> compute(
        graph, static_cast<std::size_t>(plan.concurrency), [&](std::size_t s) {
          {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (first_error) return s;
          }
          try {
            run_shard(s);
          } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!first_error) first_error = std::current_exception();
          }
          return s;
        });
    tbb::flow::function_node<std::size_t> report(graph, tbb::flow::serial, [&](std::size_t) {
      ++done;
      if (progress) progress("shards", done, shards);
    });
    tbb::flow::make_edge(compute, report);
    for (std::size_t s = 0; s < shards; ++s) compute.try_put(s);
    graph.wait_for_all();
  });
  at::set_num_threads(previous_threads);
  if (first_error) std::rethrow_exception(first_error);
  result.timings["run (wall)"] = seconds_since(t_run);

  // Concatenate shards in order.
  std::vector<torch::Tensor> fi, fb;
  for (auto& o : outputs) {
    fi.push_back(o.f_input);
    fb.push_back(o.f_baseline);
    for (const auto& [k, v] : o.timings) result.timings[k] += v;
  }
  result.f_input = torch::cat(fi);
  result.f_baseline = torch::cat(fb);
  for (std::size_t i = 0; i < plan.methods.size(); ++i) {
    const auto& first = outputs.front().per_method[i];
    for (std::size_t a = 0; a < first.size(); ++a) {
      MethodResult r;
      r.method = plan.methods[i].config.name;
      r.layer = first[a].layer;
      r.space = first[a].space;
      std::vector<torch::Tensor> values, deltas;
      std::map<std::string, std::vector<torch::Tensor>> extras;
      for (auto& o : outputs) {
        const Attribution& part = o.per_method[i].at(a);
        values.push_back(part.values);
        if (part.delta.defined()) deltas.push_back(part.delta);
        for (const auto& [key, t] : part.extras) extras[key].push_back(t);
        for (const auto& note : part.notes)
          if (std::find(r.notes.begin(), r.notes.end(), note) == r.notes.end()) r.notes.push_back(note);
      }
      r.values = torch::cat(values);
      if (deltas.size() == outputs.size()) r.delta = torch::cat(deltas);
      for (auto& [key, parts] : extras)
        if (parts.size() == outputs.size()) r.extras[key] = torch::cat(parts);
      result.results.push_back(std::move(r));
    }
  }

  return result;
}
}  // namespace

RunResult execute(Plan& plan, const ProgressFn& progress) {
  RunResult result = run_methods(plan, progress);
  // Evaluators may run a method again on another model (parameter randomisation): a plan with that method only.
  const auto rerun = [&plan](const std::string& method, std::shared_ptr<Model> model, std::int64_t count) {
    auto it = std::find_if(plan.methods.begin(), plan.methods.end(),
                           [&](const PlannedMethod& m) { return m.config.name == method; });
    if (it == plan.methods.end()) throw ConfigError("no method named '" + method + "' in this run");
    if (!model) throw Error("rerun of method '" + method + "' was given no model");
    Plan sub = plan;
    sub.model = std::move(model);
    sub.methods = {*it};
    sub.evaluators.clear();
    if (count > 0 && count < plan.inputs.size(0)) {
      sub.inputs = plan.inputs.narrow(0, 0, count);
      sub.baselines = plan.baselines.narrow(0, 0, count);
      sub.targets = plan.targets.narrow(0, 0, count);
    }
    group_methods(sub);
    return run_methods(sub, {}).results;
  };
  for (std::size_t ei = 0; ei < plan.evaluators.size(); ++ei) {
    const auto& e = plan.evaluators[ei];
    if (progress) progress("evaluator " + e.config.name, 0, 1);
    auto t0 = Clock::now();
    EvaluationInput in;
    in.model = plan.model.get();
    in.inputs = plan.inputs;
    in.baselines = plan.baselines;
    in.targets = plan.targets;
    in.f_input = result.f_input;
    in.f_baseline = result.f_baseline;
    in.objective = plan.objective;
    in.results = result.results;
    in.rerun = rerun;
    result.evaluations.emplace_back(e.config.name, call_plugin(e.plugin, [&] { return e.evaluator->evaluate(in); }));
    result.timings["evaluator " + e.config.name] = seconds_since(t0);
    if (progress) progress("evaluator " + e.config.name, 1, 1);
  }
  return result;
}

}  // namespace galvani::core
