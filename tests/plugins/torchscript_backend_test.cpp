// The TorchScript backend against PyTorch forward hooks (references made by tests/fixtures/make_fixtures.py):
// captured activations, gradients through them, replacement, several layers at once, forward-mode AD,
// concurrency, and the errors for layers that cannot be tapped.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/forward_grad.h>
#include <torch/cuda.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <thread>

#include "galvani/tap.h"
#include "galvani/tensor_io.h"
#include "test_support.h"

using galvani::ModelError;
using galvani::testing::fixture;
using galvani::testing::large_fixture;
using galvani::testing::load_model;

namespace {

// References that make_fixtures.py made with PyTorch forward hooks for model NAME. It writes NAME_refs.pt (a
// torch.save dict) and NAME_refs_module.pt (the same tensors as buffers named after the dict keys
// `act/<layer>#<k>`, escaped); its first version wrote NAME_refs.pt as that module, with buffers named
// `act__<layer, '.' as '_o_'>__<k>`. Both layouts are read, told apart by whether NAME_refs.pt is TorchScript.
class Refs {
 public:
  static Refs load(const std::string& dir, const std::string& name) {
    const std::string base = dir + "/" + name;
    try {
      return Refs{torch::jit::load(base + "_refs.pt"), false};
    } catch (const c10::Error&) {
      return Refs{torch::jit::load(base + "_refs_module.pt"), true};
    }
  }
  torch::Tensor get(const std::string& key) const { return module_.attr(key).toTensor(); }
  bool has(const std::string& key) const { return module_.hasattr(key); }
  /// The buffer holding `kind` ("act", "grad", "replace") of the k-th call of `layer`.
  std::string key(const std::string& kind, const std::string& layer, int k) const {
    if (!escaped_) return kind + "__" + std::regex_replace(layer, std::regex("\\."), "_o_") + "__" + std::to_string(k);
    std::string out;
    for (char c : kind + "/" + layer + "#" + std::to_string(k)) {
      switch (c) {
        case '_': out += "_u"; break;
        case '/': out += "__"; break;
        case '.': out += "_d"; break;
        case '#': out += "_h"; break;
        default: out += c;
      }
    }
    return out;
  }

