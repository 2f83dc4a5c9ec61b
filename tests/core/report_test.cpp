// The comparison report: tables with the evaluators' numbers, curves as line plots, heatmaps of input-space
// attributions, a self-contained HTML file, and the curves in summary.json.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "galvani/tensor_io.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Width and height from a PNG's IHDR chunk (big-endian at bytes 16 and 20).
std::pair<int, int> png_size(const std::string& png) {
  const auto be = [&](std::size_t at) {
    return (static_cast<unsigned char>(png[at]) << 24) | (static_cast<unsigned char>(png[at + 1]) << 16) |
           (static_cast<unsigned char>(png[at + 2]) << 8) | static_cast<unsigned char>(png[at + 3]);
  };
  return {be(16), be(20)};
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST(Report, TablesFiguresAndSummaryCurves) {
  const std::string examples = std::string(GALVANI_SOURCE_DIR) + "/docs/examples";
  auto run = galvani::testing::run_config(
      "[model]\npath = \"" + examples + "/fashion_cnn.pt\"\n[data]\ninputs = \"" + examples +
      "/fashion_test.pt\"\nlimit = 8\n"
      "[[methods]]\nplugin = \"deeplift\"\nlayers = [\"classifier.2\"]\ninput = true\n"
      "[[methods]]\nplugin = \"gradient-x-activation\"\nlayers = [\"classifier.2\"]\n");
  // A hand-made evaluation, so the report is checked independently of the evaluator plugins.
  galvani::Evaluation ev;
  ev.metrics.push_back({"deeplift", "classifier.2", "score", 0.123456789});
  ev.metrics.push_back({"gradient-x-activation", "classifier.2", "score", 2.5});
  galvani::Curve c{"deeplift", "classifier.2", "decay", "step", "value", {0, 1, 2, 3}, {1.0, 0.5, NAN, 0.1}};
  ev.curves.push_back(c);
  c.method = "gradient-x-activation";
  c.y = {1.0, 0.8, 0.6, 0.4};
  ev.curves.push_back(c);
  run.result.evaluations.emplace_back("hand", ev);

  const auto dir = galvani::testing::temp_dir() + "/out";
  galvani::core::write_results(run.plan, run.result, dir);

  const auto md = read(fs::path(dir) / "report.md");
  EXPECT_NE(md.find("| deeplift | classifier.2 | 0.1235 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| gradient-x-activation | classifier.2 | 2.5 |"), std::string::npos) << md;
  const auto html = read(fs::path(dir) / "report.html");
  EXPECT_NE(html.find("<td>0.1235</td>"), std::string::npos);
  EXPECT_EQ(count(html, "http"), 0u);  // self-contained

  // summary.json carries the curves as given (NaN as null).
  const auto summary = nlohmann::json::parse(read(fs::path(dir) / "summary.json"));
  const auto& curves = summary["evaluations"]["hand"]["curves"];
  ASSERT_EQ(curves.size(), 2u);
  EXPECT_EQ(curves[1]["y"].get<std::vector<double>>(), (std::vector<double>{1.0, 0.8, 0.6, 0.4}));
  EXPECT_TRUE(curves[0]["y"][2].is_null());

  if (!galvani::core::report_has_figures()) {
    EXPECT_NE(md.find("no cairo"), std::string::npos);
    GTEST_SKIP() << "built without cairo: the report has no figures";
  }
  EXPECT_NE(md.find("](plots/hand-decay-classifier.2.png)"), std::string::npos) << md;
  EXPECT_NE(md.find("](plots/heatmaps.png)"), std::string::npos) << md;
  // The line plot: a PNG of 720×440 pixels.
  const auto plot = read(fs::path(dir) / "plots" / "hand-decay-classifier.2.png");
  ASSERT_GT(plot.size(), 8u);
  EXPECT_EQ(plot.substr(1, 3), "PNG");
  EXPECT_EQ(png_size(plot), std::make_pair(720, 440));
  // Heatmaps: 8 inputs as columns (84 px + 4 px gap after a 150 px label column), the input row and one row for
  // deeplift's input attributions.
  const auto heat = read(fs::path(dir) / "plots" / "heatmaps.png");
  EXPECT_EQ(png_size(heat), std::make_pair(150 + 8 * 88, 2 * 88 + 4));

  // Both figures embedded in the HTML.
  EXPECT_EQ(count(html, "src=\"data:image/png;base64,"), 2u);
}
