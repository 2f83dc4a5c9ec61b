#include "galvani/core/execute.h"

#include <ATen/Parallel.h>
#include <tbb/flow_graph.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

#include "galvani/core/plugin_call.h"
#include "galvani/passes.h"
#include "galvani/tensor_io.h"

namespace galvani::core {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// What one run of methods works on: a model, the rows of data, the methods and their shared passes. The run
// itself is one; an evaluator's rerun of a method on another model is another.
struct Workload {
  const Plan& plan;  // objective and settings
  const Model& model;
  torch::Tensor inputs, baselines, targets;
  std::vector<PlannedMethod> methods;
  std::vector<PassGroup> groups;  // over `methods`
  ShardSchedule schedule;
};

// One shard's rows.
struct ShardData {
  torch::Tensor x, xb, targets;
  std::int64_t offset = 0;
};

// F(x), F(x′) of one shard, owned here: the first that computed them with the configured baselines provides
// them (a shared pass, then a method with its own forwards); what nobody provided the runner computes itself.
class ShardOutputs {
 public:
  void provide(const torch::Tensor& f_input, const torch::Tensor& f_baseline) {
    if (f_input.defined() && !f_input_.defined()) f_input_ = f_input.detach();
    if (f_baseline.defined() && !f_baseline_.defined()) f_baseline_ = f_baseline.detach();
  }
  bool complete() const { return f_input_.defined() && f_baseline_.defined(); }
  const torch::Tensor& f_input() const { return f_input_; }
  const torch::Tensor& f_baseline() const { return f_baseline_; }

 private:
  torch::Tensor f_input_, f_baseline_;
};

// The context a method sees for one shard.
class ShardContext : public MethodContext {
 public:
  /// `steps`: the level an adaptive pass runs at (0: the method's own steps).
  ShardContext(const Workload& w, const PlannedMethod& m, const ShardData& d, const PathPass* pass,
               ShardOutputs* outputs, int steps = 0)
      : w_(w), m_(m), d_(d), pass_(pass), outputs_(outputs), steps_(steps) {}
  const Model& model() const override { return w_.model; }
  const torch::Tensor& inputs() const override { return d_.x; }
  const torch::Tensor& baselines() const override { return d_.xb; }
  const torch::Tensor& targets() const override { return d_.targets; }
  const Objective& objective() const override { return w_.plan.objective; }
  const PathGenerator& path() const override { return *m_.path; }
  int steps() const override { return steps_ > 0 ? steps_ : m_.config.steps; }
  std::int64_t internal_batch() const override { return m_.config.internal_batch; }
  bool double_precision() const override { return w_.plan.config.run.double_precision; }
  std::int64_t offset() const override { return d_.offset; }
  const PathPass& pass() const override {
    if (!pass_)
      throw Error("method '" + m_.config.name + "' asked for a shared pass it did not declare in needs()");
    return *pass_;
  }
  void provide_outputs(const torch::Tensor& f_input, const torch::Tensor& f_baseline) const override {
    if (!outputs_) return;
    const auto b = d_.x.size(0);
    for (const auto* t : {&f_input, &f_baseline})
      if (t->defined() && (t->dim() != 1 || t->size(0) != b))
        throw PluginError(m_.plugin, "method '" + m_.config.name + "' provided F(x), F(x') that are not [" +
                                         std::to_string(b) + "] tensors");
    outputs_->provide(f_input, f_baseline);
  }

 private:
  const Workload& w_;
  const PlannedMethod& m_;
  const ShardData& d_;
  const PathPass* pass_;
  ShardOutputs* outputs_;
  int steps_;
};

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

// Methods that failed in some shard (first message each). Shared by the shards of one run; a failed method is
// not called again and none of its shards' results are kept. Without it (a rerun) the first failure ends all.
class MethodFailures {
 public:
  bool failed(std::size_t method) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return messages_.count(method) > 0;
  }
  void add(std::size_t method, const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex_);
    messages_.emplace(method, message);
  }
  std::map<std::size_t, std::string> messages() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return messages_;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::size_t, std::string> messages_;
};

// With a path layer that embeds the model's inputs ([N, T] token ids → [N, T, E]), an input-space attribution
// is also given per token: summed over the embedding dimension, as extra "tokens" [N, T].
bool embeds_tokens(const Plan& plan) {
  if (!plan.original_inputs.defined() || plan.original_inputs.is_floating_point()) return false;
  const auto token_shape = plan.original_inputs.sizes().slice(1);
  const auto sample = plan.inputs.sizes().slice(1);
  return sample.size() == token_shape.size() + 1 && sample.slice(0, token_shape.size()) == token_shape;
}

