// The comparison report: tables with the evaluators' numbers, curves as line plots, heatmaps of input-space
// attributions, a self-contained HTML file, and the curves in summary.json.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#if __has_include(<cairo/cairo.h>)
#include <cairo/cairo.h>
#define REPORT_TEST_READS_PNG 1
#endif

#include "galvani/core/report.h"
#include "galvani/core/writer.h"
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

// The report's number format: 4 significant digits.
std::string four(double v) {
  std::ostringstream out;
  out << std::setprecision(4) << v;
  return out.str();
}

#ifdef REPORT_TEST_READS_PNG
// A PNG's pixels as 0xRRGGBB, row-major, read back with cairo.
struct Pixels {
  int width = 0, height = 0;
  std::vector<std::uint32_t> rgb;
  std::uint32_t at(int x, int y) const { return rgb[static_cast<std::size_t>(y) * width + x]; }
  std::size_t count_near(std::uint32_t colour, int tolerance) const {
    std::size_t n = 0;
    for (auto p : rgb) {
      bool near = true;
      for (int shift : {16, 8, 0})
        near = near && std::abs(static_cast<int>((p >> shift) & 255) - static_cast<int>((colour >> shift) & 255)) <= tolerance;
      n += near;
    }
    return n;
  }
};

Pixels pixels(const fs::path& file) {
  Pixels out;
  cairo_surface_t* s = cairo_image_surface_create_from_png(file.c_str());
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    cairo_surface_flush(s);
    out.width = cairo_image_surface_get_width(s), out.height = cairo_image_surface_get_height(s);
    const int stride = cairo_image_surface_get_stride(s);
    const unsigned char* data = cairo_image_surface_get_data(s);
    for (int y = 0; y < out.height; ++y)
      for (int x = 0; x < out.width; ++x)
        out.rgb.push_back(reinterpret_cast<const std::uint32_t*>(data + static_cast<std::ptrdiff_t>(y) * stride)[x] & 0xFFFFFF);
  }
  cairo_surface_destroy(s);
  return out;
}
#endif

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
  ev.metrics.push_back({"deeplift", "classifier.2", "big", 1234567.0});
  ev.metrics.push_back({"gradient-x-activation", "classifier.2", "undefined", NAN});
  galvani::Curve c{"deeplift", "classifier.2", "decay", "step", "value", {0, 1, 2, 3}, {1.0, 0.5, NAN, 0.1}};
  ev.curves.push_back(c);
  c.method = "gradient-x-activation";
  c.y = {1.0, 0.8, 0.6, 0.4};
  ev.curves.push_back(c);
  // Odd curves must not break the report: one point, and no finite value at all.
  ev.curves.push_back({"deeplift", "classifier.2", "single", "k", "v", {5}, {0.25}});
  ev.curves.push_back({"deeplift", "classifier.2", "void", "k", "v", {0, 1}, {NAN, INFINITY}});
  run.result.evaluations.emplace_back("hand", ev);

  const auto dir = galvani::testing::temp_dir() + "/out";
  galvani::core::write_results(run.plan, run.result, dir);

  // One table per evaluator: a row per method/layer, a column per metric, 4 significant digits, NaN as "–",
  // a metric a method lacks left empty.
  const auto md = read(fs::path(dir) / "report.md");
  EXPECT_NE(md.find("| method | layer | score | big | undefined |"), std::string::npos) << md;
  EXPECT_NE(md.find("| deeplift | classifier.2 | 0.1235 | 1.235e+06 |  |"), std::string::npos) << md;
  EXPECT_NE(md.find("| gradient-x-activation | classifier.2 | 2.5 |  | – |"), std::string::npos) << md;
  // Completeness (no completeness evaluator ran): mean and max |delta| of each result with a delta.
  const auto& dl = run.get("deeplift", "classifier.2");
  ASSERT_TRUE(dl.delta.defined());
  const auto d = dl.delta.to(torch::kDouble).abs();
  EXPECT_NE(md.find("| deeplift | classifier.2 | " + four(d.mean().item<double>()) + " | " +
                    four(d.max().item<double>()) + " |"),
            std::string::npos)
      << md;
  // Header and timings.
  EXPECT_NE(md.find("8 inputs of shape [1, 28, 28]"), std::string::npos) << md;
  EXPECT_NE(md.find("| method | deeplift |"), std::string::npos) << md;
  EXPECT_NE(md.find("| total | attributions: passes and methods (wall clock) | " +
                    four(run.result.timings.at("run (wall)")) + " |"),
            std::string::npos)
      << md;
  // The hand-made evaluation has no timing, so there is no evaluator row and no grand total.
  EXPECT_EQ(md.find("| evaluator |"), std::string::npos) << md;
  // The NaN in the decay curve is reported, the curve without finite values too.
  EXPECT_NE(md.find("deeplift: 1 of 4"), std::string::npos) << md;
  EXPECT_NE(md.find("deeplift: 2 of 2"), std::string::npos) << md;

  const auto html = read(fs::path(dir) / "report.html");
  EXPECT_NE(html.find(">0.1235</td>"), std::string::npos);
  EXPECT_EQ(count(html, "http"), 0u);  // self-contained: no links, scripts or style sheets
  EXPECT_EQ(count(html, "<script"), 0u);
  EXPECT_EQ(count(html, "<link"), 0u);

  // summary.json carries the curves as given (NaN as null).
  const auto summary = nlohmann::json::parse(read(fs::path(dir) / "summary.json"));
  const auto& curves = summary["evaluations"]["hand"]["curves"];
  ASSERT_EQ(curves.size(), 4u);
  EXPECT_EQ(curves[1]["method"], "gradient-x-activation");
  EXPECT_EQ(curves[1]["name"], "decay");
  EXPECT_EQ(curves[1]["x_label"], "step");
  EXPECT_EQ(curves[1]["x"].get<std::vector<double>>(), (std::vector<double>{0, 1, 2, 3}));
  EXPECT_EQ(curves[1]["y"].get<std::vector<double>>(), (std::vector<double>{1.0, 0.8, 0.6, 0.4}));
  EXPECT_EQ(curves[0]["y"][1].get<double>(), 0.5);
  EXPECT_TRUE(curves[0]["y"][2].is_null());
  EXPECT_EQ(curves[2]["x"].get<std::vector<double>>(), (std::vector<double>{5}));

  if (!galvani::core::report_has_figures()) {
    EXPECT_NE(md.find("no cairo"), std::string::npos);
    GTEST_SKIP() << "built without cairo: the report has no figures";
  }
  for (const char* f : {"hand-decay-classifier.2", "hand-single-classifier.2", "hand-void-classifier.2", "heatmaps"})
    EXPECT_NE(md.find(std::string("](plots/") + f + ".png)"), std::string::npos) << f << "\n" << md;
  // The line plots: PNGs of 720×440 pixels.
  const auto plot = read(fs::path(dir) / "plots" / "hand-decay-classifier.2.png");
  ASSERT_GT(plot.size(), 24u);
  EXPECT_EQ(plot.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png_size(plot), std::make_pair(720, 440));
  EXPECT_EQ(png_size(read(fs::path(dir) / "plots" / "hand-single-classifier.2.png")), std::make_pair(720, 440));
  // Heatmaps: 8 inputs as columns (84 px + 4 px gap after a 150 px label column), the input row and one row for
  // deeplift's input attributions.
  const auto heat = read(fs::path(dir) / "plots" / "heatmaps.png");
  EXPECT_EQ(png_size(heat), std::make_pair(150 + 8 * 88, 2 * 88 + 4));

  // All four figures embedded in the HTML.
  EXPECT_EQ(count(html, "src=\"data:image/png;base64,"), 4u);

