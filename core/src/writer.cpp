// Result writers: every file is written atomically (temporary name, then rename).
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "galvani/core/writer.h"

#include "galvani/core/report.h"
#include "galvani/support.h"
#include "galvani/tensor_io.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace galvani::core {
namespace {

json to_json(const OptionValue& v) {
  switch (v.kind) {
    case OptionValue::Kind::Bool: return v.b;
    case OptionValue::Kind::Int: return v.i;
    case OptionValue::Kind::Float: return v.f;
    case OptionValue::Kind::String: return v.s;
    case OptionValue::Kind::Array: {
      json a = json::array();
      for (const auto& e : v.array) a.push_back(to_json(e));
      return a;
    }
    case OptionValue::Kind::Table: {
      json o = json::object();
      for (const auto& [k, e] : v.table) o[k] = to_json(e);
      return o;
    }
  }
  return nullptr;
}

json vec(const torch::Tensor& t) {
  const auto c = t.detach().to(torch::kCPU, torch::kDouble).contiguous().flatten();
  const double* p = c.data_ptr<double>();
  return json(std::vector<double>(p, p + c.numel()));
}

std::string csv_cell(const Table::Cell& cell) {
  if (const double* d = std::get_if<double>(&cell)) {
    std::ostringstream out;
    out << std::setprecision(10) << *d;
    return out.str();
  }
  const auto& s = std::get<std::string>(cell);
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

void write_table(const Table& table, const std::string& path) {
  std::ostringstream out;
  for (std::size_t i = 0; i < table.columns.size(); ++i) out << (i ? "," : "") << csv_cell(table.columns[i]);
  out << "\n";
  for (const auto& row : table.rows) {
    for (std::size_t i = 0; i < row.size(); ++i) out << (i ? "," : "") << csv_cell(row[i]);
    out << "\n";
  }
  write_file_atomic(path, out.str());
}

// Names (methods, layers, evaluators, tables) as path components, by the rule plugins use to find results.
std::string safe(const std::string& name) { return layer_file_name(name); }

}  // namespace

void write_results(const Plan& plan, const RunResult& result, const std::string& dir) {
  create_folders(dir);

  json summary;
  summary["galvani_version"] = GALVANI_VERSION_STRING;
  summary["complete"] = result.complete();
  json failures = json::array();
  for (const auto& f : result.failures) failures.push_back({{"kind", f.kind}, {"name", f.name}, {"message", f.message}});
  summary["failures"] = failures;
  summary["config"] = to_json(plan.config.echo);
  summary["model"] = {{"path", plan.config.model.path},
                      {"device", plan.model->device().str()},
                      {"output", to_string(plan.objective.mode)},
                      {"training", plan.config.model.training},
                      {"linear", plan.config.model.onednn_linear ? "onednn" : "aten"},
                      {"notes", plan.model->notes()}};
  if (!plan.config.model.output_element.empty()) summary["model"]["output_element"] = plan.config.model.output_element;
  summary["inputs"] = {{"count", plan.inputs.size(0)}, {"shape", plan.inputs.sizes().vec()}};
  if (plan.original_inputs.defined()) {  // paths in a layer's space: `shape` is that layer's, this the model's own
    summary["inputs"]["path_layer"] = plan.config.data.path_layer;
    summary["inputs"]["model_input_shape"] = plan.original_inputs.sizes().vec();
    summary["inputs"]["model_input_dtype"] = std::string(c10::toString(plan.original_inputs.scalar_type()));
  }
  summary["targets"] = vec(plan.targets);
  summary["f_input"] = vec(result.f_input);
  summary["f_baseline"] = vec(result.f_baseline);
  summary["plan"] = {{"shard_size", plan.schedule.shard_size},
                     {"concurrency", plan.schedule.concurrency},
                     {"intra_threads", plan.schedule.intra_threads}};
  json groups = json::array();
  for (const auto& g : plan.groups) {
    json methods = json::array();
    for (auto i : g.methods) methods.push_back(plan.methods[i].config.name);
    groups.push_back({{"pass", g.key}, {"layers", g.layers}, {"methods", methods}, {"tangents", g.tangents}});
  }
  summary["plan"]["shared_passes"] = groups;

  // Attributions, and per-unit score tables per layer (mean over inputs, one column per method).
  json methods = json::array();
  std::map<std::string, Table> scores;
  for (const auto& r : result.results) {
    const fs::path folder = fs::path(dir) / "attributions" / safe(r.method);
    create_folders(folder.string());
    const std::string file = (folder / (safe(r.layer) + ".pt")).string();
    save_tensor(r.values, file);
    json m = {{"method", r.method},
              {"layer", r.layer},
              {"space", to_string(r.space)},
              {"shape", r.values.sizes().vec()},
              {"file", fs::relative(file, dir).string()}};
    if (r.delta.defined()) {
      const auto d = r.delta.detach().to(torch::kDouble).abs();
      const auto change = (result.f_input - result.f_baseline).detach().to(torch::kDouble).abs();
      m["delta"] = vec(r.delta);
      m["delta_mean_abs"] = d.mean().item<double>();
      m["delta_max_abs"] = d.max().item<double>();
      m["delta_mean_relative"] = (d / change.clamp_min(1e-12)).mean().item<double>();
    }
    if (!r.extras.empty()) {
      json extras = json::object();
      for (const auto& [key, t] : r.extras) {
        const std::string extra_file = (folder / (safe(r.layer) + "." + safe(key) + ".pt")).string();
        save_tensor(t, extra_file);
        extras[key] = fs::relative(extra_file, dir).string();
      }
      m["extras"] = extras;
    }
    if (!r.notes.empty()) m["notes"] = r.notes;
    methods.push_back(m);
    if (r.space == Space::Layer) {
      auto units = r.values.detach().to(torch::kDouble).reshape({r.values.size(0), -1}).mean(0).cpu();
      auto& table = scores[r.layer];
      if (table.columns.empty()) {
        table.name = r.layer;
        table.columns.push_back("unit");
        for (std::int64_t u = 0; u < units.size(0); ++u) table.rows.push_back({static_cast<double>(u)});
      }
      if (static_cast<std::int64_t>(table.rows.size()) != units.size(0)) continue;  // other unit granularity
      table.columns.push_back(r.method);
      for (std::int64_t u = 0; u < units.size(0); ++u) table.rows[u].push_back(units[u].item<double>());
    }
  }
  summary["methods"] = methods;
  create_folders((fs::path(dir) / "scores").string());
  for (const auto& [layer, table] : scores) write_table(table, (fs::path(dir) / "scores" / (safe(layer) + ".csv")).string());

  json evaluations = json::object();
  for (const auto& [name, ev] : result.evaluations) {
    json metrics = json::array();
    for (const auto& m : ev.metrics)
      metrics.push_back({{"method", m.method}, {"layer", m.layer}, {"name", m.name}, {"value", m.value}});
    json tables = json::array();
    const fs::path folder = fs::path(dir) / "tables" / safe(name);
    for (const auto& t : ev.tables) {
      create_folders(folder.string());
      const auto file = (folder / (safe(t.name) + ".csv")).string();
      write_table(t, file);
      tables.push_back(fs::relative(file, dir).string());
    }
    json curves = json::array();
    for (const auto& c : ev.curves)
      curves.push_back({{"method", c.method}, {"layer", c.layer}, {"name", c.name}, {"x_label", c.x_label},
                        {"y_label", c.y_label}, {"x", c.x}, {"y", c.y}});
    json matrices = json::array();
    for (const auto& m : ev.matrices) {
      create_folders(folder.string());
      const auto file = (folder / (safe(m.name + (m.layer.empty() ? "" : "." + m.layer) +
                                        (m.method.empty() ? "" : "." + m.method)) + ".pt")).string();
      save_tensor(m.values.detach().cpu(), file);
      matrices.push_back({{"method", m.method}, {"layer", m.layer}, {"name", m.name}, {"rows", m.row_title},
                          {"columns", m.column_title}, {"row_labels", m.row_labels},
                          {"column_labels", m.column_labels}, {"file", fs::relative(file, dir).string()}});
    }
    evaluations[name] = {{"metrics", metrics}, {"tables", tables}, {"curves", curves}, {"matrices", matrices}};
  }
  summary["evaluations"] = evaluations;
  json timings = json::object();
  for (const auto& [k, v] : result.timings) timings[k] = v;
  summary["timings_seconds"] = timings;
  write_file_atomic((fs::path(dir) / "summary.json").string(), summary.dump(2) + "\n");
  // The report only presents what is written above; a failure in it must not cost the run its results.
  try {
    write_report(plan, result, dir);
  } catch (const std::exception& e) {
    std::cerr << "galvani: warning: the report could not be written (results are complete): " << e.what() << "\n";
  }
}

namespace {

std::string system_error(const std::string& what) { return what + ": " + std::strerror(errno); }

// What a run keeps beside its results folder FOLDER: `.FOLDER.<what>` (the lock, staging, earlier results).
std::string beside(const fs::path& folder, const std::string& what) {
  return (folder.parent_path() / ("." + folder.filename().string() + "." + what)).string();
}

}  // namespace

ResultsFolder::ResultsFolder(const std::string& dir) {
  std::error_code ec;
  fs::path path = fs::absolute(dir, ec).lexically_normal();
  if (path.filename().empty()) path = path.parent_path();  // "runs/x/"
  if (fs::is_symlink(path, ec)) {
    path = fs::canonical(path, ec);
    if (ec) throw IoError("the results folder '" + dir + "' is a symbolic link to nothing: " + ec.message());
  }
  if (path == path.root_path() || path.filename() == "..")
    throw IoError("'" + dir + "' cannot be a results folder: galvani replaces its results folder as a whole; "
                  "choose a new or empty folder (--out)");
  const fs::path parent = path.parent_path();
  try {
    create_folders(parent.string());
  } catch (const IoError& e) {
    throw IoError("cannot create the results folder '" + dir + "': " + e.what());
  }
  dir_ = path.string();
  lock_path_ = beside(path, "lock");

  // The lock: a file beside the folder, flock'ed. The holder removes it when done; a run that opened the old
  // file meanwhile finds it gone from the folder and takes the new one.
  for (;;) {
    const int fd = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw IoError(system_error("cannot create the lock file '" + lock_path_ + "' beside the results folder"));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      char pid[32] = {};
      const auto n = ::pread(fd, pid, sizeof pid - 1, 0);
      ::close(fd);
      if (err == EWOULDBLOCK)
        throw IoError("another galvani run" + (n > 0 ? " (process " + std::string(pid) + ")" : std::string()) +
                      " is writing results to '" + dir_ + "'; wait for it to finish or choose another folder (--out)");
      errno = err;
      throw IoError(system_error("cannot lock '" + lock_path_ + "'"));
    }
    struct stat held {}, named {};
    if (::fstat(fd, &held) == 0 && ::stat(lock_path_.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
        held.st_dev == named.st_dev) {
      lock_fd_ = fd;
      break;
    }
    ::close(fd);
  }
  try {
    const std::string pid = std::to_string(::getpid());
    // Who holds the lock, for the message a second run prints; the lock holds without it.
    [[maybe_unused]] const bool noted =
        ::ftruncate(lock_fd_, 0) == 0 && ::pwrite(lock_fd_, pid.data(), pid.size(), 0) == static_cast<ssize_t>(pid.size());
    // What a killed run left: its staging folder, or earlier results it had not removed yet.
    for (const auto& e : fs::directory_iterator(parent, ec)) {
      for (const char* left : {"staging-", "old-"})
        if (e.path().string().rfind(beside(path, left), 0) == 0) fs::remove_all(e.path(), ec);
    }
    if (fs::exists(path, ec)) {
      if (!fs::is_directory(path, ec))
        throw IoError("the results folder '" + dir_ + "' is a file; choose another folder (--out)");
      if (!fs::is_empty(path, ec) && !fs::is_regular_file(path / "summary.json", ec))
        throw IoError("'" + dir_ + "' holds files that are not a galvani run's results (it has no summary.json); "
                      "galvani replaces its results folder as a whole, so choose a new or empty folder (--out)");
    }
    staging_ = beside(path, "staging-" + pid);
    create_folders(staging_);
  } catch (...) {
    ::unlink(lock_path_.c_str());
    ::close(lock_fd_);
    throw;
  }
}

ResultsFolder::~ResultsFolder() {
  std::error_code ec;
  if (!published_ && !staging_.empty()) fs::remove_all(staging_, ec);
  ::unlink(lock_path_.c_str());  // before unlocking: see the constructor
  ::close(lock_fd_);
}

void ResultsFolder::publish() {
  std::error_code ec;
  if (!fs::exists(dir_, ec)) {
    if (std::rename(staging_.c_str(), dir_.c_str()) != 0)
      throw IoError(system_error("cannot move the results into '" + dir_ + "'"));
  } else if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(staging_, ec);  // now the earlier results
  } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
    // A file system without atomic exchange: the earlier results step aside first (a run killed between the
    // two renames leaves them beside the folder, removed by the next claim).
    const auto old = beside(dir_, "old-" + std::to_string(::getpid()));
    if (std::rename(dir_.c_str(), old.c_str()) != 0 || std::rename(staging_.c_str(), dir_.c_str()) != 0)
      throw IoError(system_error("cannot move the results into '" + dir_ + "'"));
    fs::remove_all(old, ec);
  } else {
    throw IoError(system_error("cannot move the results into '" + dir_ + "'"));
  }
  published_ = true;
}

}  // namespace galvani::core