void add_token_sums(const Plan& plan, MethodResult& r) {
  if (!embeds_tokens(plan) || r.space != Space::Input || r.extras.count("tokens")) return;
  if (r.values.sizes().slice(1) != plan.inputs.sizes().slice(1)) return;
  r.extras["tokens"] = r.values.sum(-1);
}

// What one shard produced.
struct ShardResult {
  std::vector<std::vector<Attribution>> per_method;  // indexed like Workload::methods
  torch::Tensor f_input, f_baseline;
  Timings timings;
};

using Guard = std::function<void(std::size_t, const std::function<void()>&)>;

// Method `m` on rows `d` (with the shared pass, or the outputs it may provide), timed into `timings`; `steps`:
// the level of an adaptive pass (0: the method's own).
std::vector<Attribution> call_method(const Workload& w, const PlannedMethod& m, const ShardData& d,
                                     const PathPass* pass, ShardOutputs* outputs, Timings& timings, int steps = 0) {
  const auto t0 = Clock::now();
  ShardContext ctx(w, m, d, pass, outputs, steps);
  auto atts = call_plugin(m.plugin, [&] { return m.method->attribute(ctx, m.config.layers); });
  timings["method " + m.config.name] += seconds_since(t0);
  return atts;
}

// One method's attributions over the rows of a shard, assembled from the levels of an adaptive pass: each row
// takes the values of the level where it converged.
class Assembly {
 public:
  // Takes rows `done` (indices into `level`'s rows) of `level` into shard rows `rows`.
  void take(const std::vector<Attribution>& level, const torch::Tensor& done, const torch::Tensor& rows,
            std::int64_t batch) {
    if (parts_.empty())
      for (const auto& a : level) {
        Attribution p = a;
        p.values = blank(a.values, batch);
        p.delta = a.delta.defined() ? blank(a.delta, batch) : torch::Tensor();
        p.extras.clear();
        for (const auto& [key, t] : a.extras) p.extras[key] = blank(t, batch);
        parts_.push_back(std::move(p));
      }
    for (std::size_t k = 0; k < level.size(); ++k) {
      const auto put = [&](torch::Tensor& into, const torch::Tensor& from) {
        into.index_copy_(0, rows.to(into.device()), from.index_select(0, done.to(from.device())).to(into.dtype()));
      };
      put(parts_[k].values, level[k].values);
      if (level[k].delta.defined()) put(parts_[k].delta, level[k].delta);
      for (const auto& [key, t] : level[k].extras) put(parts_[k].extras.at(key), t);
    }
  }
  std::vector<Attribution> release() { return std::move(parts_); }

 private:
  static torch::Tensor blank(const torch::Tensor& like, std::int64_t batch) {
    auto sizes = like.sizes().vec();
    sizes[0] = batch;
    return torch::zeros(sizes, like.options());
  }
  std::vector<Attribution> parts_;
};

// The attributions of one level for rows `keep` only (the rows still refining).
std::vector<Attribution> select_rows(const std::vector<Attribution>& level, const torch::Tensor& keep) {
  std::vector<Attribution> out = level;
  for (auto& a : out) {
    a.values = a.values.index_select(0, keep.to(a.values.device()));
    if (a.delta.defined()) a.delta = a.delta.index_select(0, keep.to(a.delta.device()));
    for (auto& [key, t] : a.extras) t = t.index_select(0, keep.to(t.device()));
  }
  return out;
}

