// PNG figures for the report, drawn with cairo: line plots of evaluator curves and heatmap grids of
// input-space attributions. Each function returns the PNG file's bytes (empty when built without cairo).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace galvani::core {

/// One line of a plot.
struct Series {
  std::string label;
  std::vector<double> x, y;
};

/// Whether this build can draw (cairo was found).
bool can_plot();

/// The report's diverging colour scale, channels in [0, 1]: white at 0, red at +1, blue at −1 (`s` clamped to
/// [−1, 1]). Heatmaps, matrices and coloured text all use it.
struct Rgb {
  double r, g, b;
};
Rgb diverging_colour(double s);

/// A line plot, 720×440 pixels: axes with ticks, one coloured line per series, a legend. Non-finite points are
/// left out (a series with none left is listed as "(no finite values)").
std::string line_plot_png(const std::string& title, const std::string& x_label, const std::string& y_label,
                          const std::vector<Series>& series);

/// A grid: the first row shows `images` ([n, C, H, W], greyscale of the channel mean, scaled to [0, 1] per
/// image), each further row one map ([n, H, W]) on a blue–white–red scale symmetric around 0, normalised per
/// cell by its largest |value|. `row_labels` names the rows after the first. Cells are `cell` pixels square.
std::string heatmap_grid_png(const torch::Tensor& images, const std::vector<torch::Tensor>& maps,
                             const std::vector<std::string>& row_labels, int cell = 84);

/// A matrix [R, C] as a heatmap on the blue–white–red scale symmetric around 0 (scaled by its largest |value|),
/// with the row and column titles, and the labels where there are few enough to read (≤ 64 rows, ≤ 48
/// columns); at most 960×640 pixels of cells.
std::string matrix_png(const std::string& title, const torch::Tensor& values, const std::string& row_title,
                       const std::string& column_title, const std::vector<std::string>& row_labels,
                       const std::vector<std::string>& column_labels);

}  // namespace galvani::core