#ifdef REPORT_TEST_READS_PNG
  // Something was drawn: the second line (gradient-x-activation, orange #ff7f0e, 2 px wide, across the whole
  // 420 px plot area) far exceeds its 24 px legend swatch; the one-point curve's marker is blue (#1f77b4).
  const auto line = pixels(fs::path(dir) / "plots" / "hand-decay-classifier.2.png");
  ASSERT_EQ(line.width, 720);
  EXPECT_GT(line.count_near(0xFF7F0E, 8), 500u);
  EXPECT_GT(pixels(fs::path(dir) / "plots" / "hand-single-classifier.2.png").count_near(0x1F77B4, 8), 60u);
  // The heatmap's cells: input 0 in greyscale (its largest pixel white, its smallest black), deeplift's input
  // attribution of input 0 pure red or blue where |value| is largest. Each of the 28×28 pixels is 3×3 screen
  // pixels; cell 0 starts at (150, 4) in the first row, (150, 92) in the second.
  const auto grid = pixels(fs::path(dir) / "plots" / "heatmaps.png");
  ASSERT_EQ(grid.width, 150 + 8 * 88);
  const auto img = run.plan.inputs[0][0];
  const auto centre = [](std::int64_t flat, int oy) {
    return std::make_pair(150 + static_cast<int>(flat % 28) * 3 + 1, oy + static_cast<int>(flat / 28) * 3 + 1);
  };
  auto [wx, wy] = centre(img.argmax().item<std::int64_t>(), 4);
  EXPECT_EQ(grid.at(wx, wy), 0xFFFFFFu);
  auto [bx, by] = centre(img.argmin().item<std::int64_t>(), 4);
  EXPECT_EQ(grid.at(bx, by), 0x000000u);
  const auto& input_attr = run.get("deeplift", "input").values[0].sum(0);
  const auto peak = input_attr.abs().argmax().item<std::int64_t>();
  auto [px, py] = centre(peak, 92);
  EXPECT_EQ(grid.at(px, py), input_attr.flatten()[peak].item<double>() > 0 ? 0xFF0000u : 0x0000FFu);
#endif
}
