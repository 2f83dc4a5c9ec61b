#include "galvani/support.h"

#include <boost/math/statistics/bivariate_statistics.hpp>
#include <boost/math/statistics/univariate_statistics.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <set>

namespace galvani {

const char* to_string(UnitKind kind) {
  switch (kind) {
    case UnitKind::Neuron: return "neuron";
    case UnitKind::Filter: return "filter";
    case UnitKind::Layer: return "layer";
  }
  return "neuron";
}

std::optional<UnitKind> unit_kind(c10::IntArrayRef per_input, const std::vector<std::int64_t>& layer_shape) {
  const auto per = per_input.vec();
  if (per == layer_shape) return UnitKind::Neuron;
  if (per.size() == 1 && per[0] == 1) return UnitKind::Layer;
  if (layer_shape.size() > 1 && per.size() == 1 && per[0] == layer_shape[0]) return UnitKind::Filter;
  return std::nullopt;
}

std::int64_t unit_count(UnitKind kind, const std::vector<std::int64_t>& layer_shape) {
  if (kind == UnitKind::Layer) return 1;
  if (kind == UnitKind::Filter) return layer_shape.at(0);
  return std::accumulate(layer_shape.begin(), layer_shape.end(), std::int64_t{1}, std::multiplies<>());
}

ResultFilter::ResultFilter(const Options& options, bool with_layers)
    : methods_(options.get_strings("methods", {})),
      layers_(with_layers ? options.get_strings("layers", {}) : std::vector<std::string>{}),
      methods_key_(options.key_path("methods")), layers_key_(options.key_path("layers")) {}

bool ResultFilter::accepts(const MethodResult& r) const {
  return (methods_.empty() || std::count(methods_.begin(), methods_.end(), r.method)) &&
         (layers_.empty() || std::count(layers_.begin(), layers_.end(), r.layer));
}

void ResultFilter::check(const std::vector<MethodResult>& results) const {
  const auto require = [&](const std::vector<std::string>& wanted, const std::string& key, auto field,
                           const char* what) {
    std::set<std::string> have;
    for (const auto& r : results) have.insert(field(r));
    for (const auto& w : wanted) {
      if (have.count(w)) continue;
      std::string valid;
      for (const auto& h : have) valid += (valid.empty() ? "\"" : ", \"") + h + "\"";
      throw ConfigError(key + ": no " + what + " \"" + w + "\" in this run; " +
                        (valid.empty() ? std::string("the run has no results") : "the run has " + valid));
    }
  };
  require(methods_, methods_key_, [](const MethodResult& r) { return r.method; }, "method");
  require(layers_, layers_key_, [](const MethodResult& r) { return r.layer; }, "layer");
}

std::string layer_file_name(const std::string& layer) {
  std::string out = layer;
  for (char& c : out)
    if (c == '/' || c == '\\') c = '_';
  return out;
}

namespace stats {

double mean(const std::vector<double>& v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  return boost::math::statistics::mean(v);
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const auto constant = [](const std::vector<double>& v) {
    return std::all_of(v.begin(), v.end(), [&](double x) { return x == v.front(); });
  };
  // Boost.Math reads two constant samples as perfectly correlated; here a constant sample has no correlation.
  if (a.size() < 2 || a.size() != b.size() || constant(a) || constant(b)) return std::numeric_limits<double>::quiet_NaN();
  return boost::math::statistics::correlation_coefficient(a, b);
}

torch::Tensor ranks(const torch::Tensor& v) {
  const auto n = v.size(0), m = v.size(1);
  auto out = torch::empty({n, m}, torch::kDouble);
  // The optional spells out the (stable, dim, descending) overload: sort(true, 1) would be sort(dim, descending).
  const auto sorted = v.contiguous().sort(c10::optional<bool>(true), /*dim=*/1, /*descending=*/false);
  const auto values = std::get<0>(sorted).contiguous(), order = std::get<1>(sorted).contiguous();
  for (std::int64_t i = 0; i < n; ++i) {
    const auto* pv = values[i].data_ptr<double>();
    const auto* po = order[i].data_ptr<std::int64_t>();
    auto* pr = out[i].data_ptr<double>();
    for (std::int64_t a = 0; a < m;) {
      std::int64_t b = a;
      while (b + 1 < m && pv[b + 1] == pv[a]) ++b;
      for (std::int64_t j = a; j <= b; ++j) pr[po[j]] = 0.5 * static_cast<double>(a + b);
      a = b + 1;
    }
  }
  return out;
}

torch::Tensor spearman(const torch::Tensor& a, const torch::Tensor& b) {
  const auto ra = ranks(a), rb = ranks(b);
  const auto ca = ra - ra.mean(1, true), cb = rb - rb.mean(1, true);
  return (ca * cb).sum(1) / ((ca * ca).sum(1) * (cb * cb).sum(1)).sqrt();
}

}  // namespace stats
}  // namespace galvani
