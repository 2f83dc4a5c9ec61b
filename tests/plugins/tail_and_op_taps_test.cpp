// The TorchScript backend's graph cuts (Model::tail) and op taps (Model::operations, Model::op_tapped).
#include <gtest/gtest.h>

#include <algorithm>

#include "galvani/tap.h"
#include "galvani/tensor_io.h"
#include "test_support.h"

using galvani::testing::fixture;
using galvani::testing::large_fixture;
using galvani::testing::load_model;
using galvani::testing::save_script_model;

namespace {

const std::string kExamples = std::string(GALVANI_SOURCE_DIR) + "/docs/examples";

// The layer's activation on `x`, from a capturing forward.
torch::Tensor activation(const galvani::Model& model, const std::string& layer, const torch::Tensor& x) {
  std::vector<torch::Tensor> cap;
  torch::NoGradGuard ng;
  model.tapped({layer})->forward(x, galvani::taps::capture(cap));
  return cap.at(0);
}

// The tail run on the layer's own activation reproduces the forward; on a changed activation it matches a
// full forward with the layer replaced.
void check_tail(const galvani::Model& model, const std::string& layer, const torch::Tensor& x, bool expect_clean) {
  SCOPED_TRACE(layer);
  torch::NoGradGuard ng;
  const auto tail = model.tail(layer);
  EXPECT_EQ(tail->needs_input(), !expect_clean) << tail->cut_note();
  EXPECT_EQ(tail->cut_note().empty(), expect_clean);
  const auto a = activation(model, layer, x);
  const auto full = model.forward(x);
  EXPECT_TRUE(torch::allclose(tail->forward(a, x), full, 1e-10, 1e-10));
  const auto changed = a * 0.5 + 0.25;
  std::vector<torch::Tensor> replacement{changed};
  const auto expected = model.tapped({layer})->forward(x, galvani::taps::replace(replacement));
  const auto got = tail->forward(changed, x);
  EXPECT_TRUE(torch::allclose(got, expected, 1e-10, 1e-10));
  EXPECT_FALSE(torch::allclose(got, full, 1e-6, 1e-6));
}

}  // namespace

TEST(Tail, CleanCutsOfASequentialCnn) {
  auto model = load_model(kExamples + "/fashion_cnn.pt", {torch::kCPU, torch::kDouble});
  const auto x = galvani::load_tensor(kExamples + "/fashion_test.pt").narrow(0, 0, 4).to(torch::kDouble);
  for (const std::string layer : {"features.0", "features.4", "classifier.2"}) check_tail(*model, layer, x, true);
  // A clean tail ignores the input: the coalition batch needs no copies of it.
  torch::NoGradGuard ng;
  const auto a = activation(*model, "classifier.2", x);
  EXPECT_TRUE(torch::allclose(model->tail("classifier.2")->forward(a, {}), model->forward(x), 1e-10, 1e-10));
}

TEST(Tail, SkipConnectionAroundTheLayerNeedsTheInput) {
  GALVANI_SKIP_WITHOUT_LARGE_FIXTURES();
  for (const std::string kind : {"traced", "scripted"}) {
    SCOPED_TRACE(kind);
    auto model = load_model(large_fixture("resnet18_" + kind + ".pt"), {torch::kCPU, torch::kDouble});
    torch::manual_seed(0);
    const auto x = torch::rand({2, 3, 64, 64}, torch::kDouble);
    check_tail(*model, "layer1", x, true);
    // Inside a residual block the identity branch still comes from the input.
    check_tail(*model, "layer1.0.conv2", x, false);
  }
}

TEST(Tail, BatchOfActivationsPerInput) {
  // One input, several replacements: the tail runs them as one batch.
  auto model = load_model(kExamples + "/fashion_cnn.pt", {torch::kCPU, torch::kDouble});
  const auto x = galvani::load_tensor(kExamples + "/fashion_test.pt").narrow(0, 0, 1).to(torch::kDouble);
  torch::NoGradGuard ng;
  const auto a = activation(*model, "classifier.2", x);
  const auto masks = torch::tensor({0.0, 1.0, 0.5}, torch::kDouble).view({3, 1});
  const auto batch = a * masks;
  const auto out = model->tail("classifier.2")->forward(batch, {});
  ASSERT_EQ(out.size(0), 3);
  EXPECT_TRUE(torch::allclose(out[1], model->forward(x)[0], 1e-10, 1e-10));
}

