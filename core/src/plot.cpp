#include "plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#ifdef GALVANI_HAVE_CAIRO
#include <cairo.h>
#endif

namespace galvani::core {

Rgb diverging_colour(double s) {
  s = std::clamp(s, -1.0, 1.0);
  return {s >= 0 ? 1 : 1 + s, 1 - std::abs(s), s <= 0 ? 1 : 1 - s};
}

#ifdef GALVANI_HAVE_CAIRO
namespace {

// Distinguishable line colours (Tableau 10), cycled.
constexpr double kColours[][3] = {{0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
                                  {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50},
                                  {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81}};

cairo_status_t append(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

std::string png_bytes(cairo_surface_t* surface) {
  std::string out;
  cairo_surface_write_to_png_stream(surface, append, &out);
  return out;
}

// Tick values for [lo, hi]: steps of 1, 2 or 5 × 10^k, about five of them.
std::vector<double> ticks(double lo, double hi) {
  const double span = hi - lo;
  const double raw = span / 5;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return t;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// `s` shortened with "…" until it is at most `width` pixels wide at `size`.
std::string fit(cairo_t* cr, std::string s, double size, double width) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  if (e.x_advance <= width) return s;
  while (!s.empty()) {
    s.pop_back();
    while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();  // whole UTF-8 chars
    if (!s.empty()) s.pop_back();
    const auto t = s + "…";
    cairo_text_extents(cr, t.c_str(), &e);
    if (e.x_advance <= width) return t;
  }
  return "…";
}

void text(cairo_t* cr, double x, double y, const std::string& s, double size, double align_x = 0, double align_y = 0,
          bool bold = false) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  cairo_move_to(cr, x - align_x * e.width - e.x_bearing, y - align_y * e.height - e.y_bearing);
  cairo_show_text(cr, s.c_str());
}

}  // namespace

bool can_plot() { return true; }

std::string line_plot_png(const std::string& title, const std::string& x_label, const std::string& y_label,
                          const std::vector<Series>& series) {
  const int w = 720, h = 440;
  const double left = 70, right = 230, top = 40, bottom = 55;  // legend on the right
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);

  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series)
    for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
        y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
      }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  const double pad = (y1 - y0) * 0.05, xpad = (x1 - x0) * 0.02;  // end points and markers stay inside
  y0 -= pad, y1 += pad;
  x0 -= xpad, x1 += xpad;
  const double pw = w - left - right, ph = h - top - bottom;
  const auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  const auto py = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * ph; };

  // Grid, axes and ticks.
  cairo_set_line_width(cr, 1);
  for (double t : ticks(y0, y1)) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, left, py(t));
    cairo_line_to(cr, left + pw, py(t));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    text(cr, left - 6, py(t), number(t), 11, 1, 0.5);
  }
  for (double t : ticks(x0, x1)) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, px(t), top);
    cairo_line_to(cr, px(t), top + ph);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    text(cr, px(t), top + ph + 6, number(t), 11, 0.5, 0);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, left, top, pw, ph);
  cairo_stroke(cr);
  text(cr, left + pw / 2, 12, title, 14, 0.5, 0, true);
  text(cr, left + pw / 2, h - 20, x_label, 12, 0.5, 0);
  cairo_save(cr);
  cairo_translate(cr, 16, top + ph / 2);
  cairo_rotate(cr, -M_PI / 2);
  text(cr, 0, 0, y_label, 12, 0.5, 0);
  cairo_restore(cr);

  // Lines (clipped to the plot area) and the legend.
  const std::size_t shown = std::min<std::size_t>(series.size(), 20);
  for (std::size_t k = 0; k < series.size(); ++k) {
    const auto* c = kColours[k % 10];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_set_line_width(cr, 2);
    if (k % 20 >= 10) {
      const double dash[] = {6, 3};
      cairo_set_dash(cr, dash, 2, 0);
    } else {
      cairo_set_dash(cr, nullptr, 0, 0);
    }
    cairo_save(cr);
    cairo_rectangle(cr, left, top, pw, ph);
    cairo_clip(cr);
    const auto& s = series[k];
    const std::size_t len = std::min(s.x.size(), s.y.size());
    const auto finite = [&](std::size_t i) { return std::isfinite(s.x[i]) && std::isfinite(s.y[i]); };
    std::size_t n_finite = 0;
    for (std::size_t i = 0; i < len; ++i) {
      if (!finite(i)) continue;
      if (n_finite++ > 0 && i > 0 && finite(i - 1)) cairo_line_to(cr, px(s.x[i]), py(s.y[i]));
      else cairo_move_to(cr, px(s.x[i]), py(s.y[i]));
    }
    cairo_stroke(cr);
    // Markers where a line alone would not show the points: short series, and points with no finite neighbour
    // (a one-point curve, a point between NaNs).
    for (std::size_t i = 0; i < len; ++i) {
      if (!finite(i)) continue;
      const bool alone = (i == 0 || !finite(i - 1)) && (i + 1 >= len || !finite(i + 1));
      if (!alone && len > 25) continue;
      cairo_new_sub_path(cr);
      cairo_arc(cr, px(s.x[i]), py(s.y[i]), alone ? 3.5 : 2.5, 0, 2 * M_PI);
      cairo_fill(cr);
    }
    cairo_restore(cr);
    if (k < shown) {
      const double ly = top + 8 + 18.0 * static_cast<double>(k);
      cairo_move_to(cr, left + pw + 12, ly);
      cairo_line_to(cr, left + pw + 36, ly);
      cairo_stroke(cr);
      cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
      // The legend says when points were left out (NaN or infinite) so a gap is not read as data.
      std::string note;
      if (n_finite == 0) note = " (no finite values)";
      else if (n_finite < len) note = " (" + std::to_string(len - n_finite) + " non-finite)";
      text(cr, left + pw + 42, ly, fit(cr, s.label, 11, right - 46 - (note.empty() ? 0 : 6.5 * note.size())) + note, 11, 0, 0.5);
    }
  }
  cairo_set_dash(cr, nullptr, 0, 0);
  if (series.size() > shown) {
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text(cr, left + pw + 12, top + 8 + 18.0 * static_cast<double>(shown), "+ " + std::to_string(series.size() - shown) + " more", 11, 0, 0.5);
  }
  cairo_destroy(cr);
  auto out = png_bytes(surface);
  cairo_surface_destroy(surface);
  return out;
}