 private:
  Refs(torch::jit::Module module, bool escaped) : module_(std::move(module)), escaped_(escaped) {}
  torch::jit::Module module_;
  bool escaped_;
};

const std::string kFixtures = GALVANI_TEST_FIXTURES;
const std::string kLargeFixtures = GALVANI_TEST_LARGE_FIXTURES;

// Checks every call of every layer: activation, gradient of out[:, 1].sum(), output after 0.5 × replacement.
void check_against_hooks(const std::string& model_file, const Refs& refs, const std::vector<std::string>& layers) {
  SCOPED_TRACE(model_file);
  auto model = load_model(model_file);
  const auto x = refs.get("input");
  EXPECT_TRUE(torch::allclose(model->forward(x), refs.get("output"), 1e-5, 1e-5));
  int checked = 0;
  for (const auto& layer : layers) {
    const auto info_count = [&] {
      for (const auto& l : model->layers())
        if (l.module == layer) return l.call_count;
      return 0;
    }();
    ASSERT_GT(info_count, 0) << layer;
    for (int k = 0; k < info_count; ++k) {
      const std::string name = info_count > 1 ? layer + "#" + std::to_string(k) : layer;
      SCOPED_TRACE(name);
      auto tapped = model->tapped({name});
      if (!refs.has(refs.key("act", layer, k))) {
        // The hook never fired (a branch not taken): tapping that layer must say so.
        EXPECT_THROW(tapped->forward(x, [](std::size_t, const torch::Tensor& y) { return y.clone(); }), ModelError);
        continue;
      }
      std::vector<torch::Tensor> captured;
      // Token ids take no gradient: there the first layer's output is where gradients start.
      const auto out = tapped->forward(x.is_floating_point() ? x.clone().requires_grad_(true) : x,
                                       x.is_floating_point() ? galvani::taps::capture(captured)
                                                             : galvani::taps::leaf(captured));
      EXPECT_TRUE(torch::allclose(out, refs.get("output"), 1e-5, 1e-5));
      EXPECT_TRUE(torch::allclose(captured.at(0), refs.get(refs.key("act", layer, k)), 1e-5, 1e-5));
      const auto g = torch::autograd::grad({out.select(1, 1).sum()}, {captured[0]})[0];
      EXPECT_TRUE(torch::allclose(g, refs.get(refs.key("grad", layer, k)), 1e-5, 1e-5));
      torch::NoGradGuard no_grad;
      const auto replaced = tapped->forward(x, [](std::size_t, const torch::Tensor& y) { return y * 0.5; });
      EXPECT_TRUE(torch::allclose(replaced, refs.get(refs.key("replace", layer, k)), 1e-5, 1e-5));
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

}  // namespace

TEST(TorchScriptBackend, ReusedReluTracedAndScripted) {
  for (const char* kind : {"traced", "scripted"})
    check_against_hooks(fixture(std::string("reuse_relu_") + kind + ".pt"), Refs::load(kFixtures, "reuse_relu"),
                        {"fc1", "relu", "fc2"});
}

TEST(TorchScriptBackend, InPlaceOpsAfterTheTap) {
  for (const char* kind : {"traced", "scripted"}) {
    check_against_hooks(fixture(std::string("inplace_seq_") + kind + ".pt"), Refs::load(kFixtures, "inplace_seq"),
                        {"0", "1", "2"});
    check_against_hooks(fixture(std::string("inplace_after_") + kind + ".pt"), Refs::load(kFixtures, "inplace_after"),
                        {"lin"});
  }
}

TEST(TorchScriptBackend, ScriptedControlFlow) {
  check_against_hooks(fixture("ctrl_flow_scripted.pt"), Refs::load(kFixtures, "ctrl_flow"), {"blocks.0", "blocks.2", "pos"});
}

TEST(TorchScriptBackend, TokenIdModelsTracedAndScripted) {
  for (const auto& [name, layers] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"text_cnn", {"embedding", "convs.0", "convs.1", "convs.2", "fc"}},
           {"lstm", {"embedding", "fc"}},
           {"gru", {"embedding", "fc"}},
           {"bag_linear", {"embedding", "hidden", "out"}},
           // Scripted, the encoder's fused inference kernel is routed around, so its insides are layers in any
           // grad mode; traced, the unfused path was recorded.
           {"transformer",
            {"embedding", "position", "encoder.dropout1", "encoder.norm1", "encoder.linear1", "encoder.linear2",
             "encoder", "fc"}}}) {
    const auto refs = Refs::load(kFixtures, name);
    ASSERT_EQ(refs.get("input").scalar_type(), torch::kLong);
    for (const char* kind : {"_traced.pt", "_scripted.pt"}) {
      const auto file = kFixtures + "/" + name + kind;
      if (name == "bag_linear" && std::string(kind) == "_traced.pt") continue;  // scripted only
      check_against_hooks(file, refs, layers);
    }
  }
  // nn.LSTM returns (output, (h, c)): listed, and refused as a tap with the reason.
  auto lstm = load_model(kFixtures + "/lstm_scripted.pt");
  try {
    (void)lstm->tapped({"lstm"});
    ADD_FAILURE() << "tapping the LSTM's tuple output did not throw";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'lstm' returns"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a Tensor"), std::string::npos) << e.what();
  }
  for (const auto& l : load_model(kFixtures + "/text_cnn_scripted.pt")->layers())
    if (l.name == "embedding") EXPECT_EQ(l.type, "Embedding");
}

TEST(TorchScriptBackend, TinyCnn) {
  for (const char* kind : {"traced", "scripted"})
    check_against_hooks(fixture(std::string("tiny_cnn_") + kind + ".pt"), Refs::load(kFixtures, "tiny_cnn"),
                        {"conv1", "relu1", "conv2", "fc"});
}

