#include "galvani/core/path_layer.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "galvani/tap.h"
#include "galvani/tensor_io.h"

namespace galvani::core {
namespace {

constexpr std::int64_t kEmbedChunk = 256;  // rows per forward when computing a(x): no gradients, small rows

/// How this model's layer taps map onto the original's: the original's tap 0 is the path layer, whose output the
/// points replace; `original_index[i]` is the original's tap for this forward's tap i (0 again when the path layer
/// is requested itself). Shared by the tapped and the op-tapped forward.
class PathTaps {
 public:
  PathTaps(std::string path_layer, const std::vector<std::size_t>& original_index)
      : path_layer_(std::move(path_layer)) {
    for (std::size_t i = 0; i < original_index.size(); ++i) {
      if (original_index[i] == 0) path_tap_ = static_cast<std::int64_t>(i);
      else tap_of_original_[original_index[i]] = i;
    }
  }
  /// The original's layer tap for a forward on `points` whose own taps are `tap`.
  TapFn around(const torch::Tensor& points, const TapFn& tap) const {
    return [this, &points, &tap](std::size_t i, const torch::Tensor& y) -> torch::Tensor {
      if (i != 0) return tap(tap_of_original_.at(i), y);
      if (y.sizes() != points.sizes())
        throw ShapeError("inputs in the space of layer '" + path_layer_ + "' have shape " +
                         shape_string(points.sizes()) + " but the layer's output has " + shape_string(y.sizes()));
      auto flowing = points * 1;  // a fresh tensor: ops after the layer may work in place
      return path_tap_ >= 0 ? tap(static_cast<std::size_t>(path_tap_), flowing) : flowing;
    };
  }

 private:
  std::string path_layer_;
  std::int64_t path_tap_ = -1;
  std::map<std::size_t, std::size_t> tap_of_original_;
};

/// The original model's forward with the path layer's output replaced by the points, and taps on further layers.
class PathLayerTappedForward : public TappedForward {
 public:
  PathLayerTappedForward(std::shared_ptr<const TappedForward> forward, std::vector<std::string> names, PathTaps taps,
                         std::function<torch::Tensor(std::int64_t)> stand_in)
      : forward_(std::move(forward)), names_(std::move(names)), taps_(std::move(taps)),
        stand_in_(std::move(stand_in)) {}
  const std::vector<std::string>& layers() const override { return names_; }
  torch::Tensor forward(const torch::Tensor& points, const TapFn& tap) const override {
    return forward_->forward(stand_in_(points.size(0)), taps_.around(points, tap));
  }

 private:
  std::shared_ptr<const TappedForward> forward_;
  std::vector<std::string> names_;
  PathTaps taps_;
  std::function<torch::Tensor(std::int64_t)> stand_in_;
};

/// The original's op-tapped forward seen from the path layer: the same layer taps, op sites renumbered to this
/// model's list.
class PathLayerOpTappedForward : public OpTappedForward {
 public:
  PathLayerOpTappedForward(std::shared_ptr<const OpTappedForward> forward, std::vector<std::string> names,
                           PathTaps taps, std::vector<std::size_t> sites,
                           std::map<std::size_t, std::size_t> site_of_original,
                           std::function<torch::Tensor(std::int64_t)> stand_in)
      : forward_(std::move(forward)), names_(std::move(names)), taps_(std::move(taps)), sites_(std::move(sites)),
        site_of_original_(std::move(site_of_original)), stand_in_(std::move(stand_in)) {}
  const std::vector<std::string>& layers() const override { return names_; }
  const std::vector<std::size_t>& sites() const override { return sites_; }
  torch::Tensor forward(const torch::Tensor& points, const TapFn& layer_tap, const OpTapFn& op_tap) const override {
    return forward_->forward(stand_in_(points.size(0)), taps_.around(points, layer_tap),
                             [&](std::size_t site, const torch::Tensor& out, const std::vector<torch::Tensor>& args) {
                               const auto it = site_of_original_.find(site);
                               return it == site_of_original_.end() ? out : op_tap(it->second, out, args);
                             });
  }

