// Paths in a layer's output space ([data] path_layer): a model seen from one of its layers, so that token-id
// models (text CNNs, LSTMs, transformers) are explained along paths between embeddings.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "galvani/model.h"

namespace galvani::core {

/// A model whose input is the output of one of its layers, the path layer. Its forward runs the network with
/// that layer's output replaced by the given tensor, so every method interpolates in the layer's space: inputs
/// and baselines are the layer's outputs a(x), a(x′), F(a(x)) = F(x), and completeness holds against
/// F(x) − F(x′). What feeds the path layer runs on a stand-in input (zeros of the original input's shape and
/// dtype: id 0 is a valid row of every embedding) whose values nothing after the path layer may read; `make`
/// checks that on the run's inputs. Layers are those whose output depends on the path layer (the path layer
/// included, its output being the input); layers before it or beside it are not served.
class PathLayerModel : public Model {
 public:
  /// Wraps `model` at `layer`, given some of the run's original inputs (batch first: the first 8 rows are used
  /// to check the cut). Throws ModelError when the layer does not exist, the output does not depend on it, or
  /// the network after it also reads the input's values (a mask computed from token ids).
  static std::shared_ptr<PathLayerModel> make(std::shared_ptr<const Model> model, const std::string& layer,
                                              const torch::Tensor& inputs);

  const std::string& path_layer() const { return layer_; }
  const Model& original() const { return *model_; }
  /// The path layer's output on original inputs [N, ...] (detached, computed in chunks without gradients): the
  /// inputs and baselines of the run in this model's space.
  torch::Tensor embed(const torch::Tensor& inputs) const;

  std::vector<LayerInfo> layers() const override { return layers_; }
  void probe(const torch::Tensor&) override {}  // shapes come from the original model's probe
  torch::Device device() const override { return model_->device(); }
  torch::ScalarType dtype() const override { return model_->dtype(); }
  torch::Tensor forward(const torch::Tensor& input) const override;
  std::shared_ptr<const TappedForward> tapped(const std::vector<std::string>& layers) const override;
  std::shared_ptr<const TailForward> tail(const std::string& layer) const override;
  /// Randomises the original model's modules; modules at or before the path layer change nothing here (its
  /// output is the input), which the evaluators' notes say.
  std::shared_ptr<Model> randomized(const std::vector<std::string>& modules, std::uint64_t seed) const override;
  /// The original's op sites whose output depends on the path layer, in graph order; a tensor argument that is
  /// the path layer's output has producer -1 (this model's input), one computed before the path layer or beside
  /// it from the stand-in (a position index) producer -2. Found once, by one forward that marks the path layer.
  std::vector<OpSite> operations() const override;
  std::shared_ptr<const OpTappedForward> op_tapped(const std::vector<std::string>& layers,
                                                   const std::vector<std::size_t>& sites) const override;
  ModelCapabilities capabilities() const override;
  std::vector<std::string> notes() const override;

 private:
  PathLayerModel(std::shared_ptr<const Model> model, std::string layer, std::vector<std::int64_t> input_shape,
                 torch::ScalarType input_dtype)
      : model_(std::move(model)), layer_(std::move(layer)), input_shape_(std::move(input_shape)),
        input_dtype_(input_dtype) {}
  /// Zeros [rows, original input shape] in the original input's dtype: what feeds the path layer.
  torch::Tensor stand_in(std::int64_t rows) const;
  /// The same as a function that holds no reference to this object.
  std::function<torch::Tensor(std::int64_t)> stand_in_maker() const;
  /// The layer names this model serves, in the original's order, and their infos.
  void find_layers(const torch::Tensor& inputs);
  /// This model's layer list → the original's (the path layer first) and, per requested layer, its index there.
  /// Throws ModelError for a layer not on the path (before the path layer, beside it, unknown, or twice).
  std::pair<std::vector<std::string>, std::vector<std::size_t>> translate(const std::vector<std::string>& layers) const;

  std::shared_ptr<const Model> model_;
  std::string layer_;
  std::vector<std::int64_t> input_shape_;  ///< one original input, without the batch dimension
  torch::ScalarType input_dtype_;
  std::vector<LayerInfo> layers_;
  /// operations(): the sites, and for each the original's index. Filled by find_sites (make) when the original
  /// lists op sites; empty otherwise.
  std::vector<OpSite> sites_;
  std::vector<std::size_t> original_site_;
  bool has_sites_ = false;
  void find_sites(const torch::Tensor& a);
};

/// Why `model` failed on integer inputs, where that can be told: a token id outside the embedding of
/// `layer` (its row count found by bisection on one-row forwards that stop at the layer), naming the input
/// and position. Empty when the ids are all in range.
std::string diagnose_token_ids(const Model& model, const std::string& layer, const torch::Tensor& ids);

}  // namespace galvani::core