std::string heatmap_grid_png(const torch::Tensor& images, const std::vector<torch::Tensor>& maps,
                             const std::vector<std::string>& row_labels, int cell) {
  const auto n = images.size(0);
  const int label_w = 150, gap = 4;
  const int rows = 1 + static_cast<int>(maps.size());
  const int w = label_w + static_cast<int>(n) * (cell + gap), h = rows * (cell + gap) + gap;
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  const auto draw = [&](const torch::Tensor& img, int row, std::int64_t col, bool diverging) {
    const auto t = img.to(torch::kCPU, torch::kDouble).contiguous();
    if (t.numel() == 0) return;
    // Scales from the finite values only (non-finite cells are drawn black).
    const auto fin = t.isfinite();
    const auto finite_or = [&](double v) { return torch::where(fin, t, torch::full_like(t, v)); };
    const double scale = diverging ? std::max(finite_or(0).abs().max().item<double>(), 1e-30) : 1.0;
    const double lo = diverging ? 0 : finite_or(std::numeric_limits<double>::infinity()).min().item<double>();
    const double hi = diverging ? 0 : finite_or(-std::numeric_limits<double>::infinity()).max().item<double>();
    const auto hh = t.size(0), ww = t.size(1);
    const double* p = t.data_ptr<double>();
    const double cw = static_cast<double>(cell) / static_cast<double>(ww), ch = static_cast<double>(cell) / static_cast<double>(hh);
    const double ox = label_w + static_cast<double>(col) * (cell + gap), oy = gap + row * (cell + gap);
    for (std::int64_t i = 0; i < hh; ++i)
      for (std::int64_t j = 0; j < ww; ++j) {
        const double v = p[i * ww + j];
        double r, g, b;
        if (!std::isfinite(v)) {
          r = 0, g = 0, b = 0;
        } else if (diverging) {
          const auto c = diverging_colour(v / scale);  // red positive, blue negative
          r = c.r, g = c.g, b = c.b;
        } else {
          r = g = b = hi > lo ? (v - lo) / (hi - lo) : 0.5;
        }
        cairo_set_source_rgb(cr, r, g, b);
        cairo_rectangle(cr, ox + static_cast<double>(j) * cw, oy + static_cast<double>(i) * ch, cw + 0.5, ch + 0.5);
        cairo_fill(cr);
      }
    // A frame, so white (zero) attributions are told from the page.
    cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, ox - 0.5, oy - 0.5, cell + 1, cell + 1);
    cairo_stroke(cr);
  };
  // Three-channel inputs in colour, scaled to [0, 1] over the whole image (one scale keeps the hues).
  const auto draw_rgb = [&](const torch::Tensor& img, std::int64_t col) {
    auto t = img.to(torch::kCPU, torch::kDouble);
    t = torch::where(t.isfinite(), t, torch::zeros_like(t));
    if (t.numel() == 0) return;
    const double lo = t.min().item<double>(), hi = t.max().item<double>();
    t = (hi > lo ? (t - lo) / (hi - lo) : t * 0 + 0.5).contiguous();
    const auto hh = t.size(1), ww = t.size(2);
    const double* p = t.data_ptr<double>();
    const double cw = static_cast<double>(cell) / static_cast<double>(ww), ch = static_cast<double>(cell) / static_cast<double>(hh);
    const double ox = label_w + static_cast<double>(col) * (cell + gap), oy = gap;
    for (std::int64_t i = 0; i < hh; ++i)
      for (std::int64_t j = 0; j < ww; ++j) {
        cairo_set_source_rgb(cr, p[i * ww + j], p[hh * ww + i * ww + j], p[2 * hh * ww + i * ww + j]);
        cairo_rectangle(cr, ox + static_cast<double>(j) * cw, oy + static_cast<double>(i) * ch, cw + 0.5, ch + 0.5);
        cairo_fill(cr);
      }
  };
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  text(cr, 8, gap + cell / 2.0, "input", 12, 0, 0.5, true);
  for (std::int64_t k = 0; k < n; ++k) {
    auto img = images[k];
    if (img.dim() == 3 && img.size(0) == 3) draw_rgb(img, k);
    else draw(img.dim() == 3 ? img.mean(0) : img, 0, k, false);
  }
  for (std::size_t r = 0; r < maps.size(); ++r) {
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    const std::string label = fit(cr, row_labels.at(r), 12, label_w - 12);
    text(cr, 8, gap + (static_cast<double>(r) + 1) * (cell + gap) + cell / 2.0, label, 12, 0, 0.5);
    for (std::int64_t k = 0; k < n; ++k) draw(maps[r][k], static_cast<int>(r) + 1, k, true);
  }
  cairo_destroy(cr);
  auto out = png_bytes(surface);
  cairo_surface_destroy(surface);
  return out;
}

