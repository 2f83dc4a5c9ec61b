// Out-of-line destructors: each interface's vtable lives once, in the SDK library.
#include <algorithm>
#include <sstream>

#include "galvani/evaluator.h"
#include "galvani/method.h"
#include "galvani/model.h"
#include "galvani/path.h"
#include "galvani/plugin.h"

namespace galvani {

TappedForward::~TappedForward() = default;
Model::~Model() = default;
ModelBackend::~ModelBackend() = default;
PathGenerator::~PathGenerator() = default;
MethodContext::~MethodContext() = default;
Method::~Method() = default;
Evaluator::~Evaluator() = default;
Registrar::~Registrar() = default;

namespace {
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}
}  // namespace

LayerInfo Model::layer(const std::string& name) const {
  const auto all = layers();
  for (const auto& l : all)
    if (l.name == name) return l;
  std::vector<std::pair<std::size_t, std::string>> close;
  for (const auto& l : all) close.emplace_back(edit_distance(name, l.name), l.name);
  std::sort(close.begin(), close.end());
  std::ostringstream msg;
  msg << "no layer named '" << name << "' in the model";
  if (!close.empty()) {
    msg << "; closest:";
    for (std::size_t i = 0; i < close.size() && i < 5; ++i) msg << (i ? ", " : " ") << close[i].second;
  }
  msg << " (`galvani layers MODEL` lists them all)";
  throw ModelError(msg.str());
}

}  // namespace galvani
