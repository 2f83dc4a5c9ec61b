#include "galvani/core/plan.h"

#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <set>
#include <sstream>
#include <thread>

#include "galvani/core/inputs.h"
#include "galvani/core/path_layer.h"
#include "galvani/core/plugin_call.h"
#include "galvani/passes.h"
#include "galvani/tensor_io.h"

namespace fs = std::filesystem;

namespace galvani::core {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Whether the configured device exists on this machine (the config parsed what it names).
void check_device(const torch::Device& d) {
  if (!d.is_cuda()) return;
  if (!torch::cuda::is_available())
    throw ConfigError("model.device: \"" + d.str() + "\" asked for, but no CUDA device is available to this build");
  if (d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
    throw ConfigError("model.device: \"" + d.str() + "\" does not exist; this machine has " +
                      std::to_string(torch::cuda::device_count()) + " CUDA device(s)");
}

torch::Tensor forward_chunked(const Model& model, const torch::Tensor& x, std::int64_t chunk) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> outs;
  for (std::int64_t s = 0; s < x.size(0); s += chunk) outs.push_back(model.forward(x.narrow(0, s, std::min(chunk, x.size(0) - s))));
  return torch::cat(outs, 0);
}

// Why the model failed on the configured inputs, in the user's terms where that can be told: float values fed
// to an embedding, token ids outside it; else the backend's message.
std::string explain_input_failure(const Model& model, const DataConfig& data,
                                  const std::optional<torch::ScalarType>& dtype, const torch::Tensor& inputs,
                                  const std::string& message) {
  std::string embedding;
  for (const auto& l : model.layers())
    if (l.type == "Embedding" && embedding.empty()) embedding = l.name;
  if (inputs.is_floating_point() && !embedding.empty())
    return "data.inputs: '" + data.inputs + "' holds " + std::string(c10::toString(inputs.scalar_type())) +
           " values, but the model embeds token ids (layer '" + embedding +
           "' is an Embedding): save the ids as integers (torch.long), and set data.path_layer = \"" + embedding +
           "\" to run the paths between embeddings. The model said: " + message;
  if (message.find("must have the same dtype") != std::string::npos ||
      message.find("expected scalar type") != std::string::npos ||
      message.find("Expected object of scalar type") != std::string::npos) {
    if (dtype)
      return message + "\n[model] dtype = \"" + std::string(*dtype == torch::kDouble ? "float64" : "float32") +
             "\" converts parameters and buffers, but not the dtypes a traced model recorded as constants (e.g. the "
             "zero initial state of nn.LSTM): script the model with torch.jit.script, or use dtype = \"model\"";
  }
  if (!inputs.is_floating_point() && !data.path_layer.empty()) {
    try {
      if (auto why = diagnose_token_ids(model, data.path_layer, inputs); !why.empty()) return why;
    } catch (const std::exception&) {  // the layer does not exist: the path layer check says so
    }
  }
  return message;
}

// [data] vocabulary: one token per line, line i for id i. Every id of the inputs must have a line.
void read_vocabulary(const DataConfig& data, Plan& plan) {
  if (!plan.original_inputs.defined() || plan.original_inputs.is_floating_point())
    throw ConfigError("data.vocabulary: names the tokens of integer token-id inputs with data.path_layer; these "
                      "inputs are not token ids");
  std::ifstream in(data.vocabulary);
  if (!in) throw ConfigError("data.vocabulary: cannot read '" + data.vocabulary + "'");
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    plan.vocabulary.push_back(line);
  }
  const auto ids = plan.original_inputs.to(torch::kCPU, torch::kLong).reshape({plan.original_inputs.size(0), -1}).contiguous();
  const auto high = ids.max().item<std::int64_t>();
  if (high >= static_cast<std::int64_t>(plan.vocabulary.size()))
    throw ConfigError("data.vocabulary: '" + data.vocabulary + "' has " + std::to_string(plan.vocabulary.size()) +
                      " tokens (lines), but data.inputs holds token id " + std::to_string(high) +
                      ": the vocabulary and the inputs do not belong together");
  const auto lengths = unpadded_lengths(ids, padding_token(data.baselines));  // trailing padding left out
  const auto* p = ids.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < ids.size(0); ++i) {
    std::string text;
    for (std::int64_t j = 0; j < lengths[i]; ++j) text += (j ? " " : "") + plan.vocabulary[p[i * ids.size(1) + j]];
    plan.input_labels.push_back(text);
  }
}

