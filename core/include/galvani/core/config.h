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
  /// output_element: the position ("0") or dict key ("logits") of the Tensor to explain when the forward returns
  /// a tuple, list or dict; empty when it returns one Tensor.
  std::string output_element;
};

/// What x′ is: zeros, the mean input, every input value replaced by one token id ("pad:N", for token-id inputs
/// with a path layer), or a tensor file ([N, ...], one [...] for all, or [1, ...]). With data.path_layer, zeros and
/// mean are taken in that layer's space, and pad:N and files are inputs whose layer output is the baseline.
struct BaselineSpec {
  enum class Kind { Zeros, Mean, Token, File };
  Kind kind = Kind::Zeros;
  std::int64_t token = 0;           ///< Kind::Token
  std::string file;                 ///< Kind::File: resolved against the config file's folder
  /// Kind::File given in memory (the Python API): used instead of reading `file`, which then names it in messages.
  torch::Tensor tensor;
  /// As the config says it: "zeros", "mean", "pad:N" or the file.
  std::string describe() const;
};

/// Which output F explains: the predicted class, one class for every input, or a tensor file of classes.
struct TargetSpec {
  enum class Kind { Predicted, Class, File };
  Kind kind = Kind::Predicted;
  std::int64_t index = 0;           ///< Kind::Class
  std::string file;                 ///< Kind::File: resolved against the config file's folder
  /// Kind::File given in memory (the Python API): used instead of reading `file`, which then names it in messages.
  torch::Tensor tensor;
  /// As the config says it: "predicted", the class index or the file.
  std::string describe() const;
};

struct DataConfig {
  std::string inputs;               ///< tensor file [N, ...]
  /// The inputs given in memory (the Python API): used instead of reading `inputs`, which then names them in
  /// messages.
  torch::Tensor inputs_tensor;
  BaselineSpec baselines;
  TargetSpec target;
  std::int64_t limit = 0;           ///< use the first `limit` inputs (0 = all)
  /// path_layer: paths run in this layer's output space (token-id models: the embedding). Empty: in the input's.
  std::string path_layer;
  /// vocabulary: a text file, one token per line (line i is token id i), for labels and coloured text in the
  /// report; resolved against the config file's folder. Empty: none.
  std::string vocabulary;
};

/// steps = "auto": every input's path refined level by level — min_steps, 2·min_steps, 4·min_steps, … up to
/// max_steps — until the estimated error of its attributions (every method of the shared pass, every layer: the
/// L1 norm over the units of the change between two levels, and half the change before) is at most
/// tolerance / 2 × |F(x) − F(x′)|. Levels run only the inputs still refining.
struct AdaptiveSteps {
  bool on = false;
  double tolerance = 0.2;
  int min_steps = 8;
  int max_steps = 512;
  /// The levels' step counts.
  std::vector<int> levels() const;
  /// "auto (tolerance 0.001, 8 to 256 steps)"
  std::string describe() const;
};

/// One `[[methods]]` entry. The keys below are read by the host; the rest belong to the path and method.
struct MethodConfig {
  std::string plugin;
  std::string name;                 ///< defaults to the plugin name; must be unique in a run
  std::vector<std::string> layers;
  std::string path = "straight-line";
  int steps = 50;                   ///< with steps = "auto": the largest level's
  AdaptiveSteps adaptive;
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
/// Same, from the parsed tree (a table of tables, as TOML gives it: the Python API builds it from keyword
/// arguments); checked exactly as a file is.
RunConfig parse_config_tree(const OptionValue& root, const std::string& base_dir,
                            const std::string& source = "<arguments>");

}  // namespace galvani::core