 private:
  std::shared_ptr<const OpTappedForward> forward_;
  std::vector<std::string> names_;
  PathTaps taps_;
  std::vector<std::size_t> sites_;
  std::map<std::size_t, std::size_t> site_of_original_;
  std::function<torch::Tensor(std::int64_t)> stand_in_;
};

/// The original model's cut tail at a layer after the path layer: it reads only the layer's activation.
class CutTail : public TailForward {
 public:
  explicit CutTail(std::shared_ptr<const TailForward> tail) : tail_(std::move(tail)) {}
  const std::string& layer() const override { return tail_->layer(); }
  bool needs_input() const override { return false; }
  std::string cut_note() const override { return ""; }
  torch::Tensor forward(const torch::Tensor& activation, const torch::Tensor&) const override {
    return tail_->forward(activation, torch::Tensor());
  }

 private:
  std::shared_ptr<const TailForward> tail_;
};

/// The tail at the path layer itself: the model's forward on the activation.
class PathTail : public TailForward {
 public:
  PathTail(std::string layer, std::shared_ptr<const TappedForward> forward)
      : layer_(std::move(layer)), forward_(std::move(forward)) {}
  const std::string& layer() const override { return layer_; }
  bool needs_input() const override { return false; }
  std::string cut_note() const override { return ""; }
  torch::Tensor forward(const torch::Tensor& activation, const torch::Tensor&) const override {
    return forward_->forward(activation, [](std::size_t, const torch::Tensor& y) { return y; });
  }

 private:
  std::string layer_;
  std::shared_ptr<const TappedForward> forward_;
};

/// A tail that reruns the forward from the path layer (Model::tail), with the original's reason for not cutting.
class UncutTail : public TailForward {
 public:
  UncutTail(std::shared_ptr<const TailForward> rerun, std::string note)
      : rerun_(std::move(rerun)), note_(std::move(note)) {}
  const std::string& layer() const override { return rerun_->layer(); }
  bool needs_input() const override { return true; }
  std::string cut_note() const override { return note_; }
  torch::Tensor forward(const torch::Tensor& activation, const torch::Tensor& input) const override {
    return rerun_->forward(activation, input);
  }