std::vector<std::string> merge_layers(std::vector<std::string> a, const std::vector<std::string>& b) {
  for (const auto& l : b)
    if (std::find(a.begin(), a.end(), l) == a.end()) a.push_back(l);
  return a;
}

void load_plugin_paths(const RunConfig& config, PluginHost& host) {
  for (const auto& p : config.plugin_paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      host.load_directory(p);
    } else {
      host.load_file(p);
      host.require_loaded(p);
    }
  }
}

PlannedMethod plan_method(const MethodConfig& mc, const Registry& reg, const Model& model, const RunConfig& config,
                          const std::vector<std::int64_t>& input_shape) {
  PlannedMethod pm;
  pm.config = mc;
  const auto& path_c = reg.get(ComponentKind::Path, mc.path);
  pm.path = non_null(path_c.plugin, "the factory of path '" + mc.path + "'",
                     call_plugin(path_c.plugin, [&] { return std::shared_ptr<PathGenerator>(path_c.path(mc.options)); }));
  const auto& method_c = reg.get(ComponentKind::Method, mc.plugin);
  pm.plugin = method_c.plugin;
  pm.method = non_null(method_c.plugin, "the factory of method '" + mc.plugin + "'",
                       call_plugin(method_c.plugin, [&] { return std::shared_ptr<Method>(method_c.method(mc.options)); }));
  mc.options.check_all_used();
  pm.needs = call_plugin(pm.plugin, [&] { return pm.method->needs(); });
  if (pm.needs.tangents || pm.needs.input_grads) pm.needs.path = true;
  if (pm.method->needs_layers() && mc.layers.empty())
    throw ConfigError(mc.options.key_path("layers") + ": method '" + mc.name +
                      "' needs at least one layer (`galvani layers " + config.model.path + "` lists them)");
  // Call sites first (a layer before data.path_layer says so), then each name (suggestions for a misspelt one).
  if (!mc.layers.empty()) (void)model.tapped(mc.layers);
  for (const auto& l : mc.layers) (void)model.layer(l);
  MethodPlan check;
  check.model = &model;
  check.layers = mc.layers;
  check.input_shape = input_shape;
  check.output = config.model.output;
  call_plugin(pm.plugin, [&] {
    pm.method->validate(check);
    return 0;
  });
  if (mc.adaptive.on && !pm.needs.path)
    throw ConfigError(mc.options.key_path("steps") + ": \"auto\" refines the shared pass along a path, and method '" +
                      mc.name + "' " + (pm.needs.endpoints ? "needs its endpoints only" : "runs passes of its own") +
                      (mc.plugin == "conductance" ? " (conductance of chosen neurons or filters)" : "") +
                      "; give a number of steps");
  return pm;
}

// An evaluator's `methods` (the SDK's ResultFilter reads it) names methods of this run: checked before any shard
// runs, since a misspelt name would evaluate nothing.
void check_evaluated_methods(const EvaluatorConfig& ec, const std::vector<MethodConfig>& methods) {
  const auto it = ec.options.raw().find("methods");
  if (it == ec.options.raw().end()) return;
  std::vector<std::string> wanted;
  if (it->second.kind == OptionValue::Kind::String) wanted.push_back(it->second.s);
  if (it->second.kind == OptionValue::Kind::Array)
    for (const auto& v : it->second.array)
      if (v.kind == OptionValue::Kind::String) wanted.push_back(v.s);
  for (const auto& w : wanted) {
    if (std::any_of(methods.begin(), methods.end(), [&](const MethodConfig& m) { return m.name == w; })) continue;
    std::string valid;
    for (const auto& m : methods) valid += (valid.empty() ? "\"" : ", \"") + m.name + "\"";
    throw ConfigError(ec.options.key_path("methods") + ": no method named \"" + w + "\" in this run; " +
                      (valid.empty() ? std::string("the run has no methods") : "its methods are " + valid));
  }
}

