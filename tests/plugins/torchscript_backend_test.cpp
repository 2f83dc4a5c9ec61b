// The TorchScript backend against PyTorch forward hooks (references made by tests/fixtures/make_fixtures.py):
// captured activations, gradients through them, replacement, several layers at once, forward-mode AD,
// concurrency, and the errors for layers that cannot be tapped.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/forward_grad.h>

#include <fstream>
#include <regex>
#include <thread>

#include "galvani/tap.h"
#include "test_support.h"

using galvani::ModelError;
using galvani::testing::fixture;
using galvani::testing::large_fixture;
using galvani::testing::load_model;

namespace {

struct Refs {
  torch::jit::Module module;
  torch::Tensor get(const std::string& name) const { return module.attr(name).toTensor(); }
  bool has(const std::string& name) const { return module.hasattr(name); }
};

std::string ref_key(const std::string& kind, const std::string& layer, int k) {
  return kind + "__" + std::regex_replace(layer, std::regex("\\."), "_o_") + "__" + std::to_string(k);
}

// Checks every call of every layer: activation, gradient of out[:, 1].sum(), output after 0.5 × replacement.
void check_against_hooks(const std::string& model_file, const std::string& refs_file,
                         const std::vector<std::string>& layers) {
  SCOPED_TRACE(model_file);
  const Refs refs{torch::jit::load(refs_file)};
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
      if (!refs.has(ref_key("act", layer, k))) {
        // The hook never fired (a branch not taken): tapping that layer must say so.
        EXPECT_THROW(tapped->forward(x, [](std::size_t, const torch::Tensor& y) { return y.clone(); }), ModelError);
        continue;
      }
      std::vector<torch::Tensor> captured;
      const auto out = tapped->forward(x.clone().requires_grad_(true), galvani::taps::capture(captured));
      EXPECT_TRUE(torch::allclose(out, refs.get("output"), 1e-5, 1e-5));
      EXPECT_TRUE(torch::allclose(captured.at(0), refs.get(ref_key("act", layer, k)), 1e-5, 1e-5));
      const auto g = torch::autograd::grad({out.select(1, 1).sum()}, {captured[0]})[0];
      EXPECT_TRUE(torch::allclose(g, refs.get(ref_key("grad", layer, k)), 1e-5, 1e-5));
      torch::NoGradGuard no_grad;
      const auto replaced = tapped->forward(x, [](std::size_t, const torch::Tensor& y) { return y * 0.5; });
      EXPECT_TRUE(torch::allclose(replaced, refs.get(ref_key("replace", layer, k)), 1e-5, 1e-5));
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

}  // namespace

TEST(TorchScriptBackend, ReusedReluTracedAndScripted) {
  for (const char* kind : {"traced", "scripted"})
    check_against_hooks(fixture(std::string("reuse_relu_") + kind + ".pt"), fixture("reuse_relu_refs.pt"),
                        {"fc1", "relu", "fc2"});
}

TEST(TorchScriptBackend, InPlaceOpsAfterTheTap) {
  for (const char* kind : {"traced", "scripted"}) {
    check_against_hooks(fixture(std::string("inplace_seq_") + kind + ".pt"), fixture("inplace_seq_refs.pt"),
                        {"0", "1", "2"});
    check_against_hooks(fixture(std::string("inplace_after_") + kind + ".pt"), fixture("inplace_after_refs.pt"),
                        {"lin"});
  }
}

TEST(TorchScriptBackend, ScriptedControlFlow) {
  check_against_hooks(fixture("ctrl_flow_scripted.pt"), fixture("ctrl_flow_refs.pt"), {"blocks.0", "blocks.2", "pos"});
}

TEST(TorchScriptBackend, TinyCnn) {
  for (const char* kind : {"traced", "scripted"})
    check_against_hooks(fixture(std::string("tiny_cnn_") + kind + ".pt"), fixture("tiny_cnn_refs.pt"),
                        {"conv1", "relu1", "conv2", "fc"});
}

TEST(TorchScriptBackend, Resnet18TracedAndScripted) {
  if (large_fixture("resnet18_refs.pt").empty()) GTEST_SKIP() << "resnet18 fixtures were not generated (python3-torchvision missing)";
  for (const char* kind : {"traced", "scripted"})
    check_against_hooks(large_fixture(std::string("resnet18_") + kind + ".pt"), large_fixture("resnet18_refs.pt"),
                        {"layer1", "layer1.0.conv2", "layer3.0.downsample", "fc", "relu", "layer1.0.relu"});
}

TEST(TorchScriptBackend, Resnet18SeveralLayersInOnePass) {
  if (large_fixture("resnet18_refs.pt").empty()) GTEST_SKIP() << "resnet18 fixtures were not generated";
  const Refs refs{torch::jit::load(large_fixture("resnet18_refs.pt"))};
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
      EXPECT_TRUE(torch::allclose(captured[i], refs.get(ref_key("act", keys[i].first, keys[i].second)), 1e-5, 1e-5))
          << names[i];
      EXPECT_TRUE(torch::allclose(grads[i], refs.get(ref_key("grad", keys[i].first, keys[i].second)), 1e-4, 1e-5))
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
  const Refs refs{torch::jit::load(fixture("tiny_cnn_refs.pt"))};
  auto model = load_model(fixture("tiny_cnn_traced.pt"));
  auto tapped = model->tapped({"conv2"});
  std::vector<torch::Tensor> leaves;
  const auto out = tapped->forward(refs.get("input"), galvani::taps::leaf(leaves));
  ASSERT_TRUE(leaves.at(0).is_leaf());
  const auto g = torch::autograd::grad({out.select(1, 1).sum()}, {leaves[0]})[0];
  EXPECT_TRUE(torch::allclose(g, refs.get(ref_key("grad", "conv2", 0)), 1e-5, 1e-5));
}

TEST(TorchScriptBackend, ForwardModeTangentsMatchFiniteDifferences) {
  auto model = load_model(fixture("tiny_cnn_scripted.pt"), {torch::kCPU, torch::kDouble});
  auto tapped = model->tapped({"conv2", "fc"});
  torch::manual_seed(5);
  const auto x = torch::rand({2, 1, 8, 8}, torch::kDouble);
  const auto v = torch::randn({2, 1, 8, 8}, torch::kDouble);
  const auto level = static_cast<int64_t>(torch::autograd::ForwardADLevel::get_next_idx());
  std::vector<torch::Tensor> tangents(2);
  tapped->forward(at::_make_dual(x, v, level), [&](std::size_t i, const torch::Tensor& y) {
    tangents[i] = std::get<1>(at::_unpack_dual(y, level)).clone();
    return y.clone();
  });
  torch::autograd::ForwardADLevel::release_idx(static_cast<uint64_t>(level));
  const double eps = 1e-6;
  std::vector<torch::Tensor> plus, minus;
  tapped->forward(x + eps * v, galvani::taps::capture(plus));
  tapped->forward(x - eps * v, galvani::taps::capture(minus));
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(tangents[i].defined());
    EXPECT_TRUE(torch::allclose(tangents[i], (plus[i] - minus[i]) / (2 * eps), 1e-6, 1e-6)) << i;
  }
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

TEST(TorchScriptBackend, CorruptOrMissingFiles) {
  const auto bad = galvani::testing::temp_dir() + "/garbage.pt";
  std::ofstream(bad) << std::string(1000, '\x17');
  EXPECT_THROW(load_model(bad), ModelError);
  EXPECT_THROW(load_model("/nonexistent/model.pt"), ModelError);
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
