// `galvani bench` and the benchmarks' floors: the floor runs exactly the points of the pass it follows, every
// method is timed alone and all together, and what is written can be read back; the model cache that keeps a
// Python session's model from call to call.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <thread>

#include "galvani/core/bench.h"
#include "galvani/core/config.h"
#include "galvani/core/plan.h"
#include "galvani/passes.h"
#include "galvani/tensor_io.h"
#include "test_support.h"

namespace {

using galvani::core::make_plan;
using galvani::core::parse_config_string;
using galvani::core::Plan;

std::string two_layer_model() {
  return galvani::testing::save_script_model(
      "bench_two", {{"hidden", "def forward(self, x):\n  return torch.tanh(x * 2.0)\n"},
                    {"head", "def forward(self, x):\n  return torch.cat([x.sum(1, keepdim=True), -x.sum(1, keepdim=True)], 1)\n"}},
      "def forward(self, x):\n  return self.head.forward(self.hidden.forward(x))\n");
}

// 6 inputs [4] in shards of 4 (two shards), with `methods` as [[methods]] tables.
Plan plan_for(const std::string& methods, const std::string& baselines = "zeros") {
  static const std::string model = two_layer_model();
  static const std::string inputs = [] {
    torch::manual_seed(5);
    return galvani::testing::save_temp_tensor(torch::randn({6, 4}), "bench_x.pt");
  }();
  const std::string toml = "[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" + inputs + "\"\nbaselines = \"" +
                           baselines + "\"\n[run]\nshard_size = 4\nthreads = 2\n" + methods;
  return make_plan(parse_config_string(toml, "."), galvani::testing::plugins());
}

const char* kPath = "[[methods]]\nplugin = \"nig\"\nlayers = [\"hidden\"]\nsteps = 8\n";
const char* kEndpoints = "[[methods]]\nplugin = \"gradient-x-activation\"\nlayers = [\"hidden\"]\n";

}  // namespace

TEST(Floor, RunsThePointsOfThePassItFollows) {
  // A path: the grid (0, 8 Gauss–Legendre points, 1) × 6 inputs, as compute_path_pass lays them out.
  const auto path = plan_for(kPath);
  ASSERT_EQ(path.groups.size(), 1u);
  ASSERT_TRUE(path.groups[0].path);
  EXPECT_EQ(galvani::core::run_floor(path, path.groups[0]), 10 * 6);
  galvani::PathPassSpec spec;
  spec.layers = path.groups[0].layers;
  spec.path = path.groups[0].path.get();
  spec.steps = 8;
  const auto pass = galvani::compute_path_pass(*path.model, spec, path.inputs, path.baselines, path.targets,
                                               path.objective);
  EXPECT_EQ(static_cast<std::int64_t>(pass.t.size()) * 6,
            galvani::floor_pass(*path.model, spec, path.inputs, path.baselines, path.targets, path.objective));
  // Endpoints with one baseline for all: per shard one baseline row per distinct target, then its inputs.
  const auto ends = plan_for(kEndpoints);
  ASSERT_EQ(ends.groups.size(), 1u);
  EXPECT_FALSE(ends.groups[0].path);
  std::int64_t expected = 0;
  for (std::int64_t start = 0; start < 6; start += 4) {
    const auto t = ends.targets.narrow(0, start, std::min<std::int64_t>(4, 6 - start));
    expected += std::get<0>(at::_unique(t)).size(0) + t.size(0);
  }
  EXPECT_EQ(galvani::core::run_floor(ends, ends.groups[0]), expected);
  // A baseline per input: 2 rows per input.
  const auto own = galvani::testing::save_temp_tensor(torch::rand({6, 4}), "bench_b.pt");
  const auto distinct = plan_for(kEndpoints, own);
  EXPECT_EQ(galvani::core::run_floor(distinct, distinct.groups[0]), 12);
}

