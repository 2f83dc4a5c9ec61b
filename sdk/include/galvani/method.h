// Methods: turn passes over a model into attributions of hidden units (or of input features).
#pragma once

#include <torch/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "galvani/error.h"
#include "galvani/model.h"
#include "galvani/objective.h"
#include "galvani/passes.h"
#include "galvani/path.h"

namespace galvani {

/// The shared passes a method consumes. The host computes each distinct pass once per shard and hands it to
/// every method that declared it; a method that needs none computes what it needs itself in `attribute`.
struct GALVANI_API MethodNeeds {
  bool path = false;         ///< activations and gradients along the configured path
  bool endpoints = false;    ///< activations and gradients at α = 0 and α = 1 only
  bool tangents = false;     ///< dy/dα along the path (implies path)
  bool input_grads = false;  ///< ∂F/∂x along the path (implies path), for input-space methods
};

/// Where an attribution lives.
enum class Space {
  Layer,        ///< one value per unit of the layer: [B, *layer shape]
  Input,        ///< one value per input feature: [B, *input shape]
  UnitInput,    ///< per selected unit and input feature: [B, U, *input shape]
};

/// One attribution tensor, for one layer (or, for Space::Input, named after the method's target).
struct GALVANI_API Attribution {
  std::string layer;
  torch::Tensor values;
  /// Σ attributions − (F(x) − F(x′)) per input, [B]; undefined where the method has no completeness.
  torch::Tensor delta;
  Space space = Space::Layer;
  /// For Space::UnitInput: which units (flat indices into the layer, or filter indices).
  std::vector<std::int64_t> units;
  /// Further per-input results, batch first ([B, ...]): standard errors, masks, per-input checks. Written next
  /// to the values as `<layer>.<key>.pt`; concatenated over shards like the values.
  std::map<std::string, torch::Tensor> extras;
  /// Things the user should know about this result (a fallback taken, a rule replaced); shown once per run.
  std::vector<std::string> notes;
};

/// What a method sees for one shard of inputs. All tensors are on the model's device (cpu, cuda:N) and in the
/// model's dtype; results are expected on the same device. A context lives for one `attribute` call; it is
/// not shared between threads. Accessors do not throw, except `pass()` when no shared pass was declared.
class GALVANI_API MethodContext {
 public:
  virtual ~MethodContext();
  virtual const Model& model() const = 0;
  virtual const torch::Tensor& inputs() const = 0;     ///< [B, ...]
  virtual const torch::Tensor& baselines() const = 0;  ///< [B, ...] as configured (before any path override)
  virtual const torch::Tensor& targets() const = 0;    ///< [B] int64
  virtual const Objective& objective() const = 0;
  /// The configured path generator and steps (a method without a path gets the default straight line).
  virtual const PathGenerator& path() const = 0;
  virtual int steps() const = 0;
  virtual std::int64_t internal_batch() const = 0;
  virtual bool double_precision() const = 0;
  /// Index of this shard's first input in the run: inputs()[i] is input offset()+i of the run. Methods that
  /// draw random numbers seed them per input from it, so results do not depend on sharding or threads.
  virtual std::int64_t offset() const = 0;
  /// The shared pass declared in MethodNeeds (throws if the method did not declare it).
  virtual const PathPass& pass() const = 0;
  /// A method whose own forwards computed F(x) and F(x′) for this shard (objective applied, [B], with the
  /// configured baselines) hands them over here, so that the host does not run forwards of its own for the
  /// run's F(x), F(x′). Either may be undefined (a method that only ran x). Optional; the default ignores them.
  virtual void provide_outputs(const torch::Tensor& f_input, const torch::Tensor& f_baseline) const;
};

/// What a method can see of the run while it is planned, before any shard runs: the model (loaded, layer
/// shapes probed), the configured layers (names already checked), one input's shape and the objective.
struct GALVANI_API MethodPlan {
  const Model* model = nullptr;
  std::vector<std::string> layers;
  std::vector<std::int64_t> input_shape;  ///< one input, without the batch dimension
  OutputMode output = OutputMode::Logit;
};

/// A configured attribution method. Constructed once per `[[methods]]` entry from its Options (the factory
/// may throw ConfigError); `attribute` is then called concurrently for different shards, from TBB worker
/// threads with one ATen thread each, and must not mutate shared state. Anything it throws reaches the user as
/// PluginError naming the plugin; throw galvani::Error subclasses with an actionable message.
///
/// One instance explains several models over its life: evaluators rerun it on other models (randomization
/// sanity on randomised copies), and a freed model's address may be reused by the next. Never keep state keyed
/// by a model's address, or derived from `ctx.model()`, between calls: ask the model again each call. Its
/// `tapped`, `tail` and `op_tapped` are memoised by the backend, so that costs a lookup, not a rewrite.
class GALVANI_API Method {
 public:
  virtual ~Method();
  virtual MethodNeeds needs() const = 0;
  /// Attributions for every requested layer, for the shard in `ctx`. May throw galvani::Error.
  virtual std::vector<Attribution> attribute(const MethodContext& ctx,
                                             const std::vector<std::string>& layers) const = 0;
  /// Whether the method works on the given layers at all (e.g. a layer-free input method); default: needs ≥ 1.
  virtual bool needs_layers() const { return true; }
  /// Checks, while the run is planned and before any shard runs (`--dry-run` included), everything that does
  /// not depend on the inputs' values: options against the model, its layers, operations and capabilities, the
  /// input shape and the objective. Throws what `attribute` would (ConfigError, ShapeError, ModelError), but
  /// before minutes of work are spent. The default checks nothing.
  virtual void validate(const MethodPlan& plan) const;
};

/// Sums a [B, *layer shape] attribution into units: "neuron" (as is), "filter" (sum over all dims after the
/// channel dim: [B, C]), "layer" ([B, 1]).
GALVANI_API torch::Tensor aggregate_units(const torch::Tensor& values, const std::string& unit);

/// Σ over every non-batch dim of `values` minus (f_input − f_baseline): the completeness delta, [B].
GALVANI_API torch::Tensor completeness_delta(const torch::Tensor& values, const torch::Tensor& f_input,
                                             const torch::Tensor& f_baseline);

}  // namespace galvani
