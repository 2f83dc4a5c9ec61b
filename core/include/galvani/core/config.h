// The run configuration: a TOML file turned into typed settings, strictly (unknown keys are errors).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "galvani/objective.h"
#include "galvani/options.h"

namespace galvani::core {

struct ModelConfig {
  std::string path;                 ///< resolved against the config file's folder
  std::string backend = "torchscript";
  /// "cpu", "cuda" or "cuda:N", parsed; whether a CUDA device exists is checked when the plan is made.
  torch::Device device = torch::kCPU;
  OutputMode output = OutputMode::Logit;
  std::optional<torch::ScalarType> dtype;  ///< "float32" / "float64"; nullopt ("model") keeps the model's
  bool training = false;            ///< keep the mode the model was saved in (default: evaluation mode)
  bool onednn_linear = true;        ///< linear = "onednn" (default) or "aten"
};

/// What x′ is: zeros, the mean input, or a tensor file ([N, ...], one [...] for all, or [1, ...]).
struct BaselineSpec {
  enum class Kind { Zeros, Mean, File };
  Kind kind = Kind::Zeros;
  std::string file;                 ///< Kind::File: resolved against the config file's folder
  /// As the config says it: "zeros", "mean" or the file.
  std::string describe() const;
};

/// Which output F explains: the predicted class, one class for every input, or a tensor file of classes.
struct TargetSpec {
  enum class Kind { Predicted, Class, File };
  Kind kind = Kind::Predicted;
  std::int64_t index = 0;           ///< Kind::Class
  std::string file;                 ///< Kind::File: resolved against the config file's folder
  /// As the config says it: "predicted", the class index or the file.
  std::string describe() const;
};

struct DataConfig {
  std::string inputs;               ///< tensor file [N, ...]
  BaselineSpec baselines;
  TargetSpec target;
  std::int64_t limit = 0;           ///< use the first `limit` inputs (0 = all)
};

/// One `[[methods]]` entry. The keys below are read by the host; the rest belong to the path and method.
struct MethodConfig {
  std::string plugin;
  std::string name;                 ///< defaults to the plugin name; must be unique in a run
  std::vector<std::string> layers;
  std::string path = "straight-line";
  int steps = 50;
  std::int64_t internal_batch = 0;  ///< 0 = the default chosen by measurement
  std::string unit = "neuron";      ///< "neuron", "filter" or "layer"
  Options options;                  ///< the whole table, for the path and method factories
};

struct EvaluatorConfig {
  std::string plugin;
  std::string name;
  Options options;
};

struct RunSettings {
  int threads = 0;                  ///< concurrent shards; 0 = number of cores
  std::int64_t shard_size = 0;      ///< inputs per shard; 0 = choose
  bool double_precision = false;    ///< precision = "double": accumulate path sums in float64 ("model": its dtype)
};

struct OutputConfig {
  std::string dir = "runs/galvani";  ///< relative to the working folder
};

struct RunConfig {
  std::string source;               ///< the config file (or "<string>")
  std::string base_dir;             ///< folder relative paths in [model] and [data] resolve against
  ModelConfig model;
  DataConfig data;
  std::vector<MethodConfig> methods;
  std::vector<EvaluatorConfig> evaluators;
  RunSettings run;
  OutputConfig output;
  std::vector<std::string> plugin_paths;  ///< extra plugin files or folders
  OptionValue echo;                 ///< the parsed file, for the summary
};

/// Parses a config file. Throws ConfigError with file:line:column for syntax errors and the full key path
/// for unknown keys, wrong types and bad values.
RunConfig parse_config_file(const std::string& path);
/// Same, from text; `base_dir` resolves relative paths.
RunConfig parse_config_string(const std::string& text, const std::string& base_dir,
                              const std::string& source = "<string>");

}  // namespace galvani::core