std::string matrix_png(const std::string& title, const torch::Tensor& values, const std::string& row_title,
                       const std::string& column_title, const std::vector<std::string>& row_labels,
                       const std::vector<std::string>& column_labels) {
  const auto t = values.to(torch::kCPU, torch::kDouble).contiguous();
  if (t.dim() != 2 || t.numel() == 0) return {};
  const auto rows = t.size(0), cols = t.size(1);
  const bool show_rows = rows <= 64 && static_cast<std::int64_t>(row_labels.size()) == rows;
  const bool show_cols = cols <= 48 && static_cast<std::int64_t>(column_labels.size()) == cols;
  const double cw = std::clamp(960.0 / static_cast<double>(cols), 1.0, 24.0);
  const double ch = std::clamp(640.0 / static_cast<double>(rows), 1.0, 24.0);
  const int left = show_rows ? 90 : 40, top = 40, bottom = show_cols ? 160 : 40;
  const int w = left + static_cast<int>(std::ceil(cw * static_cast<double>(cols))) + 20;
  const int h = top + static_cast<int>(std::ceil(ch * static_cast<double>(rows))) + bottom;
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, std::max(w, 360), h);
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_set_source_rgb(cr, 0, 0, 0);
  text(cr, 10, 12, fit(cr, title, 13, std::max(w, 360) - 20), 13, 0, 0, true);
  const auto fin = t.isfinite();
  const double scale = std::max(torch::where(fin, t, torch::zeros_like(t)).abs().max().item<double>(), 1e-30);
  const double* p = t.data_ptr<double>();
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) {
      const double v = p[i * cols + j];
      const auto c = std::isfinite(v) ? diverging_colour(v / scale) : Rgb{0, 0, 0};
      cairo_set_source_rgb(cr, c.r, c.g, c.b);
      cairo_rectangle(cr, left + static_cast<double>(j) * cw, top + static_cast<double>(i) * ch, cw + 0.5, ch + 0.5);
      cairo_fill(cr);
    }
  cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, left - 0.5, top - 0.5, cw * static_cast<double>(cols) + 1, ch * static_cast<double>(rows) + 1);
  cairo_stroke(cr);
  cairo_set_source_rgb(cr, 0, 0, 0);
  if (show_rows)
    for (std::int64_t i = 0; i < rows; ++i)
      text(cr, left - 4, top + (static_cast<double>(i) + 0.5) * ch, fit(cr, row_labels[i], std::min(10.0, ch), left - 8),
           std::min(10.0, ch), 1, 0.5);
  if (show_cols)
    for (std::int64_t j = 0; j < cols; ++j) {  // written downwards, one per column
      cairo_save(cr);
      cairo_translate(cr, left + (static_cast<double>(j) + 0.5) * cw, top + ch * static_cast<double>(rows) + 4);
      cairo_rotate(cr, M_PI / 2);
      text(cr, 0, 0, fit(cr, column_labels[j], std::min(10.0, cw), bottom - 8), std::min(10.0, cw), 0, 0.5);
      cairo_restore(cr);
    }
  const double caption_y = h - (show_cols ? 8 : 16);
  text(cr, left, caption_y, column_title + (show_cols ? "" : " (" + std::to_string(cols) + ")") + " across, " + row_title +
                                (show_rows ? "" : " (" + std::to_string(rows) + ")") + " down",
       11, 0, 1);
  cairo_destroy(cr);
  auto png = png_bytes(surface);
  cairo_surface_destroy(surface);
  return png;
}

#else

bool can_plot() { return false; }
std::string line_plot_png(const std::string&, const std::string&, const std::string&, const std::vector<Series>&) {
  return {};
}
std::string heatmap_grid_png(const torch::Tensor&, const std::vector<torch::Tensor>&, const std::vector<std::string>&,
                             int) {
  return {};
}

std::string matrix_png(const std::string&, const torch::Tensor&, const std::string&, const std::string&,
                       const std::vector<std::string>&, const std::vector<std::string>&) {
  return {};
}

#endif

}  // namespace galvani::core
