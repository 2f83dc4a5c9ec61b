#include "galvani/core/bench.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "galvani/core/execute.h"
#include "galvani/passes.h"
#include "galvani/version.h"

namespace galvani::core {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Peak resident memory: reset (Linux ≥ 4.0: "5" into clear_refs), then read back as VmHWM.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

std::int64_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmHWM:   123456 kB"
  return -1;
}

// `plan` with only `methods` (indices into plan.methods), no evaluators, and their shared passes.
Plan with_methods(const Plan& plan, const std::vector<std::size_t>& methods) {
  Plan p = plan;
  p.methods.clear();
  for (auto i : methods) p.methods.push_back(plan.methods[i]);
  p.groups = group_methods(p.methods);
  p.evaluators.clear();
  return p;
}

// One row: the untimed first run, then `repetitions` × (the work, then its floors).
BenchRow time_row(const Plan& plan, const std::string& name, const std::string& plugin, int repetitions) {
  BenchRow row;
  row.name = name;
  row.plugin = plugin;
  // The floors: the plan's shared passes; a method with passes of its own gets forward+backward at x and x′.
  std::vector<PassGroup> floors = plan.groups;
  if (floors.empty()) {
    PassGroup g;
    g.key = "endpoints";
    floors.push_back(g);
  }
  for (const auto& g : floors) {
    row.floor_kind += (row.floor_kind.empty() ? "" : " + ") + std::string(g.path ? "path" : "endpoints");
    row.floor_key += (row.floor_key.empty() ? "" : " + ") + g.key;
  }
  const bool measured = reset_peak_rss();
  auto t0 = Clock::now();
  (void)execute(plan);
  row.first_seconds = seconds_since(t0);
  for (int r = 0; r < repetitions; ++r) {
    t0 = Clock::now();
    (void)execute(plan);
    row.time.seconds.push_back(seconds_since(t0));
    t0 = Clock::now();
    std::int64_t points = 0;
    for (const auto& g : floors) points += run_floor(plan, g);
    row.floor.seconds.push_back(seconds_since(t0));
    row.points = points;
  }
  if (measured) row.peak_rss_bytes = peak_rss_bytes();
  return row;
}

std::string format_seconds(double s) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(s < 0.1 ? 4 : s < 10 ? 3 : 1) << s;
  return out.str();
}

nlohmann::json timing_json(const Timing& t) {
  return {{"seconds", t.seconds}, {"median", t.median()}, {"min", t.min()}, {"max", t.max()}};
}

}  // namespace

std::int64_t run_floor(const Plan& plan, const PassGroup& g) {
  const PathPassSpec spec = g.spec(/*double_accumulate=*/false);  // the floor computes no tangents and keeps nothing
  std::vector<std::int64_t> points(plan.schedule.shards());
  for_each_shard(plan.schedule, [&](const ShardRange& r) {
    points[r.index] = floor_pass(*plan.model, spec, plan.inputs.narrow(0, r.start, r.length),
                                 plan.baselines.narrow(0, r.start, r.length),
                                 plan.targets.narrow(0, r.start, r.length), plan.objective);
  });
  std::int64_t total = 0;
  for (auto p : points) total += p;
  return total;
}

double Timing::median() const {
  if (seconds.empty()) return 0;
  auto s = seconds;
  std::sort(s.begin(), s.end());
  const auto n = s.size();
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}
double Timing::min() const { return seconds.empty() ? 0 : *std::min_element(seconds.begin(), seconds.end()); }
double Timing::max() const { return seconds.empty() ? 0 : *std::max_element(seconds.begin(), seconds.end()); }

BenchReport bench(const Plan& plan, int repetitions, const std::function<void(const std::string&)>& progress) {
  if (repetitions < 1) throw ConfigError("repetitions: expected 1 or more, got " + std::to_string(repetitions));
  BenchReport report;
  report.repetitions = repetitions;
  report.schedule = plan.schedule;
  report.inputs = plan.inputs.size(0);
  report.device = plan.model->device().str();
  std::vector<std::size_t> all;
  for (std::size_t i = 0; i < plan.methods.size(); ++i) {
    const auto& m = plan.methods[i];
    if (progress) progress("timing " + m.config.name + " (" + std::to_string(repetitions) + " repetitions)");
    report.rows.push_back(time_row(with_methods(plan, {i}), m.config.name, m.config.plugin, repetitions));
    all.push_back(i);
  }
  if (all.size() > 1) {
    if (progress) progress("timing all methods in one run");
    report.rows.push_back(time_row(with_methods(plan, all), "all methods", "", repetitions));
  }
  return report;
}

std::string BenchReport::table() const {
  std::size_t w = 6;
  for (const auto& r : rows) w = std::max(w, r.name.size());
  std::ostringstream out;
  out << inputs << " inputs on " << device << ", " << schedule.shards() << " shard(s) of " << schedule.shard_size
      << ", " << schedule.concurrency << " at a time × " << schedule.intra_threads << " ATen thread(s); "
      << repetitions << " timed repetition(s) after one untimed run; seconds\n";
  out << std::left << std::setw(static_cast<int>(w) + 2) << "method" << std::right << std::setw(10) << "median"
      << std::setw(20) << "range" << std::setw(10) << "floor" << std::setw(9) << "× floor" << std::setw(10)
      << "first" << std::setw(10) << "peak MiB" << std::setw(10) << "points" << "  floor over\n";
  for (const auto& r : rows) {
    out << std::left << std::setw(static_cast<int>(w) + 2) << r.name << std::right << std::setw(10)
        << format_seconds(r.time.median()) << std::setw(20)
        << (format_seconds(r.time.min()) + "–" + format_seconds(r.time.max())) << std::setw(10)
        << format_seconds(r.floor.median());
    std::ostringstream ratio;
    ratio << std::fixed << std::setprecision(2) << r.ratio();
    // "× floor" holds a two-byte character: widths count bytes.
    out << std::setw(8) << ratio.str() << std::setw(10) << format_seconds(r.first_seconds) << std::setw(10)
        << (r.peak_rss_bytes < 0 ? std::string("n/a") : std::to_string(r.peak_rss_bytes >> 20)) << std::setw(10)
        << r.points << "  " << r.floor_key << "\n";
  }
  return out.str();
}

std::string BenchReport::json() const {
  nlohmann::json j;
  j["galvani_version"] = GALVANI_VERSION_STRING;
  j["repetitions"] = repetitions;
  j["inputs"] = inputs;
  j["device"] = device;
  j["schedule"] = {{"shards", schedule.shards()},
                   {"shard_size", schedule.shard_size},
                   {"concurrency", schedule.concurrency},
                   {"intra_threads", schedule.intra_threads}};
  j["planning_seconds"] = planning;
  j["rows"] = nlohmann::json::array();
  for (const auto& r : rows) {
    nlohmann::json row;
    row["name"] = r.name;
    row["plugin"] = r.plugin;
    row["first_seconds"] = r.first_seconds;
    row["time"] = timing_json(r.time);
    row["floor"] = timing_json(r.floor);
    row["floor"]["kind"] = r.floor_kind;
    row["floor"]["pass"] = r.floor_key;
    row["floor"]["points"] = r.points;
    row["ratio_to_floor"] = r.ratio();
    row["peak_rss_bytes"] = r.peak_rss_bytes >= 0 ? nlohmann::json(r.peak_rss_bytes) : nlohmann::json(nullptr);
    j["rows"].push_back(std::move(row));
  }
  return j.dump(2) + "\n";
}

}  // namespace galvani::core
