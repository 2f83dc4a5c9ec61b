// The `galvani` command line: thin subcommands over the core.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "galvani/core/config.h"
#include "galvani/core/plugin_host.h"
#include "galvani/core/process.h"
#include "galvani/core/scaffold.h"
#include "galvani/core/runner.h"
#include "galvani/model.h"
#include "galvani/tensor_io.h"
#include "galvani/version.h"

namespace {

using galvani::core::global_plugin_host;

constexpr const char* kUsage = R"(usage: galvani <command> [options]

commands:
  run CONFIG.toml [--out DIR] [--dry-run] [--quiet]
                          run the comparison a config describes; results go to DIR
                          (default: [output] dir of the config)
  plugins                 list plugins, their components and load errors
  layers MODEL.pt [--input-shape C,H,W | --inputs FILE.pt] [--backend NAME]
                          list the model's layers (names to use in configs)
  new-plugin NAME --kind method|evaluator|path|backend [--dir DIR]
                          write a buildable out-of-tree plugin project into DIR/NAME
  version                 print the version
  help                    this text

Plugins are loaded from GALVANI_PLUGIN_PATH (':'-separated folders) and the built-in plugin folder.
)";

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  std::set<std::string> flags;
};

Args parse_args(int argc, char** argv, int first, const std::set<std::string>& with_value,
                const std::set<std::string>& flags) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) == 0) {
      if (auto eq = s.find('='); eq != std::string::npos) {
        const auto key = s.substr(0, eq);
        if (!with_value.count(key)) throw galvani::ConfigError("unknown option " + key);
        a.options[key] = s.substr(eq + 1);
      } else if (with_value.count(s)) {
        if (i + 1 >= argc) throw galvani::ConfigError("option " + s + " needs a value");
        a.options[s] = argv[++i];
      } else if (flags.count(s)) {
        a.flags.insert(s);
      } else {
        throw galvani::ConfigError("unknown option " + s + " (see `galvani help`)");
      }
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

int cmd_plugins() {
  auto& host = global_plugin_host();
  host.load_default();
  int bad = 0;
  for (const auto& r : host.records()) {
    if (r.loaded) {
      std::cout << r.name << " " << r.version << "  (" << r.file << ")\n";
      for (const auto& c : r.components) std::cout << "    " << c << "\n";
    } else {
      ++bad;
      std::cout << "NOT LOADED " << r.file << "\n    " << r.error << "\n";
    }
  }
  if (host.records().empty()) std::cout << "no plugins found; set GALVANI_PLUGIN_PATH\n";
  return bad ? 1 : 0;
}

int cmd_layers(const Args& a) {
  if (a.positional.size() != 1) throw galvani::ConfigError("usage: galvani layers MODEL.pt [--input-shape C,H,W]");
  auto& host = global_plugin_host();
  host.load_default();
  const std::string backend_name = a.options.count("--backend") ? a.options.at("--backend") : "torchscript";
  const auto& c = host.registry().get(galvani::core::ComponentKind::Backend, backend_name);
  auto backend = galvani::core::call_plugin(c.plugin, [&] { return c.backend(); });
  auto model = galvani::core::call_plugin(c.plugin, [&] { return backend->load(a.positional[0], {}); });
  torch::Tensor example;
  if (a.options.count("--inputs")) {
    example = galvani::load_tensor(a.options.at("--inputs")).narrow(0, 0, 1).to(model->dtype());
  } else if (a.options.count("--input-shape")) {
    std::vector<int64_t> shape{1};
    std::stringstream in(a.options.at("--input-shape"));
    for (std::string d; std::getline(in, d, ',');) shape.push_back(std::stoll(d));
    example = torch::zeros(shape, torch::TensorOptions().dtype(model->dtype()));
  }
  if (example.defined()) galvani::core::call_plugin(c.plugin, [&] { model->probe(example); return 0; });
  const auto layers = model->layers();
  std::size_t w = 5;
  for (const auto& l : layers) w = std::max(w, l.name.size());
  std::cout << std::left << std::setw(static_cast<int>(w) + 2) << "layer" << std::setw(22) << "type"
            << std::setw(20) << "output shape" << std::setw(10) << "units" << "call\n";
  for (const auto& l : layers) {
    std::int64_t units = 1;
    for (auto s : l.shape) units *= s;
    std::cout << std::setw(static_cast<int>(w) + 2) << l.name << std::setw(22) << (l.type.empty() ? "-" : l.type)
              << std::setw(20) << (l.shape.empty() ? std::string("?") : galvani::shape_string(l.shape))
              << std::setw(10) << (l.shape.empty() ? std::string("?") : std::to_string(units))
              << (l.call_count > 1 ? std::to_string(l.call_index + 1) + " of " + std::to_string(l.call_count)
                                   : std::string("-"))
              << "\n";
  }
  if (!example.defined()) std::cout << "(give --input-shape or --inputs to see output shapes)\n";
  return 0;
}

int cmd_new_plugin(const Args& a) {
  if (a.positional.size() != 1 || !a.options.count("--kind"))
    throw galvani::ConfigError("usage: galvani new-plugin NAME --kind method|evaluator|path|backend [--dir DIR]");
  const std::string dir = a.options.count("--dir") ? a.options.at("--dir") : ".";
  const auto root = galvani::core::write_plugin_scaffold(a.positional[0], a.options.at("--kind"), dir);
  std::cout << "wrote " << root << "/ (CMakeLists.txt, src/, tests/, README.md)\n"
            << "build it against the installed SDK:\n"
            << "  cmake -S " << root << " -B " << root << "/build -DCMAKE_PREFIX_PATH=<galvani prefix>\n"
            << "  cmake --build " << root << "/build && ctest --test-dir " << root << "/build\n";
  return 0;
}

int cmd_run(const Args& a) {
  if (a.positional.size() != 1) throw galvani::ConfigError("usage: galvani run CONFIG.toml [--out DIR]");
  const bool quiet = a.flags.count("--quiet") > 0;
  auto config = galvani::core::parse_config_file(a.positional[0]);
  if (a.options.count("--out")) config.output.dir = a.options.at("--out");
  auto& host = global_plugin_host();
  host.load_default();
  auto plan = galvani::core::make_plan(config, host);
  if (a.flags.count("--dry-run")) {
    std::cout << plan.describe();
    return 0;
  }
  if (!quiet) std::cerr << plan.describe();
  const bool tty = ::isatty(STDERR_FILENO);
  const auto t0 = std::chrono::steady_clock::now();
  // One line per stage: redrawn in place on a terminal, plain lines (every ~10 %) otherwise.
  auto progress = [&](const std::string& stage, std::size_t done, std::size_t total) {
    if (quiet) return;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::ostringstream line;
    if (stage == "shards") {
      const double eta = done ? el / done * (total - done) : 0;
      const auto inputs_done =
          std::min<std::int64_t>(static_cast<std::int64_t>(done) * plan.shard_size, plan.inputs.size(0));
      const int width = 30;
      const int filled = static_cast<int>(width * done / std::max<std::size_t>(total, 1));
      line << "attributing [" << std::string(filled, '#') << std::string(width - filled, '.') << "] " << inputs_done
           << "/" << plan.inputs.size(0) << " inputs  " << std::fixed << std::setprecision(1)
           << (el > 0 ? inputs_done / el : 0.0) << " inputs/s  " << el << " s elapsed, ETA " << eta << " s";
    } else {
      line << stage << (done < total ? " ..." : " done") << "  " << std::fixed << std::setprecision(1) << el
           << " s elapsed";
    }
    if (tty)
      std::cerr << "\r\033[K" << line.str() << (done == total ? "\n" : "") << std::flush;
    else if (stage != "shards" || done == total || done % std::max<std::size_t>(1, total / 10) == 0)
      std::cerr << line.str() << "\n";
  };
  auto result = galvani::core::execute(plan, progress);
  if (!quiet) std::cerr << "writing results to " << config.output.dir << "\n";
  galvani::core::write_results(plan, result, config.output.dir);
  // Notes are warnings (a fallback taken, a rule replaced): shown even with --quiet.
  for (const auto& r : result.results)
    for (const auto& note : r.notes) std::cerr << "galvani: note: " << r.method << " at " << r.layer << ": " << note << "\n";
  if (!quiet) {
    std::cerr << "results in " << config.output.dir << "\n";
    for (const auto& r : result.results) {
      std::cerr << "  " << std::left << std::setw(24) << r.method << std::setw(20) << r.layer;
      if (r.delta.defined())
        std::cerr << " mean |delta| = " << r.delta.abs().mean().item<double>();
      std::cerr << "\n";
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  galvani::core::tune_allocator();
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (cmd == "version" || cmd == "--version") {
      std::cout << "galvani " << GALVANI_VERSION_STRING << "\n";
      return 0;
    }
    if (cmd == "plugins") return cmd_plugins();
    if (cmd == "layers") return cmd_layers(parse_args(argc, argv, 2, {"--input-shape", "--inputs", "--backend"}, {}));
    if (cmd == "new-plugin") return cmd_new_plugin(parse_args(argc, argv, 2, {"--kind", "--dir"}, {}));
    if (cmd == "run") return cmd_run(parse_args(argc, argv, 2, {"--out"}, {"--dry-run", "--quiet"}));
    std::cerr << "galvani: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  } catch (const galvani::Error& e) {
    std::cerr << "galvani: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "galvani: internal error: " << e.what() << "\n";
    return 3;
  }
}
