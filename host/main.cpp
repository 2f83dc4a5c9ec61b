// The `galvani` command line: thin subcommands over the core.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "galvani/core/bench.h"
#include "galvani/core/config.h"
#include "galvani/core/execute.h"
#include "galvani/core/plan.h"
#include "galvani/core/plugin_call.h"
#include "galvani/core/plugin_host.h"
#include "galvani/core/process.h"
#include "galvani/core/scaffold.h"
#include "galvani/core/writer.h"
#include "galvani/model.h"
#include "galvani/tensor_io.h"
#include "galvani/version.h"

namespace {

using galvani::core::global_plugin_host;

// Exit codes, one policy for every subcommand (docs/config.md, "Exit codes"): 0 success; 1 a user error (config,
// model, data, plugin: the message says what to change); 2 a usage error (unknown command or option, a bad
// option value); 3 an internal error (a bug: please report it).
constexpr int kUserError = 1;
constexpr int kUsageError = 2;
constexpr int kInternalError = 3;

constexpr const char* kFooter =
    "Plugins are loaded from GALVANI_PLUGIN_PATH (':'-separated folders) and the built-in plugin folder.\n"
    "Exit status: 0 success, 1 an error in the config, model, data or a plugin, 2 a usage error, 3 an internal "
    "error.";

// `text` in lines of at most `width` columns (counting bytes), each starting with `indent`.
std::string wrap(const std::string& text, const std::string& indent, std::size_t width) {
  std::istringstream words(text);
  std::string out, line;
  for (std::string w; words >> w;) {
    if (!line.empty() && indent.size() + line.size() + 1 + w.size() > width) {
      out += indent + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + w;
  }
  if (!line.empty()) out += indent + line + "\n";
  return out;
}

int cmd_plugins() {
  auto& host = global_plugin_host();
  host.load_default();
  int bad = 0;
  for (const auto& r : host.records()) {
    if (r.loaded) {
      std::cout << r.name << " " << r.version << "  (" << r.file << ")\n";
      for (const auto* c : host.registry().all()) {
        if (c->file != r.file) continue;
        std::cout << "    " << galvani::core::to_string(c->kind) << " " << c->name << "\n";
        if (!c->summary.empty()) std::cout << wrap(c->summary, "        ", 108);
      }
    } else {
      ++bad;
      std::cout << "NOT LOADED " << r.file << "\n    " << r.error << "\n";
    }
  }
  if (host.records().empty()) std::cout << "no plugins found; set GALVANI_PLUGIN_PATH\n";
  return bad ? 1 : 0;
}

struct LayersArgs {
  std::string model, inputs, backend = "torchscript";
  std::vector<std::int64_t> input_shape;
};

int cmd_layers(const LayersArgs& a) {
  auto& host = global_plugin_host();
  host.load_default();
  torch::Tensor example;
  if (!a.inputs.empty()) {
    example = galvani::load_tensor(a.inputs);
  } else if (!a.input_shape.empty()) {
    std::vector<std::int64_t> shape{1};
    shape.insert(shape.end(), a.input_shape.begin(), a.input_shape.end());
    example = torch::zeros(shape);  // in the model's dtype once loaded
  }
  const auto layers = galvani::core::list_layers(host, a.backend, a.model, {}, example);
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

// The prefix this galvani was installed into (PREFIX/bin/galvani beside PREFIX/lib*/cmake/Galvani), or "" when it
// runs from a build folder.
std::string installed_prefix() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec || exe.parent_path().filename() != "bin") return "";
  const auto prefix = exe.parent_path().parent_path();
  for (const char* lib : {"lib", "lib64", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu"})
    if (std::filesystem::exists(prefix / lib / "cmake" / "Galvani" / "GalvaniConfig.cmake", ec)) return prefix.string();
  return "";
}

struct NewPluginArgs {
  std::string name, kind, dir = ".";
};

int cmd_new_plugin(const NewPluginArgs& a) {
  const auto root = galvani::core::write_plugin_scaffold(a.name, a.kind, a.dir);
  const auto prefix = installed_prefix();
  std::cout << "wrote " << root << "/ (CMakeLists.txt, src/, tests/, README.md)\n"
            << "build it against the installed SDK:\n"
            << "  cmake -S " << root << " -B " << root << "/build -DCMAKE_PREFIX_PATH="
            << (prefix.empty() ? "<galvani prefix>" : prefix) << "\n"
            << "  cmake --build " << root << "/build && ctest --test-dir " << root << "/build\n";
  if (prefix.empty())
    std::cout << "(this galvani runs from its build folder: install it first with `cmake --install build --prefix "
                 "PREFIX`, which also puts PREFIX/bin/galvani on your PATH if PREFIX/bin is on it; docs/sdk.md)\n";
  return 0;
}

struct RunArgs {
  std::string config, out;
  bool dry_run = false, quiet = false;
};

int cmd_run(const RunArgs& a) {
  const bool quiet = a.quiet;
  auto config = galvani::core::parse_config_file(a.config);
  if (!a.out.empty()) config.output.dir = a.out;
  auto& host = global_plugin_host();
  host.load_default();
  galvani::core::Timings planning;
  const auto plan = galvani::core::make_plan(config, host, &planning);
  if (a.dry_run) {
    std::cout << plan.describe();
    return 0;
  }
  if (!quiet) std::cerr << plan.describe();
  // Claimed before the first shard: a folder that cannot take the results, or another run writing to it, is
  // found now, not after the work.
  galvani::core::ResultsFolder out(config.output.dir);
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
          std::min<std::int64_t>(static_cast<std::int64_t>(done) * plan.schedule.shard_size, plan.inputs.size(0));
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
  result.timings.insert(planning.begin(), planning.end());
  if (!quiet) std::cerr << "writing results to " << config.output.dir << "\n";
  galvani::core::write_results(plan, result, out.staging());
  out.publish();
  // Notes are warnings (a fallback taken, a rule replaced): shown even with --quiet.
  for (const auto& r : result.results)
    for (const auto& note : r.notes) std::cerr << "galvani: note: " << r.method << " at " << r.layer << ": " << note << "\n";
  if (!result.complete()) {
    for (const auto& f : result.failures)
      std::cerr << "galvani: error: " << f.kind << " '" << f.name << "' failed: " << f.message << "\n";
    std::cerr << "galvani: the results of everything else are in " << config.output.dir
              << " (summary.json: \"complete\": false)\n";
    return kUserError;
  }
  if (!quiet) {
    std::cerr << "results in " << config.output.dir << "\n";
    for (const auto& r : result.results) {
      std::cerr << "  " << std::left << std::setw(24) << r.method << std::setw(20) << r.layer;
      if (r.delta.defined())
        std::cerr << " mean |delta| = " << r.delta.abs().mean().item<double>();
      if (const auto p = r.extras.find("points"); p != r.extras.end())  // steps = "auto"
        std::cerr << "  path points per input: mean " << p->second.to(torch::kDouble).mean().item<double>()
                  << ", max " << p->second.max().item<std::int64_t>();
      std::cerr << "\n";
    }
  }
  return 0;
}

struct BenchArgs {
  std::string config, json = "bench.json";
  int repetitions = 5;
  std::int64_t limit = 0;
  bool quiet = false;
};

int cmd_bench(const BenchArgs& a) {
  auto config = galvani::core::parse_config_file(a.config);
  if (a.limit > 0) config.data.limit = a.limit;
  auto& host = global_plugin_host();
  host.load_default();
  galvani::core::Timings planning;
  const auto t0 = std::chrono::steady_clock::now();
  const auto plan = galvani::core::make_plan(config, host, &planning);
  planning["planning (wall)"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!a.quiet) std::cerr << plan.describe();
  auto report = galvani::core::bench(plan, a.repetitions, [&](const std::string& line) {
    if (!a.quiet) std::cerr << line << "\n";
  });
  report.planning = planning;
  std::cout << report.table();
  if (!a.json.empty()) {
    galvani::write_file_atomic(a.json, report.json());
    if (!a.quiet) std::cerr << "wrote " << a.json << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  galvani::core::tune_allocator();
  CLI::App app{"galvani: how important is this neuron? Attributions of hidden units of PyTorch models, compared.",
               "galvani"};
  app.footer(kFooter);
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("galvani ") + GALVANI_VERSION_STRING);

  RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "run the comparison a config describes");
  run_cmd->add_option("config", run.config, "the run's TOML file (docs/config.md)")->required();
  run_cmd->add_option("--out", run.out, "results folder (default: [output] dir of the config)");
  run_cmd->add_flag("--dry-run", run.dry_run, "check the config and print the plan; compute and write nothing");
  run_cmd->add_flag("--quiet", run.quiet, "no plan, progress or summary (notes still show)");

  BenchArgs bench;
  auto* bench_cmd = app.add_subcommand(
      "bench", "time every method of a config alone and together against the floor (a plain chunked "
               "forward+backward over the same points, same shards and threads)");
  bench_cmd->add_option("config", bench.config, "the run's TOML file (docs/config.md); evaluators are not run")
      ->required();
  bench_cmd->add_option("--repetitions,-r", bench.repetitions, "timed repetitions per method, after one untimed run")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  bench_cmd->add_option("--limit", bench.limit, "time on the first N inputs only (as [data] limit)")
      ->check(CLI::PositiveNumber);
  bench_cmd->add_option("--json", bench.json, "write every timing here as JSON (\"\": do not write)")
      ->capture_default_str();
  bench_cmd->add_flag("--quiet", bench.quiet, "print the table only");

  auto* plugins_cmd = app.add_subcommand("plugins", "list plugins, their components and load errors");

  LayersArgs layers;
  auto* layers_cmd = app.add_subcommand("layers", "list the model's layers (the names to use in configs)");
  layers_cmd->add_option("model", layers.model, "the model file (TorchScript .pt)")->required();
  auto* shape_opt = layers_cmd->add_option("--input-shape", layers.input_shape,
                                           "one input's shape without the batch dimension, e.g. 1,28,28")
                        ->delimiter(',')
                        ->check(CLI::PositiveNumber);
  layers_cmd->add_option("--inputs", layers.inputs, "a tensor file [N, ...] whose first input probes the shapes")
      ->excludes(shape_opt);
  layers_cmd->add_option("--backend", layers.backend, "the model backend plugin")->capture_default_str();

  NewPluginArgs scaffold;
  auto* new_plugin_cmd = app.add_subcommand("new-plugin", "write a buildable out-of-tree plugin project into DIR/NAME");
  new_plugin_cmd->add_option("name", scaffold.name, "the plugin's name (lower-case, digits, '-')")->required();
  new_plugin_cmd->add_option("--kind", scaffold.kind, "method, evaluator, path or backend")->required();
  new_plugin_cmd->add_option("--dir", scaffold.dir, "where to write the project")->capture_default_str();

  auto* version_cmd = app.add_subcommand("version", "print the version");
  auto* help_cmd = app.add_subcommand("help", "list the commands (`galvani COMMAND --help`: its options)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "galvani: usage error: " << e.what() << "\n(see `galvani help`, or `galvani <command> --help`)\n";
    return kUsageError;
  }
  try {
    if (*help_cmd) {  // the whole command list (app.help() would describe the selected `help` subcommand)
      std::cout << app.get_formatter()->make_help(&app, "galvani", CLI::AppFormatMode::Normal);
      return 0;
    }
    if (*version_cmd) {
      std::cout << "galvani " << GALVANI_VERSION_STRING << "\n";
      return 0;
    }
    if (*plugins_cmd) return cmd_plugins();
    if (*layers_cmd) return cmd_layers(layers);
    if (*new_plugin_cmd) return cmd_new_plugin(scaffold);
    if (*run_cmd) return cmd_run(run);
    if (*bench_cmd) return cmd_bench(bench);
    std::cerr << app.get_formatter()->make_help(&app, "galvani", CLI::AppFormatMode::Normal);
    return kUsageError;
  } catch (const galvani::Error& e) {
    std::cerr << "galvani: error: " << e.what() << "\n";
    return kUserError;
  } catch (const std::exception& e) {
    std::cerr << "galvani: internal error: " << e.what() << "\n";
    return kInternalError;
  }
}
