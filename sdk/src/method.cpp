#include "galvani/method.h"

namespace galvani {

torch::Tensor aggregate_units(const torch::Tensor& values, const std::string& unit) {
  if (unit == "neuron") return values;
  if (unit == "filter") {
    if (values.dim() <= 2) return values;
    std::vector<int64_t> dims;
    for (int64_t d = 2; d < values.dim(); ++d) dims.push_back(d);
    return values.sum(dims);
  }
  if (unit == "layer") return values.reshape({values.size(0), -1}).sum(1, /*keepdim=*/true);
  throw ConfigError("unknown unit \"" + unit + "\"; valid units: \"neuron\", \"filter\", \"layer\"");
}

torch::Tensor completeness_delta(const torch::Tensor& values, const torch::Tensor& f_input,
                                 const torch::Tensor& f_baseline) {
  const auto total = values.reshape({values.size(0), -1}).sum(1);
  return total - (f_input - f_baseline).to(total.scalar_type());
}

}  // namespace galvani
