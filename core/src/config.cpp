#include "galvani/core/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace galvani::core {
namespace {

OptionValue convert(const toml::node& node, const std::string& where) {
  if (auto v = node.as_boolean()) return OptionValue::boolean(v->get());
  if (auto v = node.as_integer()) return OptionValue::integer(v->get());
  if (auto v = node.as_floating_point()) return OptionValue::floating(v->get());
  if (auto v = node.as_string()) return OptionValue::string(v->get());
  if (auto v = node.as_array()) {
    std::vector<OptionValue> items;
    for (std::size_t i = 0; i < v->size(); ++i) items.push_back(convert(*v->get(i), where + "[" + std::to_string(i) + "]"));
    return OptionValue::list(std::move(items));
  }
  if (auto v = node.as_table()) {
    std::map<std::string, OptionValue> items;
    for (auto&& [key, child] : *v) {
      const std::string k(key.str());
      items.emplace(k, convert(child, where.empty() ? k : where + "." + k));
    }
    return OptionValue::dict(std::move(items));
  }
  throw ConfigError(where + ": dates and times are not supported here");
}

// Whether `text` is a whole number written out: digits only, at most 18 (class indices, token ids).
bool is_whole_number(const std::string& text) {
  return !text.empty() && text.size() <= 18 &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::string resolve(const std::string& base, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(base) / path).lexically_normal().string();
}

// "cpu", "cuda", "cuda:N". Whether the CUDA device exists is the plan's question (it depends on the machine).
torch::Device parse_device(const std::string& text) {
  const std::string valid = "use \"cpu\", \"cuda\" or \"cuda:N\"";
  std::optional<torch::Device> d;
  try {
    d.emplace(text);
  } catch (const std::exception&) {
    throw ConfigError("model.device: \"" + text + "\" is not a device; " + valid);
  }
  if (!d->is_cpu() && !d->is_cuda())
    throw ConfigError("model.device: \"" + text + "\" is not supported; " + valid);
  if (d->is_cpu() && d->has_index())
    throw ConfigError("model.device: \"" + text + "\": the CPU has no device index (all cores are used through "
                      "[run] threads); use \"cpu\"");
  return *d;
}

// steps = "auto" and its keys; a number of steps (or no steps) leaves it off.
AdaptiveSteps parse_adaptive(const Options& o) {
  AdaptiveSteps a;
  const auto raw = o.has("steps") ? o.get_raw("steps") : std::nullopt;
  if (raw && raw->kind == OptionValue::Kind::String) {
    if (raw->s != "auto")
      throw ConfigError(o.key_path("steps") + ": expected an integer or \"auto\", got \"" + raw->s + "\"");
    a.on = true;
  }
  for (const char* key : {"tolerance", "min_steps", "max_steps"})
    if (!a.on && o.has(key))
      throw ConfigError(o.key_path(key) + ": only with steps = \"auto\" (it sets how far each input's path is "
                        "refined)");
  if (!a.on) return a;
  a.tolerance = o.get_double_in("tolerance", a.tolerance, 1e-12, 1.0);
  a.min_steps = static_cast<int>(o.get_int_in("min_steps", a.min_steps, 1, 100000));
  a.max_steps = static_cast<int>(o.get_int_in("max_steps", a.max_steps, 1, 100000));
  if (a.max_steps < 2 * a.min_steps)
    throw ConfigError(o.key_path("max_steps") + ": " + std::to_string(a.max_steps) + " leaves no level after "
                      "min_steps = " + std::to_string(a.min_steps) + " to compare with; give at least " +
                      std::to_string(2 * a.min_steps));
  return a;
}

// Method and evaluator names become folders (attributions/<name>/, tables/<name>/): letters, digits and
// "._+-", not starting with '.' or '-', at most 64 characters. Two names that differ only in case would share
// a folder on case-insensitive file systems, so they collide too.
std::string check_folder_name(const std::string& where, const std::string& name) {
  const std::string rule = "use letters, digits and . _ + - (not first: . or -), at most 64 characters";
  if (name.empty()) throw ConfigError(where + ": empty; " + rule);
  if (name.size() > 64)
    throw ConfigError(where + ": \"" + name.substr(0, 64) + "...\" is " + std::to_string(name.size()) +
                      " characters long; " + rule);
  for (unsigned char c : name) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '+' || c == '-') continue;
    char shown[16];
    if (std::isprint(c))
      std::snprintf(shown, sizeof shown, "'%c'", c);
    else
      std::snprintf(shown, sizeof shown, "byte 0x%02x", c);
    throw ConfigError(where + ": \"" + name + "\" cannot be used as a folder name (it holds " + shown + "); " + rule);
  }
  if (name.front() == '.' || name.front() == '-')
    throw ConfigError(where + ": \"" + name + "\" cannot be used as a folder name (it starts with '" +
                      name.front() + "'); " + rule);
  std::string folded = name;
  for (char& c : folded) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return folded;
}