PlannedEvaluator plan_evaluator(const EvaluatorConfig& ec, const Registry& reg, const std::vector<MethodConfig>& methods,
                                const EvaluatorPlan& check) {
  const auto& c = reg.get(ComponentKind::Evaluator, ec.plugin);
  PlannedEvaluator pe;
  pe.config = ec;
  pe.plugin = c.plugin;
  pe.evaluator = non_null(c.plugin, "the factory of evaluator '" + ec.plugin + "'",
                          call_plugin(c.plugin, [&] { return std::shared_ptr<Evaluator>(c.evaluator(ec.options)); }));
  ec.options.check_all_used();
  check_evaluated_methods(ec, methods);
  call_plugin(c.plugin, [&] {
    pe.evaluator->validate(check);
    return 0;
  });
  return pe;
}

// CPU: a shard per thread, at most 16 inputs; CUDA (one shard at a time): larger shards keep the device busy.
ShardSchedule size_shards(const RunSettings& run, std::int64_t n, bool cuda) {
  ShardSchedule s;
  s.inputs = n;
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  const int threads = run.threads > 0 ? run.threads : cores;
  s.shard_size = run.shard_size > 0 ? run.shard_size
                 : cuda             ? std::min<std::int64_t>(n, 64)
                                    : std::clamp<std::int64_t>((n + threads - 1) / threads, 1, 16);
  s.concurrency = static_cast<int>(std::min<std::int64_t>(threads, static_cast<std::int64_t>(s.shards())));
  if (cuda) s.concurrency = 1;  // one stream; kernels already use the device
  s.concurrency = std::max(1, s.concurrency);
  s.intra_threads = std::max(1, threads / s.concurrency);
  return s;
}

// Points per input of a pass group: its quadrature's alphas and the two endpoints (only those without a path).
std::int64_t group_grid(const PassGroup& g) {
  return g.path ? static_cast<std::int64_t>(g.path->quadrature(g.steps).alphas.size()) + 2 : 2;
}

// Bytes one shard holds for a pass group's layer data: act and grad (and the tangent) per grid point and input.
double group_layer_bytes(const Plan& plan, const PassGroup& g) {
  const std::int64_t grid = group_grid(g);
  double bytes = 0;
  for (const auto& l : g.layers) {
    double numel = 1;
    for (auto s : plan.model->layer(l).shape) numel *= static_cast<double>(s);
    bytes += numel * static_cast<double>(grid * plan.schedule.shard_size) * (g.tangents ? 3 : 2) *
             (plan.config.run.double_precision ? 8 : 4);
  }
  return bytes;
}

// Memory this process may still take: MemAvailable, and the cgroup's limit less its usage where one is set.
// 0 when neither can be read.
double available_memory() {
  double available = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    double kib = 0;
    meminfo >> kib;
    if (key == "MemAvailable:") available = kib * 1024;
    meminfo.ignore(256, '\n');
  }
  std::ifstream max_file("/sys/fs/cgroup/memory.max"), current_file("/sys/fs/cgroup/memory.current");
  std::string max;
  double current = 0;
  if (max_file >> max && max != "max" && current_file >> current) {
    const double left = std::stod(max) - current;
    if (left > 0 && (available == 0 || left < available)) available = left;
  }
  return available;
}