TEST(TorchScriptBackend, Resnet18TracedAndScripted) {
  GALVANI_SKIP_WITHOUT_LARGE_FIXTURES();
  for (const char* kind : {"traced", "scripted"})
    check_against_hooks(large_fixture(std::string("resnet18_") + kind + ".pt"), Refs::load(kLargeFixtures, "resnet18"),
                        {"layer1", "layer1.0.conv2", "layer3.0.downsample", "fc", "relu", "layer1.0.relu"});
}

TEST(TorchScriptBackend, Resnet18SeveralLayersInOnePass) {
  GALVANI_SKIP_WITHOUT_LARGE_FIXTURES();
  const auto refs = Refs::load(kLargeFixtures, "resnet18");
  for (const char* kind : {"traced", "scripted"}) {
    SCOPED_TRACE(kind);
    auto model = load_model(large_fixture(std::string("resnet18_") + kind + ".pt"));
    const std::vector<std::string> names{"layer1", "layer1.0.conv2", "layer3.0.downsample", "fc", "relu",
                                         "layer1.0.relu#0", "layer1.0.relu#1"};
    const std::vector<std::pair<std::string, int>> keys{{"layer1", 0}, {"layer1.0.conv2", 0}, {"layer3.0.downsample", 0},
                                                        {"fc", 0}, {"relu", 0}, {"layer1.0.relu", 0},
                                                        {"layer1.0.relu", 1}};
    auto tapped = model->tapped(names);
    std::vector<torch::Tensor> captured;
    const auto out = tapped->forward(refs.get("input").clone().requires_grad_(true), galvani::taps::capture(captured));
    const auto grads = torch::autograd::grad({out.select(1, 1).sum()}, captured);
    for (std::size_t i = 0; i < names.size(); ++i) {
      EXPECT_TRUE(torch::allclose(captured[i], refs.get(refs.key("act", keys[i].first, keys[i].second)), 1e-5, 1e-5))
          << names[i];
      EXPECT_TRUE(torch::allclose(grads[i], refs.get(refs.key("grad", keys[i].first, keys[i].second)), 1e-4, 1e-5))
          << names[i];
    }
    // Layers and shapes as `galvani layers` lists them.
    model->probe(refs.get("input").narrow(0, 0, 1));
    EXPECT_EQ(model->layer("layer1").shape, (std::vector<int64_t>{64, 16, 16}));
    EXPECT_EQ(model->layer("layer3.0.downsample").shape, (std::vector<int64_t>{256, 4, 4}));
    EXPECT_EQ(model->layer("layer1.0.relu#1").call_count, 2);
    EXPECT_EQ(model->layer("layer1.0.conv2").type, "Conv2d");
  }
}

TEST(TorchScriptBackend, LeafReplacementMakesTheLayerAnInput) {
  const auto refs = Refs::load(kFixtures, "tiny_cnn");
  auto model = load_model(fixture("tiny_cnn_traced.pt"));
  auto tapped = model->tapped({"conv2"});
  std::vector<torch::Tensor> leaves;
  const auto out = tapped->forward(refs.get("input"), galvani::taps::leaf(leaves));
  ASSERT_TRUE(leaves.at(0).is_leaf());
  const auto g = torch::autograd::grad({out.select(1, 1).sum()}, {leaves[0]})[0];
  EXPECT_TRUE(torch::allclose(g, refs.get(refs.key("grad", "conv2", 0)), 1e-5, 1e-5));
}

// A forward-mode AD level for the scope's lifetime (libtorch 1.13 has one level at a time).
class DualLevel {
 public:
  DualLevel() : idx_(torch::autograd::ForwardADLevel::get_next_idx()) {}
  ~DualLevel() { torch::autograd::ForwardADLevel::release_idx(idx_); }
  int64_t idx() const { return static_cast<int64_t>(idx_); }

 private:
  uint64_t idx_;
};