RunConfig build(const OptionValue& root, const std::string& base_dir, const std::string& source) {
  RunConfig cfg;
  cfg.source = source;
  cfg.base_dir = base_dir;
  cfg.echo = root;
  const Options top("", root.table);

  {
    const Options m = top.table("model");
    if (!top.has("model")) throw ConfigError(source + ": the [model] table is required (with path = \"model.pt\")");
    cfg.model.path = m.get_string("path", "");
    if (cfg.model.path.empty()) throw ConfigError("model.path: required (a TorchScript .pt file)");
    cfg.model.path = resolve(base_dir, cfg.model.path);
    cfg.model.backend = m.get_string("backend", cfg.model.backend);
    cfg.model.device = parse_device(m.get_string("device", "cpu"));
    cfg.model.output = parse_output_mode(m.get_choice("output", "logit", {"logit", "probability", "logit-minus-mean"}));
    const auto dtype = m.get_choice("dtype", "model", {"model", "float32", "float64"});
    if (dtype != "model") cfg.model.dtype = dtype == "float64" ? torch::kDouble : torch::kFloat;
    cfg.model.training = m.get_bool("training", false);
    cfg.model.onednn_linear = m.get_choice("linear", "onednn", {"onednn", "aten"}) == "onednn";
    if (auto e = m.get_raw("output_element")) {
      if (e->kind == OptionValue::Kind::Int) {
        if (e->i < 0) throw ConfigError("model.output_element: a position must be ≥ 0, got " + std::to_string(e->i));
        cfg.model.output_element = std::to_string(e->i);
      } else if (e->kind == OptionValue::Kind::String) {
        if (e->s.empty())
          throw ConfigError("model.output_element: empty; give a position of the forward's tuple (0, 1, …) or a "
                            "key of its dict (\"logits\")");
        cfg.model.output_element = e->s;
      } else {
        throw ConfigError(std::string("model.output_element: expected a position (0, 1, …) or a dict key, got ") +
                          e->kind_name() + " " + e->repr());
      }
    }
  }
  {
    const Options d = top.table("data");
    if (!top.has("data")) throw ConfigError(source + ": the [data] table is required (with inputs = \"inputs.pt\")");
    cfg.data.inputs = d.get_string("inputs", "");
    if (cfg.data.inputs.empty()) throw ConfigError("data.inputs: required (a tensor file saved with torch.save)");
    cfg.data.inputs = resolve(base_dir, cfg.data.inputs);
    const auto baselines = d.get_string("baselines", "zeros");
    if (baselines.empty())
      throw ConfigError("data.baselines: empty; use \"zeros\", \"mean\", \"pad:N\" (token ids) or a tensor file");
    if (baselines == "zeros") {
      cfg.data.baselines.kind = BaselineSpec::Kind::Zeros;
    } else if (baselines == "mean") {
      cfg.data.baselines.kind = BaselineSpec::Kind::Mean;
    } else if (baselines.rfind("pad:", 0) == 0) {
      const std::string id = baselines.substr(4);
      if (!is_whole_number(id))
        throw ConfigError("data.baselines: \"" + baselines +
                          "\": after \"pad:\" comes the token id that replaces every input token, e.g. \"pad:0\"");
      cfg.data.baselines.kind = BaselineSpec::Kind::Token;
      cfg.data.baselines.token = std::stoll(id);
    } else {
      cfg.data.baselines.kind = BaselineSpec::Kind::File;
      cfg.data.baselines.file = resolve(base_dir, baselines);
    }
    if (auto t = d.get_raw("target")) {
      if (t->kind == OptionValue::Kind::Int) {
        if (t->i < 0) throw ConfigError("data.target: a class index must be ≥ 0, got " + std::to_string(t->i));
        cfg.data.target.kind = TargetSpec::Kind::Class;
        cfg.data.target.index = t->i;
      } else if (t->kind == OptionValue::Kind::String) {
        if (t->s.empty())
          throw ConfigError("data.target: empty; use \"predicted\", a class index or a tensor file of classes");
        if (t->s == "predicted") {
          cfg.data.target.kind = TargetSpec::Kind::Predicted;
        } else if (is_whole_number(t->s)) {
          cfg.data.target.kind = TargetSpec::Kind::Class;  // "3" means class 3, as 3 does
          cfg.data.target.index = std::stoll(t->s);
        } else {
          cfg.data.target.kind = TargetSpec::Kind::File;
          cfg.data.target.file = resolve(base_dir, t->s);
        }
      } else {
        throw ConfigError(std::string("data.target: expected \"predicted\", a class index or a tensor file, got ") +
                          t->kind_name() + " " + t->repr());
      }
    }
    cfg.data.limit = d.get_int_in("limit", 0, 0, std::numeric_limits<std::int64_t>::max());
    cfg.data.vocabulary = d.get_string("vocabulary", "");
    if (d.has("vocabulary") && cfg.data.vocabulary.empty())
      throw ConfigError("data.vocabulary: empty; name a text file with one token per line (line i is token id i)");
    if (!cfg.data.vocabulary.empty()) cfg.data.vocabulary = resolve(base_dir, cfg.data.vocabulary);
    cfg.data.path_layer = d.get_string("path_layer", "");
    if (d.has("path_layer") && cfg.data.path_layer.empty())
      throw ConfigError("data.path_layer: empty; name the layer whose output space the paths run in (e.g. "
                        "\"embedding\"; `galvani layers MODEL` lists them), or remove the key");
  }
  if (auto methods = top.get_raw("methods")) {
    if (methods->kind != OptionValue::Kind::Array)
      throw ConfigError("methods: expected an array of tables ([[methods]]), got " + std::string(methods->kind_name()));
    std::set<std::string> names;
    for (std::size_t i = 0; i < methods->array.size(); ++i) {
      const auto& entry = methods->array[i];
      const std::string where = "methods[" + std::to_string(i) + "]";
      if (entry.kind != OptionValue::Kind::Table) throw ConfigError(where + ": expected a table");
      MethodConfig mc;
      mc.options = Options(where, entry.table);
      mc.options.set_base_dir(base_dir);
      const Options& o = mc.options;
      mc.plugin = o.get_string("plugin", "");
      if (mc.plugin.empty()) throw ConfigError(where + ".plugin: required (the method to run, e.g. \"conductance\")");
      mc.name = o.get_string("name", mc.plugin);
      if (!names.insert(check_folder_name(where + ".name", mc.name)).second)
        throw ConfigError(where + ".name: \"" + mc.name +
                          "\" is used by another method of this run (names are compared ignoring case, as folders "
                          "on some file systems are); give each entry a distinct name");
      mc.layers = o.get_strings("layers", {});
      mc.path = o.get_string("path", mc.path);
      mc.adaptive = parse_adaptive(o);
      mc.steps = mc.adaptive.on ? mc.adaptive.levels().back()
                                : static_cast<int>(o.get_int_in("steps", mc.steps, 1, 100000));
      mc.internal_batch = o.get_int_in("internal_batch", 0, 0, 1 << 24);
      mc.unit = o.get_choice("unit", "neuron", {"neuron", "filter", "layer"});
      cfg.methods.push_back(std::move(mc));
    }
  }
  if (auto evaluators = top.get_raw("evaluators")) {
    if (evaluators->kind != OptionValue::Kind::Array)
      throw ConfigError("evaluators: expected an array of tables ([[evaluators]])");
    std::set<std::string> names;
    for (std::size_t i = 0; i < evaluators->array.size(); ++i) {
      const auto& entry = evaluators->array[i];
      const std::string where = "evaluators[" + std::to_string(i) + "]";
      if (entry.kind != OptionValue::Kind::Table) throw ConfigError(where + ": expected a table");
      EvaluatorConfig ec;
      ec.options = Options(where, entry.table);
      ec.options.set_base_dir(base_dir);
      ec.plugin = ec.options.get_string("plugin", "");
      if (ec.plugin.empty()) throw ConfigError(where + ".plugin: required");
      ec.name = ec.options.get_string("name", ec.plugin);
      if (!names.insert(check_folder_name(where + ".name", ec.name)).second)
        throw ConfigError(where + ".name: \"" + ec.name +
                          "\" is used by another evaluator of this run (names are compared ignoring case); give "
                          "each entry a distinct name");
      cfg.evaluators.push_back(std::move(ec));
    }
  }
  {
    const Options r = top.table("run");
    cfg.run.threads = static_cast<int>(r.get_int_in("threads", 0, 0, 1024));
    cfg.run.shard_size = r.get_int_in("shard_size", 0, 0, std::numeric_limits<std::int32_t>::max());
    cfg.run.double_precision = r.get_choice("precision", "model", {"model", "double"}) == "double";
  }
  {
    const Options o = top.table("output");
    cfg.output.dir = o.get_string("dir", cfg.output.dir);
  }
  for (const auto& p : top.get_strings("plugin_paths", {})) cfg.plugin_paths.push_back(resolve(base_dir, p));
  top.check_all_used();
  return cfg;
}

}  // namespace