TEST(Bench, TimesEveryMethodAloneThenAllTogether) {
  const auto plan = plan_for(std::string(kPath) + kEndpoints +
                             "[[methods]]\nplugin = \"deeplift\"\nlayers = [\"hidden\"]\n");
  std::vector<std::string> lines;
  const auto report = galvani::core::bench(plan, 3, [&](const std::string& l) { lines.push_back(l); });
  ASSERT_EQ(report.rows.size(), 4u);
  EXPECT_EQ(lines.size(), 4u);
  const std::vector<std::string> names{"nig", "gradient-x-activation", "deeplift", "all methods"};
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& r = report.rows[i];
    EXPECT_EQ(r.name, names[i]);
    ASSERT_EQ(r.time.seconds.size(), 3u) << r.name;
    ASSERT_EQ(r.floor.seconds.size(), 3u) << r.name;
    EXPECT_GT(r.time.min(), 0.0) << r.name;
    EXPECT_GT(r.floor.min(), 0.0) << r.name;
    EXPECT_LE(r.time.min(), r.time.median());
    EXPECT_LE(r.time.median(), r.time.max());
    EXPECT_GT(r.first_seconds, 0.0);
    EXPECT_DOUBLE_EQ(r.ratio(), r.time.median() / r.floor.median());
    EXPECT_GT(r.peak_rss_bytes, 1 << 20) << r.name;  // Linux lets a process reset its peak
  }
  EXPECT_EQ(report.rows[0].floor_kind, "path");
  EXPECT_EQ(report.rows[0].points, 60);
  EXPECT_EQ(report.rows[1].floor_kind, "endpoints");
  // DeepLIFT runs passes of its own: its floor is a forward+backward at x and x′ (shared baseline layout).
  EXPECT_EQ(report.rows[2].floor_kind, "endpoints");
  EXPECT_EQ(report.rows[2].floor_key, "endpoints");
  // All together: nig's path pass, which gradient × activation joins; deeplift's has none.
  EXPECT_EQ(report.rows[3].floor_key, report.rows[0].floor_key);
  EXPECT_EQ(report.rows[3].points, 60);

  const auto table = report.table();
  for (const auto& n : names) EXPECT_NE(table.find(n), std::string::npos) << table;
  EXPECT_NE(table.find("6 inputs on cpu, 2 shard(s) of 4"), std::string::npos) << table;
  const auto j = nlohmann::json::parse(report.json());
  EXPECT_EQ(j["repetitions"], 3);
  EXPECT_EQ(j["schedule"]["shards"], 2);
  ASSERT_EQ(j["rows"].size(), 4u);
  EXPECT_EQ(j["rows"][0]["name"], "nig");
  EXPECT_EQ(j["rows"][0]["plugin"], "nig");
  EXPECT_EQ(j["rows"][0]["floor"]["points"], 60);
  EXPECT_EQ(j["rows"][0]["time"]["seconds"].size(), 3u);
  EXPECT_DOUBLE_EQ(j["rows"][0]["time"]["median"].get<double>(), report.rows[0].time.median());
  EXPECT_DOUBLE_EQ(j["rows"][0]["ratio_to_floor"].get<double>(), report.rows[0].ratio());
}

TEST(Bench, RefusesNoRepetitions) {
  const auto plan = plan_for(kPath);
  try {
    (void)galvani::core::bench(plan, 0);
    FAIL() << "0 repetitions accepted";
  } catch (const galvani::ConfigError& e) {
    EXPECT_STREQ(e.what(), "repetitions: expected 1 or more, got 0");
  }
}

TEST(Timing, MedianMinMax) {
  galvani::core::Timing t;
  EXPECT_EQ(t.median(), 0.0);
  t.seconds = {3, 1, 2, 10};
  EXPECT_DOUBLE_EQ(t.median(), 2.5);
  EXPECT_DOUBLE_EQ(t.min(), 1);
  EXPECT_DOUBLE_EQ(t.max(), 10);
  t.seconds.push_back(0.5);
  EXPECT_DOUBLE_EQ(t.median(), 2);
}

TEST(ModelCache, KeepsTheModelUntilTheModelSectionOrTheFileChanges) {
  namespace fs = std::filesystem;
  const auto dir = galvani::testing::temp_dir();
  const auto model = dir + "/model.pt";
  fs::copy_file(two_layer_model(), model);
  const auto x = galvani::testing::save_temp_tensor(torch::randn({3, 4}), "cache_x.pt");
  auto config = parse_config_string("[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" + x + "\"\n" + kPath, ".");
  galvani::core::ModelCache cache;
  const auto first = make_plan(config, galvani::testing::plugins(), nullptr, &cache);
  const auto second = make_plan(config, galvani::testing::plugins(), nullptr, &cache);
  EXPECT_EQ(cache.loads(), 1u);
  EXPECT_EQ(first.model.get(), second.model.get());
  config.model.dtype = torch::kDouble;  // another [model] section: loaded again
  const auto as_double = make_plan(config, galvani::testing::plugins(), nullptr, &cache);
  EXPECT_EQ(cache.loads(), 2u);
  EXPECT_EQ(as_double.model->dtype(), torch::kDouble);
  (void)make_plan(config, galvani::testing::plugins(), nullptr, &cache);
  EXPECT_EQ(cache.loads(), 2u);
  // The file changes (a later modification time): loaded again.
  fs::last_write_time(model, fs::last_write_time(model) + std::chrono::seconds(5));
  (void)make_plan(config, galvani::testing::plugins(), nullptr, &cache);
  EXPECT_EQ(cache.loads(), 3u);
  // Without a cache every plan loads its own.
  const auto a = make_plan(config, galvani::testing::plugins());
  const auto b = make_plan(config, galvani::testing::plugins());
  EXPECT_NE(a.model.get(), b.model.get());
}