// The tangent of every tapped layer for an input dual tensor (x, v) equals the central finite difference.
void check_tangents(const std::string& model_file, const std::vector<std::string>& layers, torch::IntArrayRef shape,
                    double tolerance) {
  SCOPED_TRACE(model_file);
  auto model = load_model(model_file, {torch::kCPU, torch::kDouble});
  ASSERT_EQ(model->dtype(), torch::kDouble);
  auto tapped = model->tapped(layers);
  torch::manual_seed(5);
  const auto x = torch::rand(shape, torch::kDouble);
  const auto v = torch::randn(shape, torch::kDouble);
  std::vector<torch::Tensor> tangents(layers.size());
  torch::Tensor out_tangent;
  {
    torch::NoGradGuard no_grad;  // forward-mode only, as the tangent pass runs it
    DualLevel level;
    const auto out = tapped->forward(at::_make_dual(x, v, level.idx()), [&](std::size_t i, const torch::Tensor& y) {
      tangents[i] = std::get<1>(at::_unpack_dual(y, level.idx())).clone();
      return y.clone();
    });
    out_tangent = std::get<1>(at::_unpack_dual(out, level.idx())).clone();
  }
  const double eps = 1e-6;
  std::vector<torch::Tensor> plus, minus;
  const auto out_plus = tapped->forward(x + eps * v, galvani::taps::capture(plus));
  const auto out_minus = tapped->forward(x - eps * v, galvani::taps::capture(minus));
  for (std::size_t i = 0; i < layers.size(); ++i) {
    ASSERT_TRUE(tangents[i].defined()) << layers[i] << ": the layer output carries no tangent";
    const auto fd = (plus[i] - minus[i]) / (2 * eps);
    EXPECT_TRUE(torch::allclose(tangents[i], fd, tolerance, tolerance))
        << layers[i] << ": max |tangent - finite difference| = " << (tangents[i] - fd).abs().max().item<double>();
    EXPECT_GT(tangents[i].abs().max().item<double>(), 0.0) << layers[i];
  }
  ASSERT_TRUE(out_tangent.defined());
  EXPECT_TRUE(torch::allclose(out_tangent, (out_plus - out_minus) / (2 * eps), tolerance, tolerance));
}

TEST(TorchScriptBackend, ForwardModeTangentsMatchFiniteDifferences) {
  for (const char* kind : {"traced", "scripted"})
    check_tangents(fixture(std::string("tiny_cnn_") + kind + ".pt"), {"conv1", "relu1", "conv2", "fc"}, {2, 1, 8, 8},
                   1e-6);
}

TEST(TorchScriptBackend, Resnet18ForwardModeTangentsMatchFiniteDifferences) {
  GALVANI_SKIP_WITHOUT_LARGE_FIXTURES();
  for (const char* kind : {"traced", "scripted"})
    check_tangents(large_fixture(std::string("resnet18_") + kind + ".pt"),
                   {"layer1.0.relu#0", "layer1", "layer3.0.downsample", "layer4", "fc"}, {2, 3, 64, 64}, 1e-5);
}

TEST(TorchScriptBackend, ConcurrentForwardsOnOneTappedForward) {
  auto model = load_model(fixture("tiny_cnn_traced.pt"));
  auto tapped = model->tapped({"relu1", "fc"});
  torch::manual_seed(3);
  const auto x = torch::rand({4, 1, 8, 8});
  auto run = [&](int t, int i) {
    const double scale = 0.1 * (t * 20 + i);
    return tapped->forward(x, [scale](std::size_t layer, const torch::Tensor& y) { return layer == 0 ? y * scale : y.clone(); });
  };
  std::vector<torch::Tensor> serial;
  for (int t = 0; t < 2; ++t)
    for (int i = 0; i < 20; ++i) serial.push_back(run(t, i));
  std::vector<torch::Tensor> parallel(40);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      torch::NoGradGuard ng;
      for (int i = 0; i < 20; ++i) parallel[t * 20 + i] = run(t, i);
    });
  for (auto& th : threads) th.join();
  for (int i = 0; i < 40; ++i) EXPECT_TRUE(torch::equal(serial[i].detach(), parallel[i])) << i;
}

TEST(TorchScriptBackend, LayerListingNamesEveryCallSite) {
  auto model = load_model(fixture("reuse_relu_traced.pt"));
  std::vector<std::string> names;
  for (const auto& l : model->layers()) names.push_back(l.name);
  EXPECT_EQ(names, (std::vector<std::string>{"fc1", "relu#0", "fc2", "relu#1", "fc3"}));
}