// Refuses, before any shard runs, a plan whose path data cannot fit: shards at once × the largest group's
// layer data (groups of one shard run one after the other). CPU only: a CUDA device's memory is its own.
void check_memory(const Plan& plan) {
  if (!plan.model->device().is_cpu() || plan.groups.empty()) return;
  double per_shard = 0;
  for (const auto& g : plan.groups) per_shard = std::max(per_shard, group_layer_bytes(plan, g));
  const auto at_once = std::min<std::int64_t>(plan.schedule.concurrency, static_cast<std::int64_t>(plan.schedule.shards()));
  const double needed = per_shard * static_cast<double>(at_once);
  const double available = available_memory();
  if (available <= 0 || needed <= 0.8 * available) return;
  const auto gib = [](double b) {
    std::ostringstream out;
    out << std::setprecision(3) << b / (1024.0 * 1024 * 1024) << " GiB";
    return out.str();
  };
  throw ConfigError("the run would hold about " + gib(needed) + " of path data at once (" + std::to_string(at_once) +
                    " shard(s) of " + std::to_string(plan.schedule.shard_size) + " inputs, every path point's "
                    "activations and gradients at the methods' layers), more than the " + gib(available) +
                    " of memory available; lower [run] shard_size or [run] threads, or the methods' steps (max_steps with "
                    "steps = \"auto\")");
}

}  // namespace

ShardSchedule ShardSchedule::over(std::int64_t n) const {
  ShardSchedule s = *this;
  s.inputs = std::min(n, inputs);
  return s;
}

PathPassSpec PassGroup::spec(bool double_accumulate) const {
  PathPassSpec s;
  s.layers = layers;
  s.path = path.get();
  s.steps = steps;
  s.tangents = tangents;
  s.input_grads = input_grads;
  s.internal_batch = internal_batch;
  s.double_accumulate = double_accumulate;
  return s;
}

std::vector<PassGroup> group_methods(const std::vector<PlannedMethod>& methods) {
  std::vector<PassGroup> groups;
  std::vector<std::size_t> endpoint_only;
  for (std::size_t i = 0; i < methods.size(); ++i) {
    const auto& m = methods[i];
    if (!m.needs.path) {
      if (m.needs.endpoints) endpoint_only.push_back(i);
      continue;
    }
    const std::string key = "path: " + m.path->describe() + ", steps=" +
                            (m.config.adaptive.on ? m.config.adaptive.describe() : std::to_string(m.config.steps)) +
                            (m.config.internal_batch ? ", internal_batch=" + std::to_string(m.config.internal_batch) : "");
    auto it = std::find_if(groups.begin(), groups.end(), [&](const PassGroup& g) { return g.key == key; });
    if (it == groups.end()) {
      PassGroup g;
      g.key = key;
      g.path = m.path;
      g.steps = m.config.steps;
      g.adaptive = m.config.adaptive;
      g.internal_batch = m.config.internal_batch;
      groups.push_back(g);
      it = groups.end() - 1;
    }
    it->tangents |= m.needs.tangents;
    it->input_grads |= m.needs.input_grads;
    it->layers = merge_layers(it->layers, m.config.layers);
    it->methods.push_back(i);
  }
  if (!endpoint_only.empty()) {
    if (groups.empty()) {
      PassGroup g;
      g.key = "endpoints";
      groups.push_back(g);
    }
    for (auto i : endpoint_only) {
      groups.front().layers = merge_layers(groups.front().layers, methods[i].config.layers);
      groups.front().methods.push_back(i);
    }
  }
  return groups;
}