 private:
  std::shared_ptr<const TailForward> rerun_;
  std::string note_;
};

std::string layer_list(const std::vector<LayerInfo>& layers) {
  std::string out;
  for (std::size_t i = 0; i < layers.size() && i < 12; ++i) out += (i ? ", " : "") + layers[i].name;
  if (layers.size() > 12) out += ", … (" + std::to_string(layers.size()) + " in all)";
  return out;
}

}  // namespace

std::shared_ptr<PathLayerModel> PathLayerModel::make(std::shared_ptr<const Model> model, const std::string& layer,
                                                     const torch::Tensor& inputs) {
  const LayerInfo info = model->layer(layer);  // throws with the closest names
  const auto shape = inputs.sizes().slice(1).vec();
  const auto dtype = inputs.is_floating_point() ? model->dtype() : inputs.scalar_type();
  std::shared_ptr<PathLayerModel> wrapped(new PathLayerModel(std::move(model), info.name, shape, dtype));
  wrapped->find_layers(inputs.narrow(0, 0, std::min<std::int64_t>(8, inputs.size(0))));
  return wrapped;
}

std::function<torch::Tensor(std::int64_t)> PathLayerModel::stand_in_maker() const {
  // Shape, dtype and device by value: a tapped forward may outlive this model object.
  return [shape = input_shape_, options = torch::TensorOptions().dtype(input_dtype_).device(model_->device())](
             std::int64_t rows) {
    std::vector<std::int64_t> sizes{rows};
    sizes.insert(sizes.end(), shape.begin(), shape.end());
    return torch::zeros(sizes, options);
  };
}

torch::Tensor PathLayerModel::stand_in(std::int64_t rows) const { return stand_in_maker()(rows); }

torch::Tensor PathLayerModel::embed(const torch::Tensor& inputs) const {
  torch::NoGradGuard no_grad;
  const auto forward = model_->tapped({layer_});
  std::vector<torch::Tensor> parts;
  for (std::int64_t s = 0; s < inputs.size(0); s += kEmbedChunk)
    parts.push_back(layer_output(*forward, inputs.narrow(0, s, std::min(kEmbedChunk, inputs.size(0) - s))));
  return torch::cat(parts).contiguous();
}

void PathLayerModel::find_layers(const torch::Tensor& inputs) {
  const auto a = embed(inputs);
  // Which layers depend on the path layer: one forward with the path layer's output a leaf that requires grad
  // and every other layer looked at; those whose output then requires grad come after it. Layers in branches
  // not taken or in loops make a forward over all of them fail: then each is tried with the path layer alone.
  const auto all = model_->layers();
  std::vector<std::string> names{layer_};
  for (const auto& l : all)
    if (l.name != layer_) names.push_back(l.name);
  std::set<std::string> after{layer_};
  bool output_depends = false;
  const auto look = [&](const std::vector<std::string>& list) {
    const auto leaf = a.detach().requires_grad_(true);
    const auto out = model_->tapped(list)->forward(stand_in(a.size(0)), [&](std::size_t i, const torch::Tensor& y) {
      if (i == 0) return leaf * 1;
      if (y.requires_grad()) after.insert(list[i]);
      return y;
    });
    output_depends = out.requires_grad();
  };
  try {
    look(names);
  } catch (const ModelError&) {
    for (std::size_t i = 1; i < names.size(); ++i) {
      try {
        look({layer_, names[i]});
      } catch (const ModelError&) {  // not tappable on its own either (a branch not taken): not served
      }
    }
    look({layer_});
  }
  if (!output_depends)
    throw ModelError("data.path_layer '" + layer_ +
                     "': the model's output does not depend on this layer's output, so no path through it explains "
                     "anything; name a layer every output is computed from (`galvani layers` lists them)");
  for (auto l : all)
    if (after.count(l.name)) {
      if (l.name == layer_) l.shape = a.sizes().slice(1).vec();
      layers_.push_back(std::move(l));
    }

  if (model_->capabilities().operations) {
    try {
      find_sites(a);
    } catch (const ModelError&) {  // op sites that cannot be followed from the path layer: no op taps, as without
      sites_.clear();
      original_site_.clear();
      has_sites_ = false;
    }
  }

  // The cut: the network after the path layer must not read the input's values, since they are replaced by a
  // stand-in. The model on the real inputs and the model on the stand-in with a(x) put in must agree.
  torch::NoGradGuard no_grad;
  const auto real = model_->forward(inputs);
  const auto via_layer = forward(a);
  const double scale = std::max(1.0, real.abs().max().item<double>());
  const double gap = (real.to(torch::kDouble) - via_layer.to(torch::kDouble)).abs().max().item<double>();
  if (gap > 1e-5 * scale) {
    std::ostringstream msg;
    msg << "data.path_layer '" << layer_
        << "': the part of the model after this layer also reads the values of the model input (e.g. a padding mask "
           "computed from the token ids), which a path in the layer's space cannot hold at their values: the outputs "
           "differ by "
        << gap << " when the input is replaced by a stand-in after the layer. Models whose forward reads the input "
                  "again after the path layer are not supported; choose a later layer as path_layer, or compute the "
                  "mask outside the model";
    throw ModelError(msg.str());
  }
}

void PathLayerModel::find_sites(const torch::Tensor& a) {
  const auto all = model_->operations();
  std::vector<std::size_t> every(all.size());
  for (std::size_t i = 0; i < all.size(); ++i) every[i] = i;
  // One forward with the path layer a leaf that requires grad: a site after it has an output that requires grad,
  // and each of its tensor arguments either requires grad (it comes from the path layer) or not (the stand-in).
  std::vector<bool> after(all.size(), false);
  std::vector<std::vector<bool>> from_path(all.size());
  const auto leaf = a.detach().requires_grad_(true);
  (void)model_->op_tapped({layer_}, every)
      ->forward(
          stand_in(a.size(0)), [&](std::size_t, const torch::Tensor&) { return leaf * 1; },
          [&](std::size_t site, const torch::Tensor& out, const std::vector<torch::Tensor>& args) {
            after[site] = out.requires_grad();
            for (const auto& t : args) from_path[site].push_back(t.defined() && t.requires_grad());
            return out;
          });
  std::map<std::size_t, std::size_t> index;  // original site → this model's
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (!after[i]) continue;
    OpSite s = all[i];
    for (std::size_t k = 0; k < s.producers.size(); ++k) {
      const auto p = s.producers[k];
      const bool path = k < from_path[i].size() && from_path[i][k];
      if (p >= 0 && index.count(static_cast<std::size_t>(p))) s.producers[k] = static_cast<std::int64_t>(index[p]);
      else s.producers[k] = path ? -1 : -2;  // the path layer's output, or a value computed from the stand-in
    }
    index[i] = sites_.size();
    sites_.push_back(std::move(s));
    original_site_.push_back(i);
  }
  has_sites_ = true;
}