TEST(OpTaps, ListsInputDependentOpsWithProducersAndConstants) {
  const auto path = save_script_model(
      "ops", {{"act", "def forward(self, x):\n  return torch.relu_(x)\n"}},
      "def forward(self, x):\n"
      "  w = torch.ones([3, 2]).double()\n"
      "  h = torch.linear(x, w)\n"
      "  h = self.act.forward(h)\n"
      "  p = torch.max_pool1d(h.unsqueeze(1), 3, 1)\n"
      "  return torch.sigmoid(p.flatten(1)) + h.sum(1, keepdim=True)\n");
  auto model = load_model(path, {torch::kCPU, torch::kDouble});
  const auto ops = model->operations();
  std::vector<std::string> kinds;
  for (const auto& o : ops) kinds.push_back(o.op);
  const std::vector<std::string> expected{"aten::linear",  "aten::relu",   "aten::unsqueeze", "aten::max_pool1d",
                                          "aten::flatten", "aten::sigmoid", "aten::sum",       "aten::add"};
  EXPECT_EQ(kinds, expected);
  // linear(x, w, None): x from the input, w a constant, None.
  EXPECT_EQ(ops[0].producers, (std::vector<std::int64_t>{-1, -2, -2}));
  EXPECT_EQ(ops[1].producers, (std::vector<std::int64_t>{0}));  // relu_ listed out of place, reads linear
  EXPECT_EQ(ops[1].location, "act");
  EXPECT_EQ(ops[0].location, "");
  // max_pool1d(self, kernel_size, stride, padding, dilation, ceil_mode): the constants are there.
  EXPECT_EQ(ops[3].args.at(1).toIntVector(), std::vector<std::int64_t>{3});
  EXPECT_EQ(ops[3].args.at(2).toIntVector(), std::vector<std::int64_t>{1});
  EXPECT_FALSE(ops[3].dynamic_args);
  // The sum reads the relu's result (the in-place op's argument after it ran).
  EXPECT_EQ(ops[6].producers, (std::vector<std::int64_t>{1}));
  EXPECT_EQ(ops[7].producers, (std::vector<std::int64_t>{5, 6}));
}

TEST(OpTaps, SeeRealArgumentsAndReplaceOutputs) {
  const auto path = save_script_model(
      "ops2", {{"act", "def forward(self, x):\n  return torch.relu_(x)\n"}},
      "def forward(self, x):\n"
      "  h = self.act.forward(x - 1.0)\n"
      "  return h * 2.0 + x\n");
  auto model = load_model(path, {torch::kCPU, torch::kDouble});
  const auto ops = model->operations();
  std::size_t relu = ops.size();
  for (std::size_t i = 0; i < ops.size(); ++i)
    if (ops[i].op == "aten::relu") relu = i;
  ASSERT_LT(relu, ops.size());
  const auto x = torch::tensor({{0.5, 3.0}}, torch::kDouble);
  torch::Tensor seen_in, seen_out;
  const auto fwd = model->op_tapped({"act"}, {relu});
  std::vector<torch::Tensor> layer;
  // Identity taps leave the output as it was.
  auto out = fwd->forward(x, galvani::taps::capture(layer), [&](std::size_t site, const torch::Tensor& y,
                                                                 const std::vector<torch::Tensor>& args) {
    EXPECT_EQ(site, relu);
    seen_in = args.at(0).clone();
    seen_out = y.clone();
    return y * 1;
  });
  EXPECT_TRUE(torch::allclose(out, model->forward(x)));
  // The op's input before the in-place relu modified it.
  EXPECT_TRUE(torch::equal(seen_in, torch::tensor({{-0.5, 2.0}}, torch::kDouble)));
  EXPECT_TRUE(torch::equal(seen_out, torch::tensor({{0.0, 2.0}}, torch::kDouble)));
  EXPECT_TRUE(torch::equal(layer.at(0), seen_out));
  // Replacing the output: relu → identity gives 2(x − 1) + x.
  out = fwd->forward(x, galvani::taps::capture(layer),
                     [&](std::size_t, const torch::Tensor&, const std::vector<torch::Tensor>& args) { return args[0] * 1; });
  EXPECT_TRUE(torch::allclose(out, 3 * x - 2));
}

TEST(OpTaps, UnknownSiteIsAnError) {
  auto model = load_model(fixture("tiny_cnn_traced.pt"));
  const auto n = model->operations().size();
  EXPECT_THROW(model->op_tapped({}, {n}), galvani::ModelError);
}

// Scripted models call free functions (F.relu, F.batch_norm, F.max_pool2d): their ops are listed too, each
// call of a reused ReLU module once per call.
TEST(OpTaps, Resnet18ListsTheSameOpsTracedAndScripted) {
  GALVANI_SKIP_WITHOUT_LARGE_FIXTURES();
  for (const std::string kind : {"traced", "scripted"}) {
    SCOPED_TRACE(kind);
    auto model = load_model(large_fixture("resnet18_" + kind + ".pt"));
    std::map<std::string, int> counts;
    for (const auto& o : model->operations()) ++counts[o.op];
    EXPECT_EQ(counts["aten::relu"], 17);
    EXPECT_EQ(counts["aten::max_pool2d"], 1);
    EXPECT_EQ(counts["aten::batch_norm"], 20);
    EXPECT_EQ(counts["aten::add"], 8);
  }
}