std::string Plan::describe() const {
  std::ostringstream out;
  out << "model: " << config.model.path << " on " << model->device() << "\n";
  for (const auto& note : model->notes()) out << "  note: " << note << "\n";
  out << "inputs: " << shape_string(inputs.sizes()) << ", baselines: " << config.data.baselines.describe()
      << ", target: " << config.data.target.describe() << ", F: " << to_string(objective.mode) << "\n";
  out << "shards: " << schedule.shards() << " of up to " << schedule.shard_size << " inputs, " << schedule.concurrency
      << " at once, " << schedule.intra_threads << " ATen thread(s) each\n";
  for (const auto& g : groups) {
    out << "shared pass [" << g.key << "] over layers";
    for (const auto& l : g.layers) out << " " << l;
    const std::int64_t grid = group_grid(g);
    const std::int64_t chunk = g.internal_batch > 0 ? g.internal_batch : default_internal_batch(inputs[0].numel(), inputs.device());
    if (g.adaptive.on) {  // every level's points, for an input that converges at none
      std::int64_t all = 0;
      for (int steps : g.adaptive.levels())
        all += static_cast<std::int64_t>(g.path->quadrature(steps).alphas.size()) + 2;
      out << "\n  up to " << all << " points per input (levels of up to " << grid
          << " points, each input's path refined until it converges), " << chunk << " points per forward+backward";
    } else {
      out << "\n  ~" << grid << " points per input, " << chunk << " points per forward+backward";
    }
    out << (g.tangents ? ", with tangents (JVP)" : "") << (g.input_grads ? ", with input gradients" : "")
        << "\n  methods:";
    for (auto i : g.methods) out << " " << methods[i].config.name;
    const double bytes = group_layer_bytes(*this, g);  // act, grad (and tangent) for every grid point
    out << "\n  memory per shard for layer data: ~" << static_cast<std::int64_t>(bytes / (1 << 20)) << " MiB\n";
  }
  for (const auto& m : methods)
    if (!m.needs.path && !m.needs.endpoints) out << "method with its own passes: " << m.config.name << "\n";
  for (const auto& e : evaluators) out << "evaluator: " << e.config.name << "\n";
  return out.str();
}

std::vector<LayerInfo> list_layers(PluginHost& host, const std::string& backend, const std::string& path,
                                   const ModelOptions& options, torch::Tensor example) {
  const auto& c = host.registry().get(ComponentKind::Backend, backend);
  auto loader = non_null(c.plugin, "the factory of backend '" + backend + "'", call_plugin(c.plugin, [&] { return c.backend(); }));
  auto model = non_null(c.plugin, "loading the model", call_plugin(c.plugin, [&] { return loader->load(path, options); }));
  if (example.defined()) {
    if (example.dim() == 0) throw ShapeError("the example input is a scalar; expected a batch [N, ...]");
    example = example.narrow(0, 0, 1).to(model->device());
    if (example.is_floating_point()) example = example.to(model->dtype());  // token ids stay integers
    call_plugin(c.plugin, [&] {
      model->probe(example);
      return 0;
    });
  }
  return model->layers();
}

std::shared_ptr<Model> ModelCache::get(const ModelConfig& config, const std::function<std::shared_ptr<Model>()>& load) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto size = fs::file_size(config.path, ec);
  const auto mtime = fs::last_write_time(config.path, ec).time_since_epoch().count();
  std::ostringstream key;
  key << config.backend << '\n' << config.path << '\n' << size << ' ' << mtime << '\n' << config.device << ' '
      << (config.dtype ? static_cast<int>(*config.dtype) : -1) << ' ' << config.training << ' '
      << config.onednn_linear << '\n' << config.output_element;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!model_ || key_ != key.str()) {
    model_.reset();  // the old model goes before the new one is loaded
    model_ = load();
    key_ = key.str();
    ++loads_;
  }
  return model_;
}