// A pass group with steps = "auto": its levels, each a pass over the shard's rows not yet converged and every
// method of the group on it; a row is done when its estimated error (below: how far the path methods'
// attributions at every layer moved since the level before, L1 over the units, and half the move before that)
// is at most tolerance / 2 × |F(x) − F(x′)|, or at the last level. Every attribution gets the extra "points":
// the grid points its row's path was evaluated at, over all levels.
void run_adaptive_group(const Workload& w, const PassGroup& g, const ShardData& d, ShardOutputs& outputs,
                        ShardResult& o, MethodFailures* failures, const Guard& guarded) {
  const std::int64_t batch = d.x.size(0);
  const auto index = torch::TensorOptions().dtype(torch::kLong);
  torch::Tensor active = torch::arange(batch, index);  // shard rows still refining
  torch::Tensor points = torch::zeros({batch}, index);
  std::map<std::size_t, std::vector<Attribution>> previous;  // per path method: the last level, rows of `active`
  torch::Tensor previous_change;  // per row of `active`: the change the level before measured (from level 2 on)
  std::map<std::size_t, Assembly> assembled;
  const auto levels = g.adaptive.levels();
  for (std::size_t level = 0; level < levels.size() && active.size(0) > 0; ++level) {
    const bool last = level + 1 == levels.size();
    const auto on_device = active.to(d.x.device());
    const ShardData sub{d.x.index_select(0, on_device), d.xb.index_select(0, on_device),
                        d.targets.index_select(0, on_device), d.offset};
    auto spec = g.spec(w.plan.config.run.double_precision);
    spec.steps = levels[level];
    const auto t0 = Clock::now();
    const PathPass pass = compute_path_pass(w.model, spec, sub.x, sub.xb, sub.targets, w.plan.objective);
    o.timings["pass [" + g.key + "]"] += seconds_since(t0);
    if (level == 0 && !outputs.complete() && torch::equal(pass.baselines, d.xb))
      outputs.provide(pass.f_input(), pass.f_baseline());
    points.index_add_(0, active, torch::full({active.size(0)}, static_cast<std::int64_t>(pass.t.size()), index));
    const auto scale = (pass.f_input() - pass.f_baseline()).abs().to(torch::kCPU, torch::kDouble).clamp_min(1e-12);
    auto change = torch::zeros({active.size(0)}, torch::TensorOptions().dtype(torch::kDouble));
    std::map<std::size_t, std::vector<Attribution>> current;
    for (auto i : g.methods)
      guarded(i, [&] {
        const auto& m = w.methods[i];
        auto atts = call_method(w, m, sub, &pass, nullptr, o.timings, levels[level]);
        for (const auto& a : atts) check_attribution(m, a, active.size(0));
        const auto prev = previous.find(i);
        if (m.needs.path && prev != previous.end()) {
          if (prev->second.size() != atts.size())
            throw PluginError(m.plugin, "method '" + m.config.name + "' returned " + std::to_string(atts.size()) +
                                            " attributions at " + std::to_string(levels[level]) + " steps and " +
                                            std::to_string(prev->second.size()) + " at the level before");
          for (std::size_t k = 0; k < atts.size(); ++k) {
            const auto moved = (atts[k].values.to(torch::kDouble) - prev->second[k].values.to(torch::kDouble))
                                   .abs().flatten(1).sum(1).cpu();
            change = torch::maximum(change, moved / scale);
          }
        }
        current[i] = std::move(atts);
      });
    // The error estimate: this level's change, and at least half the change before (a path whose kinks made two
    // levels agree by chance after a large step does not stop there). Rules on kinked paths converge like 1/n,
    // so the finer level's error is about the change itself: a row stops at half the tolerance (measured on the
    // example CNN and ReLU MLPs, docs/config.md). The first level has nothing to compare with; the last takes
    // every row left.
    const auto estimate = previous_change.defined() ? torch::maximum(change, previous_change / 2) : change;
    const auto done_mask = last ? torch::ones({active.size(0)}, torch::kBool)
                                : (level == 0 ? torch::zeros({active.size(0)}, torch::kBool)
                                              : estimate.le(g.adaptive.tolerance / 2));
    const auto done = done_mask.nonzero().flatten();
    const auto keep = done_mask.logical_not().nonzero().flatten();
    for (auto& [i, atts] : current) {
      if (failures && failures->failed(i)) continue;
      assembled[i].take(atts, done, active.index_select(0, done), batch);
      if (w.methods[i].needs.path) previous[i] = select_rows(atts, keep);  // endpoint methods do not refine
    }
    active = active.index_select(0, keep);
    if (level > 0) previous_change = change.index_select(0, keep);
  }
  for (auto i : g.methods) {
    if (failures && failures->failed(i)) continue;
    auto parts = assembled[i].release();
    for (auto& a : parts) a.extras["points"] = points.to(a.values.device());
    o.per_method[i] = std::move(parts);
  }
}