std::vector<OpSite> PathLayerModel::operations() const {
  if (!has_sites_) return Model::operations();  // the original has no op sites: the SDK's error
  return sites_;
}

std::shared_ptr<const OpTappedForward> PathLayerModel::op_tapped(const std::vector<std::string>& layers,
                                                                 const std::vector<std::size_t>& sites) const {
  if (!has_sites_) return Model::op_tapped(layers, sites);
  const auto [original, index] = translate(layers);
  std::vector<std::size_t> original_sites;
  std::map<std::size_t, std::size_t> site_of_original;
  for (auto s : sites) {
    if (s >= sites_.size())
      throw ModelError("op site " + std::to_string(s) + " does not exist (the model has " +
                       std::to_string(sites_.size()) + " after data.path_layer '" + layer_ + "')");
    original_sites.push_back(original_site_[s]);
    site_of_original[original_site_[s]] = s;
  }
  return std::make_shared<PathLayerOpTappedForward>(model_->op_tapped(original, original_sites), layers,
                                                    PathTaps(layer_, index), sites, std::move(site_of_original),
                                                    stand_in_maker());
}

torch::Tensor PathLayerModel::forward(const torch::Tensor& input) const {
  return tapped({})->forward(input, [](std::size_t, const torch::Tensor& y) { return y; });
}

std::pair<std::vector<std::string>, std::vector<std::size_t>> PathLayerModel::translate(
    const std::vector<std::string>& layers) const {
  std::vector<std::string> original{layer_};
  std::vector<std::size_t> index;
  for (const auto& name : layers) {
    const auto it = std::find_if(layers_.begin(), layers_.end(), [&](const LayerInfo& l) { return l.name == name; });
    if (it == layers_.end()) {
      (void)model_->layer(name);  // an unknown name: the closest names
      throw ModelError("layer '" + name + "' comes before data.path_layer '" + layer_ +
                       "' or does not depend on it, so no path in that layer's space passes through it; layers on "
                       "the path: " +
                       layer_list(layers_));
    }
    if (name == layer_) {
      index.push_back(0);
      continue;
    }
    if (std::find(original.begin(), original.end(), name) != original.end())
      throw ModelError("layer '" + name + "' is requested twice in one tapped forward");
    index.push_back(original.size());
    original.push_back(name);
  }
  return {std::move(original), std::move(index)};
}

std::shared_ptr<const TappedForward> PathLayerModel::tapped(const std::vector<std::string>& layers) const {
  const auto [original, index] = translate(layers);
  return std::make_shared<PathLayerTappedForward>(model_->tapped(original), layers, PathTaps(layer_, index),
                                                  stand_in_maker());
}