Plan make_plan(const RunConfig& config, PluginHost& host, Timings* timings, ModelCache* models) {
  Timings local;
  Timings& t = timings ? *timings : local;
  Plan plan;
  plan.config = config;
  load_plugin_paths(config, host);
  const Registry& reg = host.registry();

  auto t0 = Clock::now();
  check_device(config.model.device);
  const auto& backend_c = reg.get(ComponentKind::Backend, config.model.backend);
  auto backend = non_null(backend_c.plugin, "the factory of backend '" + config.model.backend + "'",
                          call_plugin(backend_c.plugin, [&] { return backend_c.backend(); }));
  ModelOptions mo;
  mo.device = config.model.device;
  mo.dtype = config.model.dtype;
  mo.training = config.model.training;
  mo.onednn_linear = config.model.onednn_linear;
  mo.output_element = config.model.output_element;
  const auto load = [&] {
    return non_null(backend_c.plugin, "loading the model",
                    call_plugin(backend_c.plugin, [&] { return backend->load(config.model.path, mo); }));
  };
  plan.model = models ? models->get(config.model, load) : load();
  t["load model"] += seconds_since(t0);

  t0 = Clock::now();
  const auto original = load_input_tensor(config.data, *plan.model);
  plan.objective.mode = config.model.output;
  t["load data"] += seconds_since(t0);

  // Probe layer shapes (also checks the model runs on these inputs), then the targets from the outputs.
  t0 = Clock::now();
  try {
    call_plugin(backend_c.plugin, [&] { plan.model->probe(original.narrow(0, 0, 1)); return 0; });
  } catch (const PluginError& e) {
    throw ModelError("the model cannot run on inputs of shape " + shape_string(original.sizes()) + ": " +
                     explain_input_failure(*plan.model, config.data, config.model.dtype, original, e.what()));
  }
  if (config.data.path_layer.empty()) {
    plan.inputs = original;
    plan.baselines = make_baselines(config.data, plan.inputs, *plan.model);
  } else {
    std::shared_ptr<PathLayerModel> wrapped;
    try {
      wrapped = PathLayerModel::make(plan.model, config.data.path_layer, original);
      plan.inputs = wrapped->embed(original);
    } catch (const ModelError& e) {  // the path layer does not suit (it says why)
      const std::string what = e.what();
      throw ConfigError(what.rfind("data.path_layer", 0) == 0 ? what
                                                              : "data.path_layer '" + config.data.path_layer + "': " + what);
    } catch (const std::exception& e) {  // the forward failed on the inputs (token ids out of range)
      throw ModelError("the model cannot run on data.inputs: " +
                       explain_input_failure(*plan.model, config.data, config.model.dtype, original, e.what()));
    }
    plan.baselines = make_layer_baselines(config.data, original, plan.inputs, *wrapped);
    plan.original_inputs = original;
    plan.model = std::move(wrapped);
  }
  if (!config.data.vocabulary.empty()) read_vocabulary(config.data, plan);
  t["load data"] += seconds_since(t0);
  t0 = Clock::now();
  const auto chunk = std::max<std::int64_t>(64, default_internal_batch(plan.inputs[0].numel()));
  const auto out = forward_chunked(*plan.model, plan.inputs, chunk);
  require_finite(out, "the model's output on data.inputs");
  plan.targets = resolve_targets(config.data.target, out);
  t["targets"] += seconds_since(t0);

  // Components, each validated against the model and the data before any shard runs.
  const auto input_shape = plan.inputs.sizes().slice(1).vec();
  for (const auto& mc : config.methods) plan.methods.push_back(plan_method(mc, reg, *plan.model, config, input_shape));
  EvaluatorPlan evaluator_check;
  evaluator_check.model = plan.model.get();
  evaluator_check.inputs = plan.inputs.size(0);
  evaluator_check.input_shape = input_shape;
  for (const auto& mc : config.methods) evaluator_check.methods.push_back(mc.name);
  for (const auto& ec : config.evaluators)
    plan.evaluators.push_back(plan_evaluator(ec, reg, config.methods, evaluator_check));
  plan.groups = group_methods(plan.methods);
  plan.schedule = size_shards(config.run, plan.inputs.size(0), plan.model->device().is_cuda());
  check_memory(plan);
  return plan;
}

}  // namespace galvani::core
