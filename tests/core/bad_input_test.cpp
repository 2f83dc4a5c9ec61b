// Bad input gets a clear error, never a crash or silent nonsense.
#include <gtest/gtest.h>

#include <fstream>

#include "test_support.h"

using galvani::testing::run_config;
using galvani::testing::save_script_model;
using galvani::testing::save_temp_tensor;

namespace {

const std::string& linear_model() {
  static const std::string path = save_script_model(
      "lin", {{"hidden", "def forward(self, x):\n  return x * 2.0\n"}},
      "def forward(self, x):\n  return self.hidden.forward(x).sum(1, keepdim=True)\n");
  return path;
}

std::string run_error(const std::string& toml) {
  try {
    run_config(toml);
  } catch (const galvani::Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string config(const std::string& model, const std::string& inputs, const std::string& methods,
                   const std::string& data_extra = "") {
  return "[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" + inputs + "\"\n" + data_extra + methods;
}

const std::string kCond = "[[methods]]\nplugin = \"conductance\"\nlayers = [\"hidden\"]\nsteps = 4\n";

}  // namespace

TEST(BadInput, UnknownMethodPluginListsTheAvailableOnes) {
  const auto x = save_temp_tensor(torch::ones({2, 3}), "x.pt");
  const auto msg = run_error(config(linear_model(), x, "[[methods]]\nplugin = \"condutance\"\nlayers = [\"hidden\"]\n"));
  EXPECT_NE(msg.find("unknown method plugin 'condutance'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("conductance"), std::string::npos) << msg;
}

TEST(BadInput, UnknownLayerSuggestsCloseNames) {
  const auto x = save_temp_tensor(torch::ones({2, 3}), "x.pt");
  const auto msg = run_error(config(linear_model(), x, "[[methods]]\nplugin = \"nig\"\nlayers = [\"hiden\"]\n"));
  EXPECT_NE(msg.find("hiden"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hidden"), std::string::npos) << msg;
}

TEST(BadInput, UnknownMethodOptionNamesItsKey) {
  const auto x = save_temp_tensor(torch::ones({2, 3}), "x.pt");
  const auto msg = run_error(config(linear_model(), x, kCond + "rull = \"riemann_left\"\n"));
  EXPECT_NE(msg.find("methods[0].rull"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rule"), std::string::npos) << msg;  // the valid keys are listed
}

TEST(BadInput, InputShapeTheModelCannotTakeIsAModelError) {
  const auto x = save_temp_tensor(torch::ones({2, 3, 4, 5}), "x4.pt");
  const auto model = save_script_model("mm", {{"hidden", "def forward(self, x):\n  return torch.matmul(x, torch.ones(3, 2))\n"}},
                                       "def forward(self, x):\n  return self.hidden.forward(x)\n");
  const auto msg = run_error(config(model, x, kCond));
  EXPECT_NE(msg.find("cannot run on inputs of shape [2, 3, 4, 5]"), std::string::npos) << msg;
}

TEST(BadInput, BaselineShapeMismatch) {
  const auto x = save_temp_tensor(torch::ones({2, 3}), "x.pt");
  const auto b = save_temp_tensor(torch::ones({2, 4}), "b.pt");
  const auto msg = run_error(config(linear_model(), x, kCond, "baselines = \"" + b + "\"\n"));
  EXPECT_NE(msg.find("data.baselines"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 4]"), std::string::npos) << msg;
}

TEST(BadInput, CorruptModelFileIsAModelErrorNamingTheFile) {
  const auto x = save_temp_tensor(torch::ones({2, 3}), "x.pt");
  const auto bad = galvani::testing::temp_dir() + "/corrupt.pt";
  std::ofstream(bad) << "PK\x03\x04 definitely not a model";
  const auto msg = run_error(config(bad, x, kCond));
  EXPECT_NE(msg.find("corrupt.pt"), std::string::npos) << msg;
}

TEST(BadInput, NanOutputsAreReportedNotAveraged) {
  const auto x = save_temp_tensor(torch::ones({2, 3}), "x.pt");
  const auto model = save_script_model("nan", {{"hidden", "def forward(self, x):\n  return x * 2.0\n"}},
                                       "def forward(self, x):\n  return torch.log(self.hidden.forward(x) - 5.0).sum(1, keepdim=True)\n");
  const auto msg = run_error(config(model, x, kCond));
  EXPECT_NE(msg.find("non-finite"), std::string::npos) << msg;
}

TEST(BadInput, TargetOutOfRange) {
  const auto x = save_temp_tensor(torch::ones({2, 3}), "x.pt");
  const auto msg = run_error(config(linear_model(), x, kCond, "target = 4\n"));
  EXPECT_NE(msg.find("data.target: class 4 is out of range"), std::string::npos) << msg;
}

TEST(BadInput, NonTensorInputFile) {
  const auto bad = galvani::testing::temp_dir() + "/text.pt";
  std::ofstream(bad) << "hello";
  const auto msg = run_error(config(linear_model(), bad, kCond));
  EXPECT_NE(msg.find("text.pt"), std::string::npos) << msg;
}
