// Model backends: load a model, list its layers, and run forwards with taps on any set of layers.
#pragma once

#include <ATen/core/ivalue.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "galvani/error.h"

namespace galvani {

/// One tappable layer: a call site of a module inside the model's forward.
struct GALVANI_API LayerInfo {
  /// The name used in configs: the module path (`layer1.0.conv2`), with `#k` appended for the k-th call
  /// site when a module is called more than once in one forward (`relu#0`, `relu#1`).
  std::string name;
  std::string module;            ///< module path without the call suffix
  std::string type;              ///< module class name, e.g. `Conv2d`; empty when unknown
  int call_index = 0;            ///< which call of that module (0-based, in graph order)
  int call_count = 1;            ///< how many call sites the module has
  std::vector<std::int64_t> shape;  ///< output shape of one sample (no batch dimension); empty if unknown
};

/// Receives the output of the `layer`-th requested layer during a forward (index into the list given to
/// Model::tapped) and returns what flows on in its place. Returning the output itself captures it; a new leaf
/// that requires grad makes the layer an input; a blend `a*m + c*(1-m)` ablates. Runs on the forwarding
/// thread, inside the forward, with grad mode as the caller set it.
using TapFn = std::function<torch::Tensor(std::size_t layer, const torch::Tensor& output)>;

/// Thrown by a tap to end the forward early, once it has seen every layer it needs (the rest of the network
/// is then not computed). TappedForward::forward catches it and returns an undefined tensor. Deliberately not
/// a std::exception, so that nothing between the tap and the forward mistakes it for an error.
struct GALVANI_API StopForward {};

/// A forward whose requested layers pass through a tap. Prepared once (graph rewriting is not free) and
/// then callable from several threads at once.
class GALVANI_API TappedForward {
 public:
  virtual ~TappedForward();
  /// The layer names this forward taps, in tap-index order.
  virtual const std::vector<std::string>& layers() const = 0;
  /// Runs the model on `input` (batch first, on the model's device). Every requested layer's output goes
  /// through `tap` exactly once per forward; a layer that does not run (a branch not taken) or runs more than
  /// once (inside a loop) is a ModelError. Skip connections around a tapped layer keep their real values.
  /// If a tap throws StopForward, the forward ends there and returns an undefined tensor.
  virtual torch::Tensor forward(const torch::Tensor& input, const TapFn& tap) const = 0;
};

/// The part of the network after one layer: runs on a replacement for the layer's output, without computing
/// what only fed the layer. Shapley coalitions and ablations evaluate many replacements per input this way.
class GALVANI_API TailForward {
 public:
  virtual ~TailForward();
  virtual const std::string& layer() const = 0;
  /// False when the graph is cut cleanly at the layer (the tail reads only the layer's output). True when
  /// something after the layer also reads the model input (a skip connection around the layer, a shape read
  /// from the input) or the backend cannot cut: then `forward` needs the input, row-aligned with the activation.
  virtual bool needs_input() const = 0;
  /// Why the tail needs the input (empty when it does not), for notes shown to the user.
  virtual std::string cut_note() const = 0;
  /// Runs the network from the layer on: `activation` [K, *layer shape] → outputs [K, C] (or [K]). `input`
  /// [K, *input shape] must be given when needs_input(); it is ignored otherwise and may be undefined.
  /// Thread-safe; grad mode is the caller's.
  virtual torch::Tensor forward(const torch::Tensor& activation, const torch::Tensor& input) const = 0;
};

/// One operation in the model's graph that depends on the model input, as seen by op taps (DeepLIFT swaps
/// nonlinearities through them). Listed by Model::operations() in graph order.
struct GALVANI_API OpSite {
  std::string op;        ///< qualified kind, e.g. `aten::relu`, `aten::max_pool2d` (in-place ops listed out of place)
  std::string location;  ///< the module whose forward holds it (`layer1.0`, `features`), "" for the root forward
  /// One entry per argument, in schema order: a constant's value, None for a tensor argument or for a
  /// non-constant scalar (see `dynamic_args`).
  std::vector<c10::IValue> args;
  /// For each tensor argument (Optional[Tensor] included), in order: the index of the OpSite producing it, -1
  /// for the model input, -2 when it does not depend on the input (a parameter, a constant, None).
  std::vector<std::int64_t> producers;
  bool dynamic_args = false;  ///< some non-tensor argument is computed at run time (its value is not in `args`)
};

/// Receives, for op site `site` (index into Model::operations()), the op's output and its tensor arguments (in
/// order; undefined for None) during a forward, and returns what flows on in place of the output.
using OpTapFn = std::function<torch::Tensor(std::size_t site, const torch::Tensor& output,
                                            const std::vector<torch::Tensor>& tensor_args)>;

/// A forward with taps on layers and on individual operations.
class GALVANI_API OpTappedForward {
 public:
  virtual ~OpTappedForward();
  virtual const std::vector<std::string>& layers() const = 0;
  virtual const std::vector<std::size_t>& sites() const = 0;  ///< the tapped op sites
  /// As TappedForward::forward, with `op_tap` called once for every tapped op site that runs.
  virtual torch::Tensor forward(const torch::Tensor& input, const TapFn& layer_tap, const OpTapFn& op_tap) const = 0;
};

/// What a backend's models can do beyond plain and tapped forwards. Methods and evaluators that need more ask
/// here (in `validate`, before any shard runs) instead of trying and catching ModelError.
struct GALVANI_API ModelCapabilities {
  bool operations = false;  ///< operations() lists op sites and op_tapped() taps them (DeepLIFT, functional ReLUs)
  bool tail_cut = false;    ///< tail() cuts the graph at a layer (else it reruns the whole forward)
  bool randomized = false;  ///< randomized() copies the model with redrawn parameters
};

/// A loaded model. Thread-safe for concurrent forwards. `tapped`, `tail` and `op_tapped` are called per shard
/// by methods that keep no per-model state (see Method): a backend whose preparation is costly memoises it per
/// argument, as the TorchScript backend does.
class GALVANI_API Model {
 public:
  virtual ~Model();
  /// Every tappable layer, in graph order. Shapes are filled once `probe` has run.
  virtual std::vector<LayerInfo> layers() const = 0;
  /// Runs one forward on `example` (batch first) to learn every layer's output shape.
  virtual void probe(const torch::Tensor& example) = 0;
  virtual torch::Device device() const = 0;
  virtual torch::ScalarType dtype() const = 0;
  /// The plain forward: [B, ...] → outputs [B, C] (or [B]).
  virtual torch::Tensor forward(const torch::Tensor& input) const = 0;
  /// A forward with taps on `layers` (names as in LayerInfo::name). Throws ModelError naming an unknown or
  /// ambiguous layer together with the valid names.
  virtual std::shared_ptr<const TappedForward> tapped(const std::vector<std::string>& layers) const = 0;
  /// The network after `layer` (see TailForward). The default runs the whole forward with the layer's output
  /// replaced (needs_input() true); backends that can cut their graph return a real tail.
  virtual std::shared_ptr<const TailForward> tail(const std::string& layer) const;
  /// Every operation that depends on the model input, with its arguments and producers, in graph order (all
  /// module calls inlined). The default, for backends without op taps, throws ModelError.
  virtual std::vector<OpSite> operations() const;
  /// A forward with taps on `layers` and on the op sites `sites` (indices into operations()). The default
  /// throws ModelError.
  virtual std::shared_ptr<const OpTappedForward> op_tapped(const std::vector<std::string>& layers,
                                                           const std::vector<std::size_t>& sites) const;
  /// A copy of the model whose parameters in the modules `modules` (module paths as in LayerInfo::module, each
  /// with its submodules; "" is the whole model) are redrawn at random, for parameter-randomisation sanity
  /// checks: every parameter tensor gets fresh N(μ, σ²) values with the mean and standard deviation of the
  /// original tensor (σ of a one-element tensor: |value|). Buffers (batch-norm statistics) are kept. The same
  /// seed gives the same parameters. The original model is not changed. The default throws ModelError.
  virtual std::shared_ptr<Model> randomized(const std::vector<std::string>& modules, std::uint64_t seed) const;
  /// What this model supports besides forward, tapped and tail (default: nothing more).
  virtual ModelCapabilities capabilities() const;
  /// What loading changed in the model or found in it that bears on the results (training flags set to
  /// evaluation, random numbers drawn in the forward), one sentence each, for the run's summary (default: none).
  virtual std::vector<std::string> notes() const;
  /// Looks a layer up by name; throws ModelError with suggestions when it does not exist.
  LayerInfo layer(const std::string& name) const;
};

/// Where and how to load a model.
struct GALVANI_API ModelOptions {
  torch::Device device = torch::kCPU;
  /// Convert parameters and buffers to this dtype (e.g. kDouble for exact checks); nullopt keeps the model's.
  std::optional<torch::ScalarType> dtype;
  /// Keep the model in the mode it was saved in. By default a model is evaluated as after `model.eval()`:
  /// dropout off and batch normalisation on its running statistics, also where tracing recorded the training
  /// flag as a constant. Training mode makes results differ between runs and between shard sizes.
  bool training = false;
  /// Run dense layers (aten::linear) through oneDNN on the CPU (galvani::linear, galvani/tap.h): 5–10× faster
  /// than Debian's reference BLAS at a path chunk's row counts, equal to float32 rounding. False keeps
  /// aten::linear (bit-for-bit what PyTorch computes on this machine).
  bool onednn_linear = true;
  /// Which part of what `forward` returns is explained, for models that return a tuple, a list or a dict: a
  /// position ("0", "1", …) or a dict key ("logits"). Empty: the forward must return one Tensor. A backend
  /// refuses a wrong choice with what the model returns (positions or keys, each with its type and shape).
  std::string output_element;
};

/// Loads models of one format (TorchScript, ...). `load` is called on the host's thread; the model it returns
/// must allow concurrent forwards and tapped forwards from several threads (taps are per call, never global).
class GALVANI_API ModelBackend {
 public:
  virtual ~ModelBackend();
  /// Loads `path`. Throws ModelError (corrupt file, frozen module, wrong format) with the fix where known.
  virtual std::shared_ptr<Model> load(const std::string& path, const ModelOptions& options) const = 0;
};

}  // namespace galvani
