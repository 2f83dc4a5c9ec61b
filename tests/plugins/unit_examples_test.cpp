// unit-examples: top units of probe inputs, top inputs of those units, and the clustered sign map, on
// activations chosen so that every answer is known.
#include <gtest/gtest.h>

#include <variant>

#include "test_support.h"

using galvani::testing::run_config;
using galvani::testing::save_script_model;
using galvani::testing::save_temp_tensor;

namespace {

const galvani::Evaluation& evaluation(const galvani::testing::Run& r, const std::string& name) {
  for (const auto& [n, e] : r.result.evaluations)
    if (n == name) return e;
  throw std::runtime_error("no evaluation " + name);
}

double num(const galvani::Table::Cell& c) { return std::get<double>(c); }

}  // namespace

TEST(UnitExamples, TopUnitsTopInputsAndTheClusteredSignMap) {
  const auto model = save_script_model("units", {{"hidden", "def forward(self, x):\n  return x * 1.0\n"}},
                                       "def forward(self, x):\n  return self.hidden.forward(x).sum(1, keepdim=True)\n");
  // Units 0 and 2 share their signs but for input 4, as do units 1 and 3; inputs 0, 1 and 5 share theirs, and 2, 3.
  const auto x = torch::tensor({{3., -1., 1., -2.},
                                {2., -1., 2., -3.},
                                {-1., 2., -1., 1.},
                                {-2., 3., -2., 2.},
                                {1., 1., -1., -1.},
                                {4., -2., 3., -1.}});
  const auto r = run_config("[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" + save_temp_tensor(x, "ue_x.pt") +
                            "\"\n[[methods]]\nplugin = \"activation\"\nlayers = [\"hidden\"]\n"
                            "[[evaluators]]\nplugin = \"unit-examples\"\nprobes = [0, 2]\ntop_units = 2\n"
                            "top_examples = 2\n");
  const auto& ev = evaluation(r, "unit-examples");
  ASSERT_EQ(ev.tables.size(), 2u);
  const auto& top = ev.tables[0];
  EXPECT_EQ(top.name, "top-units.activation.hidden");
  EXPECT_TRUE(top.report);
  ASSERT_EQ(top.rows.size(), 4u);
  // (input, unit, value) in rank order: input 0 → units 0 (3), 2 (1); input 2 → units 1 (2), 3 (1).
  const double expected_top[4][3] = {{0, 0, 3}, {0, 2, 1}, {2, 1, 2}, {2, 3, 1}};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(num(top.rows[i][0]), expected_top[i][0]) << i;
    EXPECT_EQ(std::get<std::string>(top.rows[i][1]), "input " + std::to_string(static_cast<int>(expected_top[i][0])));
    EXPECT_EQ(num(top.rows[i][2]), i % 2 + 1) << i;
    EXPECT_EQ(num(top.rows[i][3]), expected_top[i][1]) << i;
    EXPECT_EQ(num(top.rows[i][4]), expected_top[i][2]) << i;
  }
  const auto& examples = ev.tables[1];
  ASSERT_EQ(examples.rows.size(), 8u);
  // (unit, input, value): unit 0 → inputs 5 (4), 0 (3); unit 2 → 5 (3), 1 (2); unit 1 → 3 (3), 2 (2); unit 3 → 3 (2), 2 (1).
  const double expected_examples[8][3] = {{0, 5, 4}, {0, 0, 3}, {2, 5, 3}, {2, 1, 2},
                                          {1, 3, 3}, {1, 2, 2}, {3, 3, 2}, {3, 2, 1}};
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(num(examples.rows[i][0]), expected_examples[i][0]) << i;
    EXPECT_EQ(num(examples.rows[i][2]), expected_examples[i][1]) << i;
    EXPECT_EQ(num(examples.rows[i][4]), expected_examples[i][2]) << i;
  }

  ASSERT_EQ(ev.matrices.size(), 1u);
  const auto& m = ev.matrices[0];
  ASSERT_EQ(m.values.sizes(), (std::vector<std::int64_t>{4, 6}));
  ASSERT_EQ(m.row_labels.size(), 4u);
  ASSERT_EQ(m.column_labels.size(), 6u);
  const auto position = [](const std::vector<std::string>& labels, const std::string& l) {
    return static_cast<int>(std::find(labels.begin(), labels.end(), l) - labels.begin());
  };
  EXPECT_EQ(std::abs(position(m.row_labels, "0") - position(m.row_labels, "2")), 1);
  EXPECT_EQ(std::abs(position(m.row_labels, "1") - position(m.row_labels, "3")), 1);
  EXPECT_EQ(std::abs(position(m.column_labels, "input 2") - position(m.column_labels, "input 3")), 1);
  std::vector<int> block{position(m.column_labels, "input 0"), position(m.column_labels, "input 1"),
                         position(m.column_labels, "input 5")};
  std::sort(block.begin(), block.end());
  EXPECT_EQ(block[2] - block[0], 2);  // adjacent
  // The values are the signs, permuted: the entry at (unit u, input i) is sign(x[i][u]).
  for (int row = 0; row < 4; ++row)
    for (int col = 0; col < 6; ++col) {
      const int u = std::stoi(m.row_labels[row]), i = std::stoi(m.column_labels[col].substr(6));
      EXPECT_EQ(m.values[row][col].item<double>(), x[i][u].sign().item<double>()) << row << "," << col;
    }
  bool both_found = false;
  for (const auto& metric : ev.metrics)
    if (metric.name == "units of both signs") {
      both_found = true;
      EXPECT_EQ(metric.value, 1.0);
    }
  EXPECT_TRUE(both_found);
}

TEST(UnitExamples, ProbesOutsideTheRunAreConfigErrors) {
  const auto model = save_script_model("units2", {{"hidden", "def forward(self, x):\n  return x * 1.0\n"}},
                                       "def forward(self, x):\n  return self.hidden.forward(x).sum(1, keepdim=True)\n");
  try {
    run_config("[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" +
               save_temp_tensor(torch::randn({3, 4}), "ue_y.pt") +
               "\"\n[[methods]]\nplugin = \"activation\"\nlayers = [\"hidden\"]\n"
               "[[evaluators]]\nplugin = \"unit-examples\"\nprobes = [3]\n");
    ADD_FAILURE() << "no error";
  } catch (const galvani::Error& e) {
    EXPECT_NE(std::string(e.what()).find("probes holds input 3, but the run has 3 inputs (0 to 2)"), std::string::npos)
        << e.what();
  }
}