ShardResult run_shard(const Workload& w, const ShardRange& r, MethodFailures* failures) {
  ShardResult o;
  o.per_method.resize(w.methods.size());
  const ShardData d{w.inputs.narrow(0, r.start, r.length), w.baselines.narrow(0, r.start, r.length),
                    w.targets.narrow(0, r.start, r.length), r.start};
  ShardOutputs outputs;
  // Runs `fn` for method i; with `failures`, an error marks the method failed instead of ending the run.
  const auto guarded = [&](std::size_t i, const std::function<void()>& fn) {
    if (failures && failures->failed(i)) return;
    try {
      fn();
    } catch (const std::exception& e) {
      if (!failures) throw;
      failures->add(i, e.what());
      o.per_method[i].clear();
    }
  };
  const auto attribute = [&](std::size_t i, const PathPass* pass, ShardOutputs* provided) {
    guarded(i, [&] { o.per_method[i] = call_method(w, w.methods[i], d, pass, provided, o.timings); });
  };
  for (const auto& g : w.groups) {
    if (failures && std::all_of(g.methods.begin(), g.methods.end(), [&](std::size_t i) { return failures->failed(i); }))
      continue;
    if (g.adaptive.on) {
      try {
        run_adaptive_group(w, g, d, outputs, o, failures, guarded);
      } catch (const std::exception& e) {  // a level's pass failed
        if (!failures) throw;
        for (auto i : g.methods) failures->add(i, std::string("its shared pass [") + g.key + "] failed: " + e.what());
      }
      continue;
    }
    const auto t0 = Clock::now();
    const PathPassSpec spec = g.spec(w.plan.config.run.double_precision);
    std::optional<PathPass> computed;
    try {
      computed.emplace(compute_path_pass(w.model, spec, d.x, d.xb, d.targets, w.plan.objective));
    } catch (const std::exception& e) {
      if (!failures) throw;
      for (auto i : g.methods) failures->add(i, std::string("its shared pass [") + g.key + "] failed: " + e.what());
      continue;
    }
    const PathPass& pass = *computed;
    o.timings["pass [" + g.key + "]"] += seconds_since(t0);
    // A pass provides F(x), F(x') when its path kept the configured baselines.
    if (!outputs.complete() && torch::equal(pass.baselines, d.xb)) outputs.provide(pass.f_input(), pass.f_baseline());
    for (auto i : g.methods) attribute(i, &pass, nullptr);
  }
  for (std::size_t i = 0; i < w.methods.size(); ++i)
    if (!w.methods[i].needs.path && !w.methods[i].needs.endpoints) attribute(i, nullptr, &outputs);
  if (!outputs.complete()) {  // what no pass or method computed
    torch::NoGradGuard ng;
    const auto t0 = Clock::now();
    outputs.provide(outputs.f_input().defined() ? torch::Tensor() : w.plan.objective(w.model.forward(d.x), d.targets),
                    outputs.f_baseline().defined() ? torch::Tensor()
                                                   : w.plan.objective(w.model.forward(d.xb), d.targets));
    o.timings["F(x), F(x')"] += seconds_since(t0);
  }
  o.f_input = outputs.f_input();
  o.f_baseline = outputs.f_baseline();
  for (std::size_t i = 0; i < w.methods.size(); ++i)
    guarded(i, [&] {
      for (auto& a : o.per_method[i]) {
        check_attribution(w.methods[i], a, r.length);
        if (a.space == Space::Layer) a.values = aggregate_units(a.values, w.methods[i].config.unit);
      }
    });
  return o;
}

// Shards in order → one result per method and layer over all inputs.
RunResult gather(const Workload& w, std::vector<ShardResult>& shards, const std::map<std::size_t, std::string>& failed) {
  RunResult result;
  std::vector<torch::Tensor> fi, fb;
  for (auto& o : shards) {
    fi.push_back(o.f_input);
    fb.push_back(o.f_baseline);
    for (const auto& [k, v] : o.timings) result.timings[k] += v;
  }
  result.f_input = torch::cat(fi);
  result.f_baseline = torch::cat(fb);
  for (std::size_t i = 0; i < w.methods.size(); ++i) {
    if (const auto f = failed.find(i); f != failed.end()) {
      result.failures.push_back({"method", w.methods[i].config.name, f->second});
      continue;
    }
    const auto& first = shards.front().per_method[i];
    for (std::size_t a = 0; a < first.size(); ++a) {
      MethodResult r;
      r.method = w.methods[i].config.name;
      r.layer = first[a].layer;
      r.space = first[a].space;
      std::vector<torch::Tensor> values, deltas;
      std::map<std::string, std::vector<torch::Tensor>> extras;
      for (auto& o : shards) {
        const Attribution& part = o.per_method[i].at(a);
        values.push_back(part.values);
        if (part.delta.defined()) deltas.push_back(part.delta);
        for (const auto& [key, t] : part.extras) extras[key].push_back(t);
        for (const auto& note : part.notes)
          if (std::find(r.notes.begin(), r.notes.end(), note) == r.notes.end()) r.notes.push_back(note);
      }
      r.values = torch::cat(values);
      if (deltas.size() == shards.size()) r.delta = torch::cat(deltas);
      for (auto& [key, parts] : extras)
        if (parts.size() == shards.size()) r.extras[key] = torch::cat(parts);
      add_token_sums(w.plan, r);
      result.results.push_back(std::move(r));
    }
  }
  return result;
}

