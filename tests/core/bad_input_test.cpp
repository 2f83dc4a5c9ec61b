// Bad input gets a clear error, never a crash or silent nonsense.
#include <gtest/gtest.h>

#include <fstream>

#include "test_support.h"

using galvani::testing::run_config;
using galvani::testing::run_error;
using galvani::testing::save_script_model;
using galvani::testing::save_temp_tensor;

namespace {

const std::string& linear_model() {
  static const std::string path = save_script_model(
      "lin", {{"hidden", "def forward(self, x):\n  return x * 2.0\n"}},
      "def forward(self, x):\n  return self.hidden.forward(x).sum(1, keepdim=True)\n");
  return path;
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

TEST(BadInput, TargetFilesMustHoldOneWholeClassPerInput) {
  const auto x = save_temp_tensor(torch::ones({3, 3}), "x.pt");
  const auto model = save_script_model("three", {{"hidden", "def forward(self, x):\n  return x * 2.0\n"}},
                                       "def forward(self, x):\n  return self.hidden.forward(x)\n");
  // Floats that are not whole numbers were truncated to classes.
  auto msg = run_error(config(model, x, kCond,
                              "target = \"" + save_temp_tensor(torch::tensor({0.7, 1.7, 2.7}), "t_float.pt") + "\"\n"));
  EXPECT_NE(msg.find("t_float.pt' holds values that are not whole numbers"), std::string::npos) << msg;
  // One-hot rows were flattened, and every input became class 0.
  msg = run_error(config(model, x, kCond,
                         "target = \"" + save_temp_tensor(torch::eye(3), "t_onehot.pt") + "\"\n"));
  EXPECT_NE(msg.find("t_onehot.pt' has shape [3, 3]; expected one class index per input, [N]"), std::string::npos) << msg;
  // Whole-number floats and [N, 1] columns are classes.
  const auto r = run_config(config(model, x, kCond,
                                   "target = \"" + save_temp_tensor(torch::tensor({{2.0}, {0.0}, {1.0}}), "t_col.pt") +
                                       "\"\n"));
  EXPECT_TRUE(torch::equal(r.plan.targets, torch::tensor({2, 0, 1}, torch::kLong)));
}

TEST(BadInput, EmptyInputsAreRefused) {
  const auto x = save_temp_tensor(torch::ones({0, 3}), "x_empty.pt");
  const auto msg = run_error(config(linear_model(), x, kCond));
  EXPECT_NE(msg.find("data.inputs: '" + x + "' has shape [0, 3]: no values to attribute"), std::string::npos) << msg;
}

TEST(BadInput, EvaluatorMethodsMustNameMethodsOfTheRunBeforeAnyShardRuns) {
  const auto x = save_temp_tensor(torch::ones({2, 3}), "x.pt");
  galvani::core::Timings timings;
  const auto toml = config(linear_model(), x, kCond) + "[[evaluators]]\nplugin = \"completeness\"\nmethods = [\"conductance\", \"condutance\"]\n";
  try {
    // Planning alone finds it: nothing has been computed yet.
    galvani::core::make_plan(galvani::core::parse_config_string(toml, "."), galvani::testing::plugins(), &timings);
    FAIL() << "a misspelt method in evaluators[0].methods was accepted";
  } catch (const galvani::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("evaluators[0].methods: no method named \"condutance\" in this run; its "
                                         "methods are \"conductance\""),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(timings.count("run (wall)"), 0u);
}

// Path data that cannot fit in memory is refused while planning, with the knobs that shrink it, rather than
// swapping or being killed after minutes.
TEST(BadInput, PathDataBeyondTheMemoryIsRefusedWhilePlanning) {
  const auto x = save_temp_tensor(torch::ones({200000, 3}), "x.pt");
  const auto msg = run_error(config(linear_model(), x,
                                    "[run]\nshard_size = 200000\n[[methods]]\nplugin = \"nig\"\nlayers = [\"hidden\"]\n"
                                    "steps = 100000\nrule = \"riemann_trapezoid\"\n"));
  EXPECT_NE(msg.find("of path data at once (1 shard(s) of 200000 inputs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("lower [run] shard_size or [run] threads, or the methods' steps"), std::string::npos) << msg;
  // The same work in small shards fits.
  const auto fits = run_error(config(linear_model(), save_temp_tensor(torch::ones({4, 3}), "x4.pt"),
                                     "[run]\nshard_size = 2\n[[methods]]\nplugin = \"nig\"\nlayers = [\"hidden\"]\n"
                                     "steps = 1000\nrule = \"riemann_trapezoid\"\n"));
  EXPECT_EQ(fits, "(no error)");
}
