// Feature selection by importance: on a layer that copies the input, with labels decided by two features that
// are also the largest, the top-2 units by activation are those two, and a logistic regression on them
// classifies the held-out half perfectly; two random units do worse.
#include <gtest/gtest.h>

#include <map>

#include "test_support.h"

using galvani::testing::run_config;
using galvani::testing::save_temp_tensor;

TEST(FeatureSelection, TopUnitsCarryTheLabelAndBeatRandomUnits) {
  torch::jit::Module root("__torch__.SelectCopy");
  torch::jit::Module act("__torch__.SelectCopy_act");
  act.define("def forward(self, x):\n  return torch.relu(x)\n");
  root.register_module("act", act);
  root.register_parameter("w", torch::ones({6, 2}, torch::kDouble), false);
  root.define("def forward(self, x):\n  return torch.matmul(self.act.forward(x), self.w)\n");
  const auto model = galvani::testing::temp_dir() + "/select_copy.pt";
  root.save(model);

  torch::manual_seed(3);
  const std::int64_t n = 200;
  auto x = torch::rand({n, 6}, torch::kDouble) * 0.5;
  x.narrow(1, 0, 2).copy_(torch::rand({n, 2}, torch::kDouble) + 2.0);  // features 0 and 1: large
  const auto labels = (x.select(1, 0) > x.select(1, 1)).to(torch::kLong);
  const auto r = run_config("[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" + save_temp_tensor(x, "sel_x.pt") +
                            "\"\n[[methods]]\nplugin = \"activation\"\nlayers = [\"act\"]\n"
                            "[[evaluators]]\nplugin = \"feature-selection\"\nlabels = \"" +
                            save_temp_tensor(labels, "sel_labels.pt") + "\"\nk = [2]\nrandom_trials = 10\n");
  std::map<std::string, double> m;
  for (const auto& metric : r.result.evaluations.at(0).second.metrics) m[metric.name] = metric.value;
  EXPECT_GE(m.at("accuracy@2"), 0.97);
  // 1 in 15 random pairs is {0, 1}; the others see at most one of the two deciding features.
  EXPECT_LT(m.at("random_accuracy@2"), 0.85);
}

TEST(FeatureSelection, LabelsAreRequired) {
  const std::string examples = std::string(GALVANI_SOURCE_DIR) + "/docs/examples";
  try {
    run_config("[model]\npath = \"" + examples + "/fashion_cnn.pt\"\n[data]\ninputs = \"" + examples +
               "/fashion_test.pt\"\nlimit = 4\n[[methods]]\nplugin = \"activation\"\nlayers = [\"features.1\"]\n"
               "[[evaluators]]\nplugin = \"feature-selection\"\n");
    FAIL() << "missing labels accepted";
  } catch (const galvani::Error& e) {
    EXPECT_NE(std::string(e.what()).find("labels"), std::string::npos) << e.what();
  }
}