TEST(TorchScriptBackend, ReusedModuleWithoutCallIndexIsAnError) {
  auto model = load_model(fixture("reuse_relu_scripted.pt"));
  try {
    model->tapped({"relu"});
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("relu#0, relu#1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model->tapped({"relu#2"}), ModelError);
  EXPECT_THROW(model->tapped({"fc1#0"}), ModelError);
}

TEST(TorchScriptBackend, UnknownLayerSuggestsTheClosest) {
  auto model = load_model(fixture("tiny_cnn_traced.pt"));
  try {
    model->tapped({"conv3"});
    FAIL();
  } catch (const ModelError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("conv2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("galvani layers"), std::string::npos) << msg;
  }
}

TEST(TorchScriptBackend, FrozenModelIsRefusedWithTheFix) {
  try {
    load_model(fixture("frozen_scripted.pt"));
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("torch.jit.freeze"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("before freezing"), std::string::npos) << e.what();
  }
}

// Tracing records `self.training` as constants, which eval() does not reach: by default they are switched to
// evaluation (dropout off, batch norm on its running statistics), as model.eval() before tracing would have.
TEST(TorchScriptBackend, ModelsSavedInTrainingModeAreEvaluatedInEvaluationMode) {
  const auto refs = Refs::load(kFixtures, "train_mode");
  const auto x = refs.get("input");
  for (const std::string file : {"train_mode_traced.pt", "train_mode_scripted.pt"}) {
    SCOPED_TRACE(file);
    const auto model = load_model(fixture(file));
    const auto first = model->forward(x);
    EXPECT_TRUE(torch::allclose(first, refs.get("eval_output"), 1e-5, 1e-6)) << first << refs.get("eval_output");
    EXPECT_TRUE(torch::equal(model->forward(x), first));
    EXPECT_TRUE(torch::allclose(model->forward(x.narrow(0, 1, 2)), first.narrow(0, 1, 2), 1e-5, 1e-6));
    const auto notes = model->notes();
    if (file == "train_mode_traced.pt") {
      ASSERT_EQ(notes.size(), 1u);
      EXPECT_NE(notes[0].find("traced in training mode: 1 dropout, 1 batch-norm call(s)"), std::string::npos)
          << notes[0];
      EXPECT_NE(notes[0].find("[model] training = true"), std::string::npos) << notes[0];
    } else {
      EXPECT_TRUE(notes.empty()) << notes.at(0);  // scripted: eval() reaches self.training
    }

    galvani::ModelOptions keep;
    keep.training = true;
    const auto training = load_model(fixture(file), keep);
    torch::manual_seed(3);
    const auto a = training->forward(x);
    const auto b = training->forward(x);
    EXPECT_FALSE(torch::allclose(a, b)) << "dropout p = 0.5 on 8 units draws the same mask twice";
    EXPECT_FALSE(torch::allclose(a, first));
    ASSERT_EQ(training->notes().size(), 1u);
    EXPECT_NE(training->notes()[0].find("kept in training mode as saved"), std::string::npos) << training->notes()[0];
  }
  galvani::ModelOptions keep;
  keep.training = true;
  const auto eval_saved = load_model(fixture("tiny_cnn_traced.pt"), keep);
  ASSERT_EQ(eval_saved->notes().size(), 1u);
  EXPECT_NE(eval_saved->notes()[0].find("saved in evaluation mode: nothing to keep"), std::string::npos);
  EXPECT_TRUE(load_model(fixture("tiny_cnn_traced.pt"))->notes().empty());
}

TEST(TorchScriptBackend, RandomNumbersInTheForwardAreNoted) {
  const auto notes = load_model(fixture("noisy_traced.pt"))->notes();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("draws random numbers (aten::randn_like)"), std::string::npos) << notes[0];
}

// One byte changed inside a stored entry: the zip directory's CRC-32 no longer matches.
TEST(TorchScriptBackend, DamagedModelFilesAreRefused) {
  for (const std::string entry : {"data/0", "data.pkl", "code/__torch__.py"}) {
    const auto damaged = galvani::testing::damaged_copy(fixture("tiny_cnn_traced.pt"), entry);
    try {
      load_model(damaged);
      ADD_FAILURE() << "a model with a damaged " << entry << " was loaded";
    } catch (const ModelError& e) {
      // A stored entry fails its CRC; a deflated one (code) its CRC, or already its inflation.
      const std::string what = e.what();
      EXPECT_TRUE(what.find(entry + "' fails its CRC-32 check") != std::string::npos ||
                  what.find(entry + "' does not inflate to its recorded") != std::string::npos)
          << what;
      EXPECT_NE(std::string(e.what()).find(damaged), std::string::npos) << e.what();
    }
  }
}

TEST(TorchScriptBackend, TracedIdentityIsExplained) {
  auto model = load_model(fixture("identity_traced.pt"));
  try {
    model->tapped({"idn"});
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("never called"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("torch.jit.script"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(model->tapped({"a", "b"}));
}

// galvani::layer_output: the first tapped layer's output as a full forward captures it, a copy, no graph.
TEST(TorchScriptBackend, LayerOutputStopsAtTheLayer) {
  auto model = load_model(fixture("tiny_cnn_traced.pt"));
  const auto x = torch::rand({3, 1, 8, 8});
  std::vector<torch::Tensor> captured;
  model->tapped({"conv1"})->forward(x, galvani::taps::capture(captured));
  const auto a = galvani::layer_output(*model->tapped({"conv1"}), x.clone().requires_grad_(true));
  EXPECT_TRUE(torch::equal(a, captured.at(0)));
  EXPECT_GT(a.abs().max().item<double>(), 0.0);
  EXPECT_FALSE(a.requires_grad());
}

TEST(TorchScriptBackend, StopForwardEndsTheForwardAtATap) {
  auto model = load_model(fixture("tiny_cnn_traced.pt"));
  auto tapped = model->tapped({"conv1", "fc"});
  const auto x = torch::rand({2, 1, 8, 8});
  std::vector<std::size_t> seen;
  const auto out = tapped->forward(x, [&](std::size_t i, const torch::Tensor& y) -> torch::Tensor {
    seen.push_back(i);
    throw galvani::StopForward();
  });
  EXPECT_FALSE(out.defined());
  EXPECT_EQ(seen, std::vector<std::size_t>{0});
  // The same forward runs normally afterwards, on this thread and another.
  EXPECT_TRUE(torch::allclose(tapped->forward(x, [](std::size_t, const torch::Tensor& y) { return y.clone(); }),
                              model->forward(x)));
  std::thread([&] {
    EXPECT_TRUE(torch::allclose(tapped->forward(x, [](std::size_t, const torch::Tensor& y) { return y.clone(); }),
                                model->forward(x)));
  }).join();
}

TEST(TorchScriptBackend, Resnet18ListsEveryCallSiteWithTypesAndShapes) {
  GALVANI_SKIP_WITHOUT_LARGE_FIXTURES();
  for (const char* kind : {"traced", "scripted"}) {
    SCOPED_TRACE(kind);
    auto model = load_model(large_fixture(std::string("resnet18_") + kind + ".pt"));
    model->probe(torch::rand({1, 3, 64, 64}));
    std::vector<std::string> names;
    for (const auto& l : model->layers()) names.push_back(l.name);
    auto position = [&](const std::string& name) {
      return std::find(names.begin(), names.end(), name) - names.begin();
    };
    for (const char* name : {"conv1", "layer1.0.relu#0", "layer1.0.relu#1", "layer1.0", "layer1", "layer3.0.downsample",
                             "layer3.0.downsample.0", "avgpool", "fc"})
      EXPECT_LT(position(name), static_cast<std::ptrdiff_t>(names.size())) << name;
    EXPECT_EQ(std::count(names.begin(), names.end(), "layer1.0.relu"), 0);
    EXPECT_LT(position("layer1.0.relu#0"), position("layer1.0.relu#1"));
    EXPECT_LT(position("conv1"), position("layer1.0.conv1"));
    EXPECT_LT(position("layer4"), position("fc"));
    const auto relu1 = model->layer("layer1.0.relu#1");
    EXPECT_EQ(relu1.module, "layer1.0.relu");
    EXPECT_EQ(relu1.call_index, 1);
    EXPECT_EQ(relu1.call_count, 2);
    EXPECT_EQ(relu1.type, "ReLU");
    EXPECT_EQ(model->layer("layer1").type, "Sequential");
    EXPECT_EQ(model->layer("layer1.0").type, "BasicBlock");
    EXPECT_EQ(model->layer("fc").type, "Linear");
    EXPECT_EQ(model->layer("layer1").shape, (std::vector<int64_t>{64, 16, 16}));
    EXPECT_EQ(model->layer("layer1.0.relu#0").shape, (std::vector<int64_t>{64, 16, 16}));
    EXPECT_EQ(model->layer("fc").shape, (std::vector<int64_t>{10}));
    for (const auto& l : model->layers()) EXPECT_FALSE(l.shape.empty()) << l.name;
  }
}

TEST(TorchScriptBackend, ProbeToleratesBranchesNotTaken) {
  const auto refs = Refs::load(kFixtures, "ctrl_flow");
  auto model = load_model(fixture("ctrl_flow_scripted.pt"));
  model->probe(refs.get("input"));
  const bool pos_ran = refs.has(refs.key("act", "pos", 0));
  EXPECT_EQ(model->layer("blocks.1").shape, (std::vector<int64_t>{6}));
  EXPECT_EQ(model->layer(pos_ran ? "pos" : "neg").shape, (std::vector<int64_t>{3}));
  EXPECT_TRUE(model->layer(pos_ran ? "neg" : "pos").shape.empty());
  // Tapping the branch that does not run is an error that says so.
  try {
    model->tapped({pos_ran ? "neg" : "pos"})->forward(refs.get("input"), galvani::taps::replace({}));
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("did not run"), std::string::npos) << e.what();
  }
}

TEST(TorchScriptBackend, LayerInsideALoopIsAnError) {
  const auto path = galvani::testing::save_script_model(
      "looped", {{"step", "def forward(self, x):\n  return x * 0.5 + 1.0\n"}},
      "def forward(self, x):\n  for i in range(3):\n    x = self.step.forward(x)\n  return x\n");
  auto model = load_model(path);
  EXPECT_EQ(model->layer("step").call_count, 1);  // one call site, run three times
  const auto x = torch::ones({2, 4});
  EXPECT_TRUE(torch::allclose(model->forward(x), torch::full({2, 4}, 1.875)));
  model->probe(x);
  EXPECT_EQ(model->layer("step").shape, (std::vector<int64_t>{4}));
  try {
    model->tapped({"step"})->forward(x, galvani::taps::replace({}));
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("3 times"), std::string::npos) << e.what();
  }
}

TEST(TorchScriptBackend, ErrorsThrownByATapKeepTheirType) {
  auto model = load_model(fixture("tiny_cnn_traced.pt"));
  auto tapped = model->tapped({"conv2"});
  const auto x = torch::rand({2, 1, 8, 8});
  const std::vector<torch::Tensor> wrong{torch::zeros({1, 2, 3})};
  EXPECT_THROW(tapped->forward(x, galvani::taps::replace(wrong)), galvani::ShapeError);
  EXPECT_TRUE(torch::allclose(tapped->forward(x, galvani::taps::replace({})), model->forward(x)));
}

TEST(TorchScriptBackend, InferenceModeInputs) {
  const auto refs = Refs::load(kFixtures, "inplace_seq");
  auto model = load_model(fixture("inplace_seq_traced.pt"));
  torch::Tensor x;
  {
    c10::InferenceMode guard;
    x = refs.get("input").clone();
  }
  ASSERT_TRUE(x.is_inference());
  EXPECT_TRUE(torch::allclose(model->forward(x), refs.get("output"), 1e-5, 1e-5));
  std::vector<torch::Tensor> captured;
  const auto out = model->tapped({"1"})->forward(x, galvani::taps::capture(captured));
  EXPECT_TRUE(torch::allclose(out, refs.get("output"), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(captured.at(0), refs.get(refs.key("act", "1", 0)), 1e-5, 1e-5));
}

TEST(TorchScriptBackend, DtypeOptionConvertsTheModel) {
  const auto refs = Refs::load(kFixtures, "tiny_cnn");
  auto as_loaded = load_model(fixture("tiny_cnn_scripted.pt"));
  EXPECT_EQ(as_loaded->dtype(), torch::kFloat);
  auto model = load_model(fixture("tiny_cnn_scripted.pt"), {torch::kCPU, torch::kDouble});
  EXPECT_EQ(model->dtype(), torch::kDouble);
  const auto out = model->forward(refs.get("input").to(torch::kDouble));
  EXPECT_EQ(out.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::allclose(out.to(torch::kFloat), refs.get("output"), 1e-5, 1e-5));
  // Parameters are constants: only the inputs and taps the host marks require grad.
  EXPECT_FALSE(model->forward(refs.get("input").to(torch::kDouble)).requires_grad());
}

TEST(TorchScriptBackend, CudaDevices) {
  if (!torch::cuda::is_available()) {
    for (const char* device : {"cuda", "cuda:1"}) {
      try {
        load_model(fixture("tiny_cnn_traced.pt"), {torch::Device(device)});
        FAIL() << device;
      } catch (const ModelError& e) {
        EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
      }
    }
    return;
  }
  const auto refs = Refs::load(kFixtures, "tiny_cnn");
  const torch::Device cuda("cuda:0");
  auto model = load_model(fixture("tiny_cnn_traced.pt"), {cuda});
  EXPECT_EQ(model->device(), cuda);
  std::vector<torch::Tensor> captured;
  const auto out = model->tapped({"conv2"})->forward(refs.get("input").to(cuda), galvani::taps::capture(captured));
  EXPECT_TRUE(torch::allclose(out.cpu(), refs.get("output"), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(captured.at(0).cpu(), refs.get(refs.key("act", "conv2", 0)), 1e-4, 1e-4));
  const auto count = static_cast<int>(torch::cuda::device_count());
  EXPECT_THROW(load_model(fixture("tiny_cnn_traced.pt"), {torch::Device(torch::kCUDA, count)}), ModelError);
}

TEST(TorchScriptBackend, OutputsMustBeOneTensor) {
  const auto path = galvani::testing::save_script_model(
      "pairs", {{"pair", "def forward(self, x):\n  return x * 2.0, x + 1.0\n"}},
      "def forward(self, x):\n  a, b = self.pair.forward(x)\n  return a, b\n");
  auto model = load_model(path);
  const auto x = torch::ones({2, 3});
  try {
    model->forward(x);
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("Tensor"), std::string::npos) << e.what();
  }
  // A submodule that returns a tuple is not a layer, and tapping it says why.
  try {
    model->tapped({"pair"});
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("not a Tensor"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("never called"), std::string::npos) << e.what();
  }
}

TEST(TorchScriptBackend, LoadErrorsNameTheFileAndTheReason) {
  const auto dir = galvani::testing::temp_dir();
  const auto garbage = dir + "/garbage.pt";
  std::ofstream(garbage) << std::string(1000, '\x17');
  const auto not_script = dir + "/state_dict.pt";
  galvani::save_tensor(torch::ones({2}), not_script);  // what torch.save writes: a zip without TorchScript code
  const std::vector<std::pair<std::string, std::string>> cases{
      {garbage, "zip"}, {not_script, "torch.save"}, {dir + "/missing.pt", "does not exist"}, {dir, "directory"}};
  for (const auto& [file, reason] : cases) {
    try {
      load_model(file);
      FAIL() << file;
    } catch (const ModelError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(file), std::string::npos) << msg;
      EXPECT_NE(msg.find(reason), std::string::npos) << msg;
    }
  }
}