// Every method of the workload over all its shards: results and F(x), F(x'), no evaluators. With
// `keep_going`, a method that fails is left out (RunResult::failures) and the others finish; without, the
// first failure ends the workload.
RunResult run_methods(const Workload& w, const ProgressFn& progress, bool keep_going) {
  std::vector<ShardResult> shards(w.schedule.shards());
  MethodFailures failures;
  const auto t_run = Clock::now();
  for_each_shard(
      w.schedule, [&](const ShardRange& r) { shards[r.index] = run_shard(w, r, keep_going ? &failures : nullptr); },
      [&](std::size_t done) {
        if (progress) progress("shards", done, shards.size());
      });
  auto result = gather(w, shards, failures.messages());
  result.timings["run (wall)"] = seconds_since(t_run);
  return result;
}

}  // namespace

void for_each_shard(const ShardSchedule& schedule, const std::function<void(const ShardRange&)>& fn,
                    const std::function<void(std::size_t)>& done) {
  const std::size_t shards = schedule.shards();
  std::mutex error_mutex;
  std::exception_ptr first_error;
  std::size_t finished = 0;
  const int previous_threads = at::get_num_threads();
  tbb::task_arena arena(std::max(1, schedule.concurrency));
  arena.execute([&] {
    tbb::flow::graph graph;
    tbb::flow::function_node<std::size_t, std::size_t> compute(
        graph, static_cast<std::size_t>(std::max(1, schedule.concurrency)), [&](std::size_t s) {
          {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (first_error) return s;
          }
          try {
            at::set_num_threads(schedule.intra_threads);  // per worker thread under OpenMP
            torch::AutoGradMode grad(true);
            const auto start = static_cast<std::int64_t>(s) * schedule.shard_size;
            fn(ShardRange{s, start, std::min(schedule.shard_size, schedule.inputs - start)});
          } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!first_error) first_error = std::current_exception();
          }
          return s;
        });
    tbb::flow::function_node<std::size_t> report(graph, tbb::flow::serial, [&](std::size_t) {
      ++finished;
      if (done) done(finished);
    });
    tbb::flow::make_edge(compute, report);
    for (std::size_t s = 0; s < shards; ++s) compute.try_put(s);
    graph.wait_for_all();
  });
  at::set_num_threads(previous_threads);
  if (first_error) std::rethrow_exception(first_error);
}

RunResult execute(const Plan& plan, const ProgressFn& progress) {
  const Workload run{plan, *plan.model, plan.inputs, plan.baselines, plan.targets, plan.methods, plan.groups,
                     plan.schedule};
  RunResult result = run_methods(run, progress, /*keep_going=*/true);
  // Evaluators may run a method again on another model (parameter randomisation) over the first inputs: a
  // workload of that method alone, with the run's schedule.
  const auto rerun = [&plan](const std::string& method, std::shared_ptr<Model> model, std::int64_t count) {
    const auto it = std::find_if(plan.methods.begin(), plan.methods.end(),
                                 [&](const PlannedMethod& m) { return m.config.name == method; });
    if (it == plan.methods.end()) throw ConfigError("no method named '" + method + "' in this run");
    if (!model) throw Error("rerun of method '" + method + "' was given no model");
    const auto n = count > 0 ? std::min(count, plan.inputs.size(0)) : plan.inputs.size(0);
    std::vector<PlannedMethod> methods{*it};
    auto groups = group_methods(methods);
    const Workload again{plan, *model, plan.inputs.narrow(0, 0, n), plan.baselines.narrow(0, 0, n),
                         plan.targets.narrow(0, 0, n), std::move(methods), std::move(groups), plan.schedule.over(n)};
    return run_methods(again, {}, /*keep_going=*/false).results;
  };
  for (const auto& e : plan.evaluators) {
    if (progress) progress("evaluator " + e.config.name, 0, 1);
    const auto t0 = Clock::now();
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
    in.input_labels = plan.input_labels;
    in.tokens = embeds_tokens(plan);
    try {
      result.evaluations.emplace_back(e.config.name,
                                      call_plugin(e.plugin, [&] { return e.evaluator->evaluate(in); }));
    } catch (const std::exception& error) {  // the methods' results and the other evaluations stand
      result.failures.push_back({"evaluator", e.config.name, error.what()});
    }
    result.timings["evaluator " + e.config.name] = seconds_since(t0);
    if (progress) progress("evaluator " + e.config.name, 1, 1);
  }
  return result;
}

}  // namespace galvani::core
