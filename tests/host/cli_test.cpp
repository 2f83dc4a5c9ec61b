// The `galvani` command line end to end: run a config, read what it wrote; plugins; layers; errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "galvani/tensor_io.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

struct Output {
  int status;
  std::string text;
};

/// Runs the built `galvani` with `args`, its stderr joined to stdout; `env` ("NAME=value ") goes before it.
Output galvani_cli(const std::string& args, const std::string& env = "") {
  const std::string cmd = env + std::string(GALVANI_BINARY_DIR) + "/host/galvani " + args + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  std::string text;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe)) text += buf.data();
  const int status = ::pclose(pipe);
  return {WEXITSTATUS(status), text};
}

std::string two_layer_model() {
  return galvani::testing::save_script_model(
      "two", {{"hidden", "def forward(self, x):\n  return torch.tanh(x * 2.0)\n"},
              {"head", "def forward(self, x):\n  return torch.cat([x.sum(1, keepdim=True), -x.sum(1, keepdim=True)], 1)\n"}},
      "def forward(self, x):\n  return self.head.forward(self.hidden.forward(x))\n");
}

}  // namespace

TEST(Cli, RunWritesAttributionsSummaryAndScores) {
  const auto dir = galvani::testing::temp_dir();
  const auto model = two_layer_model();
  torch::manual_seed(3);
  galvani::save_tensor(torch::randn({6, 4}), dir + "/x.pt");
  std::ofstream(dir + "/run.toml") << "[model]\npath = \"" << model << "\"\n[data]\ninputs = \"x.pt\"\n"
                                   << "[[methods]]\nplugin = \"conductance\"\nlayers = [\"hidden\"]\nsteps = 32\n"
                                   << "[[methods]]\nplugin = \"activation\"\nlayers = [\"hidden\"]\n";
  const auto out = dir + "/results";
  const auto r = galvani_cli("run " + dir + "/run.toml --out " + out + " --quiet");
  ASSERT_EQ(r.status, 0) << r.text;
  const auto values = galvani::load_tensor(out + "/attributions/conductance/hidden.pt");
  EXPECT_EQ(values.sizes(), (std::vector<int64_t>{6, 4}));
  std::ifstream in(out + "/summary.json");
  const auto summary = nlohmann::json::parse(in);
  EXPECT_EQ(summary["inputs"]["count"], 6);
  EXPECT_EQ(summary["f_input"].size(), 6u);
  ASSERT_EQ(summary["methods"].size(), 2u);
  EXPECT_EQ(summary["methods"][0]["method"], "conductance");
  EXPECT_LT(summary["methods"][0]["delta_max_abs"].get<double>(), 1e-4);
  EXPECT_EQ(summary["plan"]["shared_passes"].size(), 1u);
  EXPECT_TRUE(summary["timings_seconds"].contains("load model"));
  // Scores: one row per unit, one column per method.
  std::ifstream csv(out + "/scores/hidden.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header, "unit,conductance,activation");
  int rows = 0;
  for (std::string line; std::getline(csv, line);) ++rows;
  EXPECT_EQ(rows, 4);
  // Nothing temporary left behind.
  for (const auto& e : fs::recursive_directory_iterator(out))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST(Cli, DryRunPrintsThePlanWithoutWriting) {
  const auto dir = galvani::testing::temp_dir();
  galvani::save_tensor(torch::randn({3, 4}), dir + "/x.pt");
  std::ofstream(dir + "/run.toml") << "[model]\npath = \"" << two_layer_model() << "\"\n[data]\ninputs = \"x.pt\"\n"
                                   << "[[methods]]\nplugin = \"nig\"\nlayers = [\"hidden\"]\n"
                                   << "[[methods]]\nplugin = \"internal-influence\"\nlayers = [\"hidden\"]\n";
  const auto r = galvani_cli("run " + dir + "/run.toml --out " + dir + "/never --dry-run");
  ASSERT_EQ(r.status, 0) << r.text;
  EXPECT_NE(r.text.find("shared pass"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("methods: nig internal-influence"), std::string::npos) << r.text;
  EXPECT_FALSE(fs::exists(dir + "/never"));
}

TEST(Cli, ErrorsAreOneClearLineAndExitStatus1) {
  const auto dir = galvani::testing::temp_dir();
  std::ofstream(dir + "/bad.toml") << "[model]\npath = \"m.pt\"\n[data]\ninputs = \"x.pt\"\nlimitt = 3\n";
  const auto r = galvani_cli("run " + dir + "/bad.toml");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.text.find("galvani: error: unknown key data.limitt"), std::string::npos) << r.text;
  EXPECT_EQ(galvani_cli("frobnicate").status, 2);
}

TEST(Cli, PluginsAndLayers) {
  auto r = galvani_cli("plugins");
  EXPECT_EQ(r.status, 0) << r.text;
  EXPECT_NE(r.text.find("method conductance"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("backend torchscript"), std::string::npos) << r.text;
  // Each component with the one-line description its plugin registered.
  EXPECT_NE(r.text.find("method conductance\n        total conductance of every unit"), std::string::npos) << r.text;
  r = galvani_cli("layers " + two_layer_model() + " --input-shape 4");
  EXPECT_EQ(r.status, 0) << r.text;
  EXPECT_NE(r.text.find("hidden"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("[4]"), std::string::npos) << r.text;
}

TEST(Cli, ProgressIsPlainLinesOffATerminalAndSilentWithQuiet) {
  const auto dir = galvani::testing::temp_dir();
  galvani::save_tensor(torch::randn({40, 4}), dir + "/x.pt");
  std::ofstream(dir + "/run.toml") << "[model]\npath = \"" << two_layer_model() << "\"\n[data]\ninputs = \"x.pt\"\n"
                                   << "[run]\nshard_size = 4\n"
                                   << "[[methods]]\nplugin = \"nig\"\nlayers = [\"hidden\"]\nsteps = 8\n";
  auto r = galvani_cli("run " + dir + "/run.toml --out " + dir + "/out");
  ASSERT_EQ(r.status, 0) << r.text;
  EXPECT_NE(r.text.find("40/40 inputs"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("inputs/s"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("ETA"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("writing results to"), std::string::npos) << r.text;
  EXPECT_EQ(r.text.find('\r'), std::string::npos) << "no carriage returns when stderr is not a terminal";
  r = galvani_cli("run " + dir + "/run.toml --out " + dir + "/out2 --quiet");
  ASSERT_EQ(r.status, 0) << r.text;
  EXPECT_EQ(r.text, "");
}

TEST(Cli, NewPluginWritesAProjectAndRefusesToOverwrite) {
  const auto dir = galvani::testing::temp_dir();
  auto r = galvani_cli("new-plugin my-method --kind method --dir " + dir);
  ASSERT_EQ(r.status, 0) << r.text;
  for (const char* f : {"CMakeLists.txt", "README.md", "src/my_method.cpp", "tests/my_method_test.cpp"})
    EXPECT_TRUE(fs::exists(dir + "/my-method/" + f)) << f;
  std::ifstream cmake(dir + "/my-method/CMakeLists.txt");
  std::stringstream text;
  text << cmake.rdbuf();
  EXPECT_NE(text.str().find("find_package(Galvani REQUIRED)"), std::string::npos);
  EXPECT_NE(text.str().find("galvani_add_plugin(my_method"), std::string::npos);
  EXPECT_EQ(galvani_cli("new-plugin my-method --kind method --dir " + dir).status, 1);
  r = galvani_cli("new-plugin My_Method --kind method --dir " + dir);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.text.find("lower-case"), std::string::npos) << r.text;
  r = galvani_cli("new-plugin x --kind tokenizer --dir " + dir);
  EXPECT_NE(r.text.find("\"method\", \"evaluator\", \"path\", \"backend\""), std::string::npos) << r.text;
}

TEST(Cli, UsageErrorsExitWith2AndSayWhatIsWrong) {
  const auto model = two_layer_model();
  auto r = galvani_cli("layers " + model + " --input-shape 1,x,28");
  EXPECT_EQ(r.status, 2) << r.text;
  EXPECT_NE(r.text.find("galvani: usage error: "), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("--input-shape"), std::string::npos) << r.text;
  EXPECT_EQ(r.text.find("internal error"), std::string::npos) << r.text;
  r = galvani_cli("layers " + model + " --input-shape 4,-1");
  EXPECT_EQ(r.status, 2) << r.text;
  EXPECT_NE(r.text.find("-1"), std::string::npos) << r.text;
  r = galvani_cli("layers " + model + " --input-shape 4 --inputs x.pt");
  EXPECT_EQ(r.status, 2) << r.text;
  r = galvani_cli("run");
  EXPECT_EQ(r.status, 2) << r.text;
  EXPECT_NE(r.text.find("config"), std::string::npos) << r.text;
  r = galvani_cli("run x.toml --frobnicate");
  EXPECT_EQ(r.status, 2) << r.text;
  EXPECT_NE(r.text.find("--frobnicate"), std::string::npos) << r.text;
  r = galvani_cli("new-plugin my-method");
  EXPECT_EQ(r.status, 2) << r.text;
  EXPECT_NE(r.text.find("--kind"), std::string::npos) << r.text;
  EXPECT_EQ(galvani_cli("").status, 2);
}

TEST(Cli, HelpAndVersionExit0) {
  auto r = galvani_cli("help");
  EXPECT_EQ(r.status, 0) << r.text;
  for (const char* cmd : {"run", "bench", "plugins", "layers", "new-plugin", "version"})
    EXPECT_NE(r.text.find(cmd), std::string::npos) << cmd << "\n" << r.text;
  EXPECT_NE(r.text.find("Exit status: 0 success, 1 an error in the config"), std::string::npos) << r.text;
  r = galvani_cli("run --help");
  EXPECT_EQ(r.status, 0) << r.text;
  EXPECT_NE(r.text.find("--dry-run"), std::string::npos) << r.text;
  r = galvani_cli("version");
  EXPECT_EQ(r.status, 0) << r.text;
  EXPECT_EQ(r.text.rfind("galvani ", 0), 0u) << r.text;
  EXPECT_EQ(galvani_cli("--version").text, r.text);
}

TEST(Cli, BenchTimesEveryMethodAgainstTheFloorAndWritesJson) {
  const auto dir = galvani::testing::temp_dir();
  const auto model = two_layer_model();
  torch::manual_seed(4);
  galvani::save_tensor(torch::randn({5, 4}), dir + "/x.pt");
  const std::string head = "[model]\npath = \"" + model + "\"\n[data]\ninputs = \"x.pt\"\n[output]\ndir = \"" + dir +
                           "/out\"\n";
  std::ofstream(dir + "/run.toml") << head << "[[methods]]\nplugin = \"conductance\"\nlayers = [\"hidden\"]\n"
                                   << "steps = 8\n[[methods]]\nplugin = \"activation\"\nlayers = [\"hidden\"]\n"
                                   << "[[evaluators]]\nplugin = \"completeness\"\n";
  const auto json = dir + "/timings.json";
  auto r = galvani_cli("bench " + dir + "/run.toml --repetitions 2 --json " + json + " --quiet --limit 5");
  ASSERT_EQ(r.status, 0) << r.text;
  // The table: a header, then conductance, activation and both together, each with its floor.
  EXPECT_NE(r.text.find("5 inputs on cpu"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("× floor"), std::string::npos) << r.text;
  for (const char* row : {"\nconductance ", "\nactivation ", "\nall methods "})
    EXPECT_NE(r.text.find(row), std::string::npos) << row << "\n" << r.text;
  std::ifstream in(json);
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["repetitions"], 2);
  ASSERT_EQ(j["rows"].size(), 3u);
  EXPECT_EQ(j["rows"][0]["name"], "conductance");
  EXPECT_EQ(j["rows"][0]["floor"]["points"], 10 * 5);  // 8 steps and the two endpoints, 5 inputs
  EXPECT_EQ(j["rows"][0]["time"]["seconds"].size(), 2u);
  EXPECT_GT(j["rows"][0]["ratio_to_floor"].get<double>(), 0.0);
  EXPECT_TRUE(j["planning_seconds"].contains("load model"));
  EXPECT_FALSE(fs::exists(dir + "/out"));  // nothing else is written: no results folder
  r = galvani_cli("bench " + dir + "/run.toml -r 1 --json '' --quiet --limit 3");
  ASSERT_EQ(r.status, 0) << r.text;
  EXPECT_NE(r.text.find("3 inputs on cpu"), std::string::npos) << r.text;
  // Bad input: a usage error, a config error found while planning (exit 1, nothing timed).
  r = galvani_cli("bench " + dir + "/run.toml --repetitions 0");
  EXPECT_EQ(r.status, 2) << r.text;
  EXPECT_NE(r.text.find("--repetitions"), std::string::npos) << r.text;
  std::ofstream(dir + "/bad.toml") << head << "[[methods]]\nplugin = \"conductance\"\nlayers = [\"nope\"]\n";
  r = galvani_cli("bench " + dir + "/bad.toml --json " + dir + "/bad.json");
  EXPECT_EQ(r.status, 1) << r.text;
  EXPECT_NE(r.text.find("nope"), std::string::npos) << r.text;
  EXPECT_EQ(r.text.find("timing "), std::string::npos) << r.text;
  EXPECT_FALSE(fs::exists(dir + "/bad.json"));
}

TEST(Cli, AMissingConfigFileIsAUserErrorExit1) {
  const auto r = galvani_cli("run /nonexistent/run.toml");
  EXPECT_EQ(r.status, 1) << r.text;
  EXPECT_NE(r.text.find("galvani: error: config file '/nonexistent/run.toml' does not exist"), std::string::npos) << r.text;
}

// What can be known from the config, the model and the data is refused while planning: `--dry-run` says it,
// exit status 1, before any attribution is computed and without writing anything.
TEST(Cli, PlanningFindsWhatWouldFailLateAndDryRunSaysIt) {
  const auto dir = galvani::testing::temp_dir();
  galvani::save_tensor(torch::randn({3, 13}), dir + "/x.pt");
  galvani::save_tensor(torch::tensor({0, 1}), dir + "/two_labels.pt");
  const auto exp_model = galvani::testing::save_script_model(
      "exp_cli", {{"body", "def forward(self, x):\n  return torch.exp(x) * 0.5\n"}},
      "def forward(self, x):\n  return torch.relu(self.body.forward(x)).sum(1, keepdim=True)\n");
  struct Case {
    std::string name, model, model_extra, body, expected;
  };
  const std::vector<Case> cases{
      {"deeplift-probability", two_layer_model(), "output = \"probability\"\n",
       "[[methods]]\nplugin = \"deeplift\"\nlayers = [\"hidden\"]\n", "output = \"probability\""},
      {"deeplift-no-rule", exp_model, "", "[[methods]]\nplugin = \"deeplift\"\nlayers = [\"body\"]\n",
       "deeplift has no rule for aten::exp in 'body'"},
      {"pathway-no-relu", two_layer_model(), "", "[[methods]]\nplugin = \"pathway-gradient\"\n",
       "pathway-gradient: the model has no ReLU modules"},
      {"pathway-reduce", exp_model, "", "[[methods]]\nplugin = \"pathway-gradient\"\nreduce = \"sum\"\n",
       "needs inputs with a channel dimension"},
      {"shapley-exact", two_layer_model(), "",
       "[[methods]]\nplugin = \"shapley-sampling\"\nlayers = [\"hidden\"]\nexact = true\n",
       "exact: layer 'hidden' has 13 units"},
      {"evaluator-methods", two_layer_model(), "",
       "[[methods]]\nplugin = \"activation\"\nlayers = [\"hidden\"]\n[[evaluators]]\nplugin = \"completeness\"\n"
       "methods = [\"activaton\"]\n",
       "evaluators[0].methods: no method named \"activaton\""},
      {"feature-selection-labels", two_layer_model(), "",
       "[[methods]]\nplugin = \"activation\"\nlayers = [\"hidden\"]\n[[evaluators]]\nplugin = \"feature-selection\"\n"
       "labels = \"two_labels.pt\"\n",
       "holds 2 labels for 3 inputs"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto config = dir + "/" + c.name + ".toml";
    std::ofstream(config) << "[model]\npath = \"" << c.model << "\"\n" << c.model_extra << "[data]\ninputs = \"x.pt\"\n"
                          << c.body;
    for (const std::string flags : {" --dry-run", ""}) {
      const auto out = dir + "/out-" + c.name + (flags.empty() ? "" : "-dry");
      const auto r = galvani_cli("run " + config + " --out " + out + flags + " --quiet");
      EXPECT_EQ(r.status, 1) << flags << "\n" << r.text;
      EXPECT_NE(r.text.find(c.expected), std::string::npos) << flags << "\n" << r.text;
      EXPECT_FALSE(fs::exists(out)) << flags;
    }
  }
}

TEST(Cli, AnOutputFolderThatCannotBeCreatedIsAClearError) {
  const auto dir = galvani::testing::temp_dir();
  galvani::save_tensor(torch::randn({2, 4}), dir + "/x.pt");
  std::ofstream(dir + "/run.toml") << "[model]\npath = \"" << two_layer_model() << "\"\n[data]\ninputs = \"x.pt\"\n"
                                   << "[[methods]]\nplugin = \"activation\"\nlayers = [\"hidden\"]\n";
  std::ofstream(dir + "/taken") << "a file, not a folder";
  const auto r = galvani_cli("run " + dir + "/run.toml --out " + dir + "/taken/results --quiet");
  EXPECT_EQ(r.status, 1) << r.text;
  EXPECT_NE(r.text.find("galvani: error: cannot create the results folder '" + dir + "/taken/results'"),
            std::string::npos)
      << r.text;
}

namespace {

nlohmann::json read_summary(const std::string& results) {
  std::ifstream in(results + "/summary.json");
  return nlohmann::json::parse(in);
}

// The entries of `dir` (names only), sorted.
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

// A method that fails after the run started costs only its own results: the others are written, the summary
// says the run is incomplete and what failed, and the exit status is 1.
TEST(Cli, AMethodThatFailsLateKeepsTheOthersResults) {
  const auto dir = galvani::testing::temp_dir();
  torch::manual_seed(4);
  galvani::save_tensor(torch::randn({6, 4}), dir + "/x.pt");
  std::ofstream(dir + "/run.toml") << "plugin_paths = [\"" GALVANI_TEST_PLUGINS_DIR "\"]\n"
                                   << "[model]\npath = \"" << two_layer_model() << "\"\n[data]\ninputs = \"x.pt\"\n"
                                   << "[run]\nshard_size = 2\nthreads = 1\n"
                                   << "[[methods]]\nplugin = \"activation\"\nlayers = [\"hidden\"]\n"
                                   << "[[methods]]\nplugin = \"fails-late\"\nlayers = [\"hidden\"]\nfail_from = 2\n"
                                   << "[[methods]]\nplugin = \"conductance\"\nlayers = [\"hidden\"]\nsteps = 16\n"
                                   << "[[evaluators]]\nplugin = \"fails-evaluating\"\n"
                                   << "[[evaluators]]\nplugin = \"completeness\"\nmethods = [\"conductance\"]\n";
  const auto out = dir + "/results";
  const auto r = galvani_cli("run " + dir + "/run.toml --out " + out + " --quiet");
  EXPECT_EQ(r.status, 1) << r.text;
  EXPECT_NE(r.text.find("galvani: error: method 'fails-late' failed: "), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("the shard at input 2 fails on purpose"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("galvani: error: evaluator 'fails-evaluating' failed: "), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("\"complete\": false"), std::string::npos) << r.text;

  const auto summary = read_summary(out);
  EXPECT_EQ(summary["complete"], false);
  ASSERT_EQ(summary["failures"].size(), 2u) << summary["failures"].dump();
  EXPECT_EQ(summary["failures"][0]["kind"], "method");
  EXPECT_EQ(summary["failures"][0]["name"], "fails-late");
  EXPECT_EQ(summary["failures"][1]["kind"], "evaluator");
  EXPECT_EQ(summary["failures"][1]["name"], "fails-evaluating");
  ASSERT_EQ(summary["methods"].size(), 2u);
  EXPECT_EQ(summary["methods"][0]["method"], "activation");
  EXPECT_EQ(summary["methods"][1]["method"], "conductance");
  EXPECT_LT(summary["methods"][1]["delta_max_abs"].get<double>(), 1e-3);
  EXPECT_EQ(galvani::load_tensor(out + "/attributions/conductance/hidden.pt").size(0), 6);
  EXPECT_FALSE(fs::exists(out + "/attributions/fails-late"));
  EXPECT_TRUE(summary["evaluations"].contains("completeness"));
  EXPECT_FALSE(summary["evaluations"].contains("fails-evaluating"));
}

// A second run into a folder replaces the first's results as a whole (no stale method folders), refuses a
// folder that holds anything else, and is refused while another run holds the folder.
TEST(Cli, TheResultsFolderIsReplacedAsAWholeAndLocked) {
  const auto dir = galvani::testing::temp_dir();
  galvani::save_tensor(torch::randn({3, 4}), dir + "/x.pt");
  const std::string head = "[model]\npath = \"" + two_layer_model() + "\"\n[data]\ninputs = \"x.pt\"\n";
  std::ofstream(dir + "/both.toml") << head << "[[methods]]\nplugin = \"activation\"\nlayers = [\"hidden\"]\n"
                                    << "[[methods]]\nplugin = \"nig\"\nlayers = [\"hidden\"]\n";
  std::ofstream(dir + "/one.toml") << head << "[[methods]]\nplugin = \"activation\"\nlayers = [\"head\"]\n";
  const auto parent = dir + "/runs";
  const auto out = parent + "/r";
  ASSERT_EQ(galvani_cli("run " + dir + "/both.toml --out " + out + " --quiet").status, 0);
  EXPECT_EQ(entries(out + "/attributions"), (std::vector<std::string>{"activation", "nig"}));
  const auto r = galvani_cli("run " + dir + "/one.toml --out " + out + " --quiet");
  ASSERT_EQ(r.status, 0) << r.text;
  EXPECT_EQ(entries(out + "/attributions"), std::vector<std::string>{"activation"});
  EXPECT_EQ(entries(out + "/attributions/activation"), std::vector<std::string>{"head.pt"});
  EXPECT_EQ(entries(out + "/scores"), std::vector<std::string>{"head.csv"});
  EXPECT_EQ(entries(parent), std::vector<std::string>{"r"}) << "no staging folder or lock file left beside it";

  // Not results: refused before any work, and left as it was.
  const auto foreign = dir + "/mine";
  fs::create_directories(foreign);
  std::ofstream(foreign + "/notes.txt") << "keep me";
  const auto refused = galvani_cli("run " + dir + "/one.toml --out " + foreign + " --quiet");
  EXPECT_EQ(refused.status, 1) << refused.text;
  EXPECT_NE(refused.text.find("holds files that are not a galvani run's results"), std::string::npos) << refused.text;
  EXPECT_EQ(entries(foreign), std::vector<std::string>{"notes.txt"});

  // Held by another run (this test takes the lock the way a run does).
  const int fd = ::open((parent + "/.r.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  ASSERT_EQ(::write(fd, "4242", 4), 4);
  const auto locked = galvani_cli("run " + dir + "/one.toml --out " + out + " --quiet");
  EXPECT_EQ(locked.status, 1) << locked.text;
  EXPECT_NE(locked.text.find("another galvani run (process 4242) is writing results to '" + out + "'"),
            std::string::npos)
      << locked.text;
  ::close(fd);
  EXPECT_EQ(galvani_cli("run " + dir + "/one.toml --out " + out + " --quiet").status, 0);
}

// SIGKILL at any moment of a run (start-up, shards, writing, publishing): the folder holds the earlier complete
// results or the new complete ones, never a mix; the next run cleans up what the killed one left.
TEST(Cli, AKilledRunLeavesCompleteResultsBehind) {
  const auto dir = galvani::testing::temp_dir();
  torch::manual_seed(5);
  galvani::save_tensor(torch::randn({400, 4}), dir + "/x.pt");
  galvani::save_tensor(torch::randn({400, 4}), dir + "/y.pt");
  const std::string head = "[model]\npath = \"" + two_layer_model() + "\"\n";
  const std::string methods = "[[methods]]\nplugin = \"conductance\"\nlayers = [\"hidden\"]\nsteps = 64\n"
                              "[[methods]]\nplugin = \"activation\"\nlayers = [\"hidden\", \"head\"]\n"
                              "[run]\nshard_size = 25\n";
  std::ofstream(dir + "/x.toml") << head << "[data]\ninputs = \"x.pt\"\n" << methods;
  std::ofstream(dir + "/y.toml") << head << "[data]\ninputs = \"y.pt\"\n" << methods;
  const auto parent = dir + "/runs";
  const auto out = parent + "/r";
  const auto binary = std::string(GALVANI_BINARY_DIR) + "/host/galvani";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(galvani_cli("run " + dir + "/x.toml --out " + out + " --quiet").status, 0);
  const double full = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto f_x = read_summary(out)["f_input"];
  int killed = 0;
  for (int k = 0; k < 12; ++k) {
    const std::string config = dir + (k % 2 ? "/x.toml" : "/y.toml");
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execl(binary.c_str(), binary.c_str(), "run", config.c_str(), "--out", out.c_str(), "--quiet", nullptr);
      ::_exit(127);
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(full * 1.1 * k / 11));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    killed += WIFSIGNALED(status);
    SCOPED_TRACE("killed after " + std::to_string(full * 1.1 * k / 11) + " s");
    const auto summary = read_summary(out);  // always there, always whole
    EXPECT_EQ(summary["complete"], true);
    EXPECT_EQ(summary["inputs"]["count"], 400);
    ASSERT_EQ(summary["methods"].size(), 3u);
    for (const auto& m : summary["methods"])
      EXPECT_EQ(galvani::load_tensor(out + "/" + m["file"].get<std::string>()).size(0), 400) << m.dump();
    // Whichever run's results they are, every file is that run's: its summary names its inputs, and its
    // attributions and F(x) are those of these inputs.
    const auto inputs = summary["config"]["data"]["inputs"].get<std::string>();
    ASSERT_TRUE(inputs == "x.pt" || inputs == "y.pt") << inputs;
    const auto x = galvani::load_tensor(dir + "/" + inputs);
    const auto hidden = torch::tanh(x * 2.0);
    EXPECT_TRUE(torch::allclose(galvani::load_tensor(out + "/attributions/activation/hidden.pt"), hidden, 1e-5, 1e-6));
    const auto sums = hidden.sum(1);
    EXPECT_TRUE(torch::allclose(galvani::load_tensor(out + "/attributions/activation/head.pt").select(1, 0), sums,
                                1e-4, 1e-5));
    EXPECT_EQ(inputs == "x.pt", summary["f_input"] == f_x);
  }
  EXPECT_GE(killed, 6) << "most runs must have been killed before they finished";
  ASSERT_EQ(galvani_cli("run " + dir + "/x.toml --out " + out + " --quiet").status, 0);
  EXPECT_EQ(entries(parent), std::vector<std::string>{"r"}) << "the killed runs' staging folders are removed";
}

// Broken plugin libraries and unreadable entries on GALVANI_PLUGIN_PATH cost only themselves: the built-in
// plugins keep their names (a plugin registering a taken one is refused, not put in its place), and a run
// with them on the path works.
TEST(Cli, BrokenPluginsOnThePluginPathLeaveRunsWorking) {
  const auto dir = galvani::testing::temp_dir();
  galvani::save_tensor(torch::randn({3, 4}), dir + "/x.pt");
  std::ofstream(dir + "/run.toml") << "[model]\npath = \"" << two_layer_model() << "\"\n[data]\ninputs = \"x.pt\"\n"
                                   << "[[methods]]\nplugin = \"activation\"\nlayers = [\"hidden\"]\n";
  fs::create_directories(dir + "/loops");
  fs::create_symlink(dir + "/loops/b.so", dir + "/loops/a.so");
  fs::create_symlink(dir + "/loops/a.so", dir + "/loops/b.so");
  const std::string path = "GALVANI_PLUGIN_PATH=" GALVANI_TEST_BROKEN_PLUGIN_DIR ":" + dir + "/loops ";
  const auto run = galvani_cli("run " + dir + "/run.toml --out " + dir + "/out --quiet", path);
  EXPECT_EQ(run.status, 0) << run.text;
  EXPECT_TRUE(fs::exists(dir + "/out/attributions/activation/hidden.pt"));
  const auto listing = galvani_cli("plugins", path);
  EXPECT_EQ(listing.status, 1) << listing.text;  // `plugins` exits 1 when it lists refused libraries
  EXPECT_NE(listing.text.find("Too many levels of symbolic links"), std::string::npos) << listing.text;
  EXPECT_NE(listing.text.find("galvani_broken_duplicate_name"), std::string::npos) << listing.text;
}