std::shared_ptr<const TailForward> PathLayerModel::tail(const std::string& layer) const {
  (void)translate({layer});  // a layer on the path, or the error saying why not
  if (layer == layer_) return std::make_shared<PathTail>(layer_, tapped({}));
  if (model_->capabilities().tail_cut) {
    auto cut = model_->tail(layer);
    if (!cut->needs_input()) return std::make_shared<CutTail>(std::move(cut));
    return std::make_shared<UncutTail>(Model::tail(layer), cut->cut_note());
  }
  return Model::tail(layer);  // the whole forward from the path layer, with `layer` replaced
}

std::shared_ptr<Model> PathLayerModel::randomized(const std::vector<std::string>& modules, std::uint64_t seed) const {
  std::shared_ptr<PathLayerModel> copy(
      new PathLayerModel(model_->randomized(modules, seed), layer_, input_shape_, input_dtype_));
  copy->layers_ = layers_;
  copy->sites_ = sites_;  // the same graph: the same sites
  copy->original_site_ = original_site_;
  copy->has_sites_ = has_sites_;
  return copy;
}

ModelCapabilities PathLayerModel::capabilities() const {
  ModelCapabilities c = model_->capabilities();
  c.operations = has_sites_;
  return c;
}

std::vector<std::string> PathLayerModel::notes() const {
  auto notes = model_->notes();
  std::string shape;
  for (const auto& l : layers_)
    if (l.name == layer_) shape = shape_string(l.shape);
  notes.push_back("paths run in the output space of layer '" + layer_ + "' " + shape +
                  " (data.path_layer): inputs and baselines are that layer's outputs, and layers before it are not "
                  "attributed");
  return notes;
}

std::string diagnose_token_ids(const Model& model, const std::string& layer, const torch::Tensor& ids) {
  if (ids.is_floating_point() || ids.numel() == 0) return "";
  const auto flat = ids.to(torch::kCPU, torch::kLong).reshape({ids.size(0), -1});
  const auto forward = model.tapped({layer});
  std::vector<std::int64_t> sample{1};
  for (auto s : ids.sizes().slice(1)) sample.push_back(s);
  const auto runs = [&](std::int64_t id) {
    try {
      torch::NoGradGuard no_grad;
      (void)layer_output(*forward, torch::full(sample, id, ids.options()));
      return true;
    } catch (const std::exception&) {
      return false;
    }
  };
  const auto where = [&](std::int64_t flat_index) {
    const auto row = flat_index / flat.size(1), position = flat_index % flat.size(1);
    return "input " + std::to_string(row) + ", position " + std::to_string(position);
  };
  const auto low = flat.min().item<std::int64_t>();
  if (low < 0) {
    const auto at = (flat < 0).flatten().nonzero()[0].item<std::int64_t>();
    return "data.inputs holds the negative token id " + std::to_string(low) + " (first at " + where(at) +
           "); token ids index the rows of the embedding, from 0";
  }
  if (!runs(0)) return "";  // not an id range problem
  const auto high = flat.max().item<std::int64_t>();
  if (runs(high)) return "";
  std::int64_t good = 0, bad = high;  // runs(good), !runs(bad)
  while (bad - good > 1) {
    const auto mid = good + (bad - good) / 2;
    (runs(mid) ? good : bad) = mid;
  }
  const auto at = (flat > good).flatten().nonzero()[0].item<std::int64_t>();
  const auto count = (flat > good).sum().item<std::int64_t>();
  return "data.inputs holds token id " + std::to_string(flat.flatten()[at].item<std::int64_t>()) + " at " + where(at) +
         " (" + std::to_string(count) + " id(s) out of range in all), but the model takes ids 0 to " +
         std::to_string(good) + " (its embedding has " + std::to_string(good + 1) +
         " rows): the ids were made with another vocabulary";
}

}  // namespace galvani::core