std::string BaselineSpec::describe() const {
  switch (kind) {
    case Kind::Zeros: return "zeros";
    case Kind::Mean: return "mean";
    case Kind::Token: return "pad:" + std::to_string(token);
    case Kind::File: return file;
  }
  return file;
}

std::string TargetSpec::describe() const {
  switch (kind) {
    case Kind::Predicted: return "predicted";
    case Kind::Class: return std::to_string(index);
    case Kind::File: return file;
  }
  return file;
}

RunConfig parse_config_string(const std::string& text, const std::string& base_dir, const std::string& source) {
  toml::table table;
  try {
    table = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << source << ":" << e.source().begin.line << ":" << e.source().begin.column << ": " << e.description();
    throw ConfigError(msg.str());
  }
  return build(convert(table, ""), base_dir, source);
}

RunConfig parse_config_tree(const OptionValue& root, const std::string& base_dir, const std::string& source) {
  if (root.kind != OptionValue::Kind::Table) throw ConfigError(source + ": expected a table of settings");
  return build(root, base_dir, source);
}

RunConfig parse_config_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw ConfigError("config file '" + path + "' does not exist");
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const auto base = fs::absolute(path, ec).parent_path().string();
  return parse_config_string(text.str(), base, path);
}

std::vector<int> AdaptiveSteps::levels() const {
  std::vector<int> out;
  for (long n = min_steps; n <= max_steps; n *= 2) out.push_back(static_cast<int>(n));
  return out;
}

std::string AdaptiveSteps::describe() const {
  std::ostringstream out;
  out << "auto (tolerance " << tolerance << ", " << min_steps << " to " << levels().back() << " steps)";
  return out.str();
}

}  // namespace galvani::core
