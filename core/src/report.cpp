// The comparison report: report.md (figures as files under plots/) and a self-contained report.html (figures
// embedded), from a run's results and evaluations. Every file is written atomically.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>
#include <variant>

#include "galvani/core/inputs.h"
#include "galvani/core/report.h"
#include "galvani/tensor_io.h"
#include "plot.h"

namespace fs = std::filesystem;

namespace galvani::core {
namespace {

std::string fmt(double v) {
  if (std::isnan(v)) return "–";
  std::ostringstream out;
  out << std::setprecision(4) << v;
  return out.str();
}

std::string base64(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    std::uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string file_name(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') c = '_';
  return s;
}

// A document written twice: markdown and HTML.
class Doc {
 public:
  void heading(const std::string& text, int level) {
    md_ << std::string(static_cast<std::size_t>(level), '#') << " " << text << "\n\n";
    html_ << "<h" << level << ">" << html_escape(text) << "</h" << level << ">\n";
  }
  void paragraph(const std::string& text) {
    md_ << text << "\n\n";
    html_ << "<p>" << html_escape(text) << "</p>\n";
  }
  /// A table whose first `text_columns` columns are text (left-aligned), the rest numbers (right-aligned).
  void table(const std::vector<std::string>& columns, const std::vector<std::vector<std::string>>& rows,
             std::size_t text_columns = 2) {
    std::vector<bool> text(columns.size());
    for (std::size_t i = 0; i < columns.size(); ++i) text[i] = i < text_columns;
    table(columns, rows, text);
  }
  /// A table whose columns flagged in `text` are text (left-aligned), the others numbers (right-aligned).
  void table(const std::vector<std::string>& columns, const std::vector<std::vector<std::string>>& rows,
             const std::vector<bool>& text) {
    const auto is_text = [&](std::size_t i) { return i < text.size() && text[i]; };
    md_ << "|";
    for (const auto& c : columns) md_ << " " << md_cell(c) << " |";
    md_ << "\n|";
    for (std::size_t i = 0; i < columns.size(); ++i) md_ << (is_text(i) ? "---|" : "---:|");
    md_ << "\n";
    html_ << "<table><tr>";
    for (std::size_t i = 0; i < columns.size(); ++i)
      html_ << "<th" << (is_text(i) ? " class=\"t\"" : "") << ">" << html_escape(columns[i]) << "</th>";
    html_ << "</tr>\n";
    for (const auto& r : rows) {
      md_ << "|";
      html_ << "<tr>";
      for (std::size_t i = 0; i < r.size(); ++i) {
        md_ << " " << md_cell(r[i]) << " |";
        html_ << "<td" << (is_text(i) ? " class=\"t\"" : "") << ">" << html_escape(r[i]) << "</td>";
      }
      md_ << "\n";
      html_ << "</tr>\n";
    }
    md_ << "\n";
    html_ << "</table>\n";
  }
  void figure(const std::string& png, const std::string& relative_file, const std::string& caption) {
    md_ << "![" << caption << "](" << relative_file << ")\n\n";
    html_ << "<figure><img alt=\"" << html_escape(caption) << "\" src=\"data:image/png;base64," << base64(png)
          << "\"><figcaption>" << html_escape(caption) << "</figcaption></figure>\n";
  }
  /// Tokens with a background colour each: red for positive values, blue for negative, white for 0, scaled by
  /// `scale` (the largest |value| shown). Markdown gets the tokens with their values.
  void coloured_text(const std::string& label, const std::vector<std::string>& tokens, const std::vector<double>& values,
                     double scale) {
    md_ << "- " << label << ": ";
    html_ << "<p class=\"tok\"><span class=\"lab\">" << html_escape(label) << "</span> ";
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const auto c = diverging_colour(scale > 0 ? values[i] / scale : 0.0);
      const int r = static_cast<int>(255 * c.r), g = static_cast<int>(255 * c.g), b = static_cast<int>(255 * c.b);
      char value[32];
      std::snprintf(value, sizeof value, "%+.3g", values[i]);
      md_ << (i ? " " : "") << md_cell(tokens[i]) << "(" << value << ")";
      html_ << "<span style=\"background:rgb(" << r << "," << g << "," << b << ")\" title=\"" << value << "\">"
            << html_escape(tokens[i]) << "</span> ";
    }
    md_ << "\n";
    html_ << "</p>\n";
  }
  void end_list() { md_ << "\n"; }
  // A '|' would end a markdown cell early.
  static std::string md_cell(const std::string& s) {
    std::string out;
    for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
    return out;
  }
  std::string markdown() const { return md_.str(); }
  std::string html(const std::string& title) const {
    return "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html_escape(title) +
           "</title>\n<style>body{font-family:'DejaVu Sans',sans-serif;margin:2em;max-width:1200px}"
           "table{border-collapse:collapse;margin-bottom:1.5em;font-size:13px}"
           "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}.t{text-align:left}"
           "th{background:#f3f3f3}figure{margin:1em 0}img{max-width:100%}"
           ".tok{font-family:'DejaVu Sans Mono',monospace;margin:0.3em 0}.tok span{padding:1px 2px}"
           ".tok .lab{color:#666;display:inline-block;min-width:16em}</style></head><body>\n" +
           html_.str() + "</body></html>\n";
  }

 private:
  std::ostringstream md_, html_;
};

// Image-shaped input attributions ([N, C, H, W] or [N, H, W] with 4-d inputs) as [N, H, W], channels summed.
torch::Tensor image_map(const MethodResult& r, const torch::Tensor& inputs) {
  if (r.space != Space::Input || inputs.dim() != 4) return {};
  const auto& v = r.values;
  if (v.dim() == 4 && v.sizes() == inputs.sizes()) return v.sum(1);
  if (v.dim() == 3 && v.size(1) == inputs.size(2) && v.size(2) == inputs.size(3)) return v;
  if (v.dim() == 4 && v.size(1) == 1 && v.size(2) == inputs.size(2) && v.size(3) == inputs.size(3)) return v.select(1, 0);
  return {};
}

}  // namespace

bool report_has_figures() { return can_plot(); }

// An evaluator's tables marked for the report, and its matrices as heatmaps.
template <typename SavePng>
void write_evaluator_extras(Doc& doc, const SavePng& save_png, const std::string& name, const Evaluation& ev) {
  for (const auto& t : ev.tables) {
    if (!t.report) continue;
    std::vector<std::vector<std::string>> rows;
    std::vector<bool> text(t.columns.size(), false);  // a column with any text cell is left-aligned
    for (const auto& row : t.rows) {
      for (std::size_t i = 0; i < row.size() && i < text.size(); ++i)
        if (std::holds_alternative<std::string>(row[i])) text[i] = true;
      std::vector<std::string> cells;
      for (const auto& c : row)
        cells.push_back(std::holds_alternative<std::string>(c) ? std::get<std::string>(c) : fmt(std::get<double>(c)));
      rows.push_back(std::move(cells));
    }
    doc.paragraph(name + ": " + t.name);
    doc.table(t.columns, rows, text);
  }
  for (const auto& m : ev.matrices) {
    const std::string title = name + ": " + m.name + (m.layer.empty() ? "" : " at " + m.layer) +
                              (m.method.empty() ? "" : " (" + m.method + ")");
    save_png(matrix_png(title, m.values.detach().cpu(), m.row_title, m.column_title, m.row_labels, m.column_labels),
             name + "-" + m.name + "-" + m.layer + "-" + m.method, title);
  }
}

// Input-space attributions per token ("tokens" extras of runs with a path layer), as coloured text.
void write_token_text(Doc& doc, const Plan& plan, const RunResult& result, std::int64_t count) {
  if (plan.vocabulary.empty() || !plan.original_inputs.defined()) return;
  const auto ids = plan.original_inputs.to(torch::kCPU, torch::kLong).reshape({plan.original_inputs.size(0), -1});
  const auto lengths = unpadded_lengths(ids, padding_token(plan.config.data.baselines));
  bool any = false;
  for (const auto& r : result.results) {
    const auto it = r.extras.find("tokens");
    if (it == r.extras.end()) continue;
    const auto tokens = it->second.detach().to(torch::kCPU, torch::kDouble).reshape({it->second.size(0), -1});
    const auto n = std::min<std::int64_t>(count, tokens.size(0));
    if (n <= 0 || tokens.size(1) != ids.size(1)) continue;
    if (!any) {
      doc.heading("Token attributions", 2);
      doc.paragraph("Input-space attributions summed over the embedding dimension, per token of the first " +
                    std::to_string(n) + " inputs; red positive, blue negative, each sentence scaled by its largest "
                    "|value| (hover for the value). Trailing padding is left out.");
      any = true;
    }
    doc.paragraph(r.method + (r.layer == "input" ? "" : " at " + r.layer) + ":");
    for (std::int64_t i = 0; i < n; ++i) {
      const auto shown = std::max<std::int64_t>(1, lengths[i]);  // trailing padding left out
      std::vector<std::string> words;
      std::vector<double> values;
      for (std::int64_t j = 0; j < shown; ++j) {
        const auto id = ids[i][j].item<std::int64_t>();
        words.push_back(plan.vocabulary.at(static_cast<std::size_t>(id)));
        values.push_back(tokens[i][j].item<double>());
      }
      double scale = 0;
      for (double v : values) scale = std::max(scale, std::abs(v));
      const auto target = plan.targets.defined() && i < plan.targets.size(0) ? plan.targets[i].item<std::int64_t>() : -1;
      doc.coloured_text("input " + std::to_string(i) + (target >= 0 ? " (target " + std::to_string(target) + ")" : ""),
                        words, values, scale);
    }
    doc.end_list();
  }
}

void write_report(const Plan& plan, const RunResult& result, const std::string& dir, int heatmap_inputs) {
  Doc doc;
  std::error_code ec;
  const fs::path plots = fs::path(dir) / "plots";
  create_folders(plots.string());
  for (const auto& e : fs::directory_iterator(plots, ec))  // figures of an earlier run into the same folder
    if (e.path().extension() == ".png") fs::remove(e.path(), ec);
  const auto save_png = [&](const std::string& png, const std::string& name, const std::string& caption) {
    if (png.empty()) return;
    const auto file = plots / (file_name(name) + ".png");
    write_file_atomic(file.string(), png);
    doc.figure(png, "plots/" + file.filename().string(), caption);
  };

  doc.heading("Galvani comparison", 1);
  const std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::ostringstream header;
  header << "Model " << plan.config.model.path << " on " << plan.model->device() << "; " << plan.inputs.size(0)
         << " inputs of shape " << shape_string(plan.inputs.sizes().slice(1)) << "; baselines "
         << plan.config.data.baselines.describe() << "; target " << plan.config.data.target.describe() << "; F = "
         << to_string(plan.objective.mode) << "; written " << date << ".";
  doc.paragraph(header.str());
  if (!can_plot()) doc.paragraph("This build has no cairo, so the report has no figures (summary.json has every number).");

  // Completeness of each result that has one.
  std::vector<std::vector<std::string>> deltas;
  for (const auto& r : result.results)
    if (r.delta.defined()) {
      const auto d = r.delta.detach().to(torch::kDouble).abs().cpu();
      deltas.push_back({r.method, r.layer, fmt(d.mean().item<double>()), fmt(d.max().item<double>())});
    }
  const bool completeness_evaluated = std::any_of(result.evaluations.begin(), result.evaluations.end(),
                                                  [](const auto& e) { return e.first == "completeness"; });
  if (!deltas.empty() && !completeness_evaluated) {
    doc.heading("Completeness delta (Σ attributions − (F(x) − F(x′)))", 2);
    doc.table({"method", "layer", "mean abs delta", "max abs delta"}, deltas);
  }

  // One table per evaluator: rows method × layer, columns its metrics.
  for (const auto& [name, ev] : result.evaluations) {
    if (ev.metrics.empty()) continue;
    std::vector<std::string> metric_names;
    std::vector<std::pair<std::string, std::string>> keys;
    std::map<std::pair<std::string, std::string>, std::map<std::string, double>> values;
    for (const auto& m : ev.metrics) {
      if (std::find(metric_names.begin(), metric_names.end(), m.name) == metric_names.end()) metric_names.push_back(m.name);
      const auto key = std::make_pair(m.method, m.layer);
      if (!values.count(key)) keys.push_back(key);
      values[key][m.name] = m.value;
    }
    std::vector<std::string> columns{"method", "layer"};
    columns.insert(columns.end(), metric_names.begin(), metric_names.end());
    std::vector<std::vector<std::string>> rows;
    for (const auto& key : keys) {
      std::vector<std::string> row{key.first, key.second};
      for (const auto& n : metric_names) {
        const auto it = values[key].find(n);
        row.push_back(it == values[key].end() ? "" : fmt(it->second));
      }
      rows.push_back(std::move(row));
    }
    doc.heading("Evaluator: " + name, 2);
    doc.table(columns, rows);
    write_evaluator_extras(doc, save_png, name, ev);
    // Its curves: one plot per curve name and layer, one line per method.
    std::vector<std::pair<std::string, std::string>> plots_of;
    for (const auto& c : ev.curves) {
      const auto key = std::make_pair(c.name, c.layer);
      if (std::find(plots_of.begin(), plots_of.end(), key) == plots_of.end()) plots_of.push_back(key);
    }
    for (const auto& [cn, layer] : plots_of) {
      std::vector<Series> series;
      std::string xl, yl;
      std::vector<std::string> skipped;
      for (const auto& c : ev.curves)
        if (c.name == cn && c.layer == layer) {
          series.push_back({c.method, c.x, c.y});
          xl = c.x_label, yl = c.y_label;
          const auto len = std::min(c.x.size(), c.y.size());
          std::size_t bad = 0;
          for (std::size_t i = 0; i < len; ++i) bad += !std::isfinite(c.x[i]) || !std::isfinite(c.y[i]);
          if (bad > 0) skipped.push_back(c.method + ": " + std::to_string(bad) + " of " + std::to_string(len));
        }
      const std::string title = name + ": " + cn + (layer.empty() ? "" : " at " + layer);
      save_png(line_plot_png(title, xl, yl, series), name + "-" + cn + "-" + layer, title);
      if (!skipped.empty()) {
        std::string text = title + ": points that are not finite (not drawn; null in summary.json): ";
        for (std::size_t i = 0; i < skipped.size(); ++i) text += (i ? "; " : "") + skipped[i];
        doc.paragraph(text + ".");
      }
    }
  }

  // Heatmaps of image-shaped input attributions.
  std::vector<torch::Tensor> maps;
  std::vector<std::string> labels;
  const auto n = std::min<std::int64_t>(heatmap_inputs, plan.inputs.size(0));
  std::map<std::string, int> per_method;
  for (const auto& r : result.results)
    if (image_map(r, plan.inputs).defined()) ++per_method[r.method];
  for (const auto& r : result.results) {
    const auto m = image_map(r, plan.inputs);
    if (!m.defined() || n <= 0 || m.size(0) < n) continue;
    maps.push_back(m.narrow(0, 0, n).detach().cpu());
    labels.push_back(per_method[r.method] > 1 ? r.method + "@" + r.layer : r.method);
  }
  if (!maps.empty()) {
    doc.heading("Input-space attributions", 2);
    doc.paragraph("First " + std::to_string(n) + " inputs; red positive, blue negative, each map scaled by its own largest |value|.");
    save_png(heatmap_grid_png(plan.inputs.narrow(0, 0, n).detach().cpu(), maps, labels), "heatmaps",
             "input-space attributions");
  }

  write_token_text(doc, plan, result, heatmap_inputs);

  // Timings: the shared passes, each method's own time (summed over shards), each evaluator.
  // Grouped by kind: methods (slowest first), the shared passes they use, evaluators, the rest, the wall time.
  const Timings& all = result.timings;
  std::vector<std::pair<double, std::vector<std::string>>> groups[5];
  const auto strip = [](const std::string& k, const std::string& prefix, const std::string& suffix = "") {
    return k.substr(prefix.size(), k.size() - prefix.size() - suffix.size());
  };
  const auto pass_name = [&](const std::string& key) {
    for (const auto& g : plan.groups)
      if (g.key == key) {
        std::string users;
        for (auto i : g.methods) users += (users.empty() ? "" : ", ") + plan.methods[i].config.name;
        return key + " (for " + users + ")";
      }
    return key;
  };
  for (const auto& [k, v] : all) {
    const auto starts = [&](const std::string& p) { return k.rfind(p, 0) == 0; };
    if (starts("method ")) groups[0].push_back({-v, {"method", strip(k, "method "), fmt(v)}});
    else if (starts("pass [") && k.back() == ']') groups[1].push_back({-v, {"shared pass", pass_name(strip(k, "pass [", "]")), fmt(v)}});
    else if (starts("evaluator ")) groups[2].push_back({-v, {"evaluator", strip(k, "evaluator "), fmt(v)}});
    else if (k == "run (wall)") groups[4].push_back({0, {"total", "attributions: passes and methods (wall clock)", fmt(v)}});
    else groups[3].push_back({0, {"other", k, fmt(v)}});
  }
  // Evaluators run one after another after the attributions, so their times add to the attribution wall time.
  if (all.count("run (wall)") && !groups[2].empty()) {
    double total = all.at("run (wall)");
    for (const auto& g : groups[2]) total -= g.first;
    groups[4].push_back({1, {"total", "attributions and evaluators (wall clock)", fmt(total)}});
  }
  std::vector<std::vector<std::string>> timings;
  for (auto& g : groups) {
    std::stable_sort(g.begin(), g.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& row : g) timings.push_back(std::move(row.second));
  }
  doc.heading("Timings", 2);
  doc.paragraph("Seconds. A method's time is its own work, summed over shards (so it can exceed the wall time "
                "when shards run concurrently); the shared passes (forward and backward along a path, used by every "
                "method of the group) are listed separately and not included in the methods' times.");
  doc.table({"kind", "name", "seconds"}, timings);

  std::set<std::string> seen;
  std::vector<std::vector<std::string>> notes;
  for (const auto& r : result.results)
    for (const auto& note : r.notes)
      if (seen.insert(r.method + note).second) notes.push_back({r.method, r.layer, note});
  if (!notes.empty()) {
    doc.heading("Notes", 2);
    doc.table({"method", "layer", "note"}, notes, 3);
  }

  write_file_atomic((fs::path(dir) / "report.md").string(), doc.markdown());
  write_file_atomic((fs::path(dir) / "report.html").string(), doc.html("Galvani comparison"));
}

}  // namespace galvani::core
