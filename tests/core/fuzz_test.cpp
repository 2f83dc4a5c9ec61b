// Bounded fuzzing: a few hundred mutated configs and tensor files (fixed seed) through planning and execution.
// Every outcome must be a finished run or a galvani::Error with a message; never another exception (what the
// command line reports as an internal error), a crash or a hang.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

#include "galvani/core/config.h"
#include "galvani/tensor_io.h"
#include "test_support.h"

namespace {

struct Outcome {
  int ran = 0, errors = 0;
  std::vector<std::string> internal;  // the case and what escaped
};

void attempt(const std::string& toml, const std::string& base, Outcome& o) {
  try {
    galvani::testing::run_config(toml, base);
    ++o.ran;
  } catch (const galvani::Error& e) {
    ++o.errors;
    if (std::getenv("GALVANI_FUZZ_VERBOSE")) std::cout << "error: " << e.what() << "\n";
    if (std::string(e.what()).empty()) o.internal.push_back(toml + "\n=> an error without a message");
  } catch (const std::exception& e) {
    o.internal.push_back(toml + "\n=> " + e.what());
  } catch (...) {
    o.internal.push_back(toml + "\n=> a non-standard exception");
  }
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

}  // namespace

TEST(Fuzz, MutatedConfigsAndTensorFilesEndInARunOrAClearError) {
  const auto dir = galvani::testing::temp_dir();
  torch::manual_seed(0);
  galvani::save_tensor(torch::rand({4, 1, 8, 8}), dir + "/x.pt");
  galvani::save_tensor(torch::rand({4, 1, 8, 8}) * 0.1, dir + "/b.pt");
  galvani::save_tensor(torch::tensor({0, 1, 2, 1}, torch::kLong), dir + "/t.pt");
  const std::string model = galvani::testing::fixture("tiny_cnn_traced.pt");
  const std::string base_config =
      "[model]\npath = \"" + model + "\"\noutput = \"logit\"\n"
      "[data]\ninputs = \"x.pt\"\nbaselines = \"b.pt\"\ntarget = \"t.pt\"\nlimit = 0\n"
      "[run]\nthreads = 1\nshard_size = 2\nprecision = \"model\"\n"
      "[[methods]]\nplugin = \"conductance\"\nlayers = [\"conv2\"]\nsteps = 4\nrule = \"gausslegendre\"\n"
      "[[methods]]\nplugin = \"nig\"\nlayers = [\"relu1\", \"fc\"]\nsteps = 3\nunit = \"filter\"\n"
      "[[methods]]\nplugin = \"gradient-x-activation\"\nlayers = [\"conv1\"]\n"
      "[[methods]]\nplugin = \"deeplift\"\nlayers = [\"conv2\"]\nnonlinear_rule = \"rescale\"\n"
      "[[evaluators]]\nplugin = \"completeness\"\n";
  {
    Outcome o;
    attempt(base_config, dir, o);
    ASSERT_EQ(o.ran, 1) << (o.internal.empty() ? "the base config fails" : o.internal[0]);
  }

  const std::vector<std::string> values = {
      "-1", "0", "1", "2.5", "1e308", "-1e308", "nan", "inf", "\"\"", "\"x\"", "[]", "[1, 2]", "[\"\"]", "{}",
      "true", "9223372036854775807", "-9223372036854775808", "\"../../x\"", "\"cpu:1\"", "\"cuda\"",
      "\"features.99\"", "\"conv2#7\"", "\"x.pt\"", "\"b.pt\"", "\"t.pt\"", "\"" + model + "\"", "\"zeros\"",
      "\"mean\"", "\"predicted\"", "\"3\"", "\"99\"", "\"filter\"", "\"layer\"", "\"riemann_left\"", "[\"conv1\"]",
      "[\"input\"]", "\"float64\"", "\"double\"", "\"probability\"", "\"reveal-cancel\"", "\"gradient\""};
  std::mt19937 rng(20261202);
  const auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  Outcome o;
  const auto t0 = std::chrono::steady_clock::now();
  constexpr int kConfigs = 1000;
  for (int i = 0; i < kConfigs; ++i) {
    auto lines = lines_of(base_config);
    const int mutations = 1 + static_cast<int>(pick(3));
    for (int m = 0; m < mutations; ++m) {
      const auto at = pick(lines.size());
      switch (pick(6)) {
        case 0:  // a key's value replaced
        case 1:
        case 2: {
          const auto eq = lines[at].find(" = ");
          if (eq != std::string::npos) lines[at] = lines[at].substr(0, eq + 3) + values[pick(values.size())];
          break;
        }
        case 3:  // a line dropped
          lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(at));
          break;
        case 4:  // a line repeated elsewhere
          lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(pick(lines.size() + 1)), lines[at]);
          break;
        case 5: {  // one character changed
          if (lines[at].empty()) break;
          lines[at][pick(lines[at].size())] = " =[]\"#.x0\\"[pick(10)];
          break;
        }
      }
      if (lines.empty()) lines.push_back("");
    }
    attempt(join(lines), dir, o);
  }

  // Tensor files: bytes flipped anywhere, cut short, other contents.
  std::ifstream in(dir + "/x.pt", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (int i = 0; i < 40; ++i) {
    std::string damaged = bytes;
    if (i % 4 == 3) {
      damaged.resize(pick(damaged.size()));
    } else {
      for (int k = 0; k <= i % 3; ++k) damaged[pick(damaged.size())] ^= static_cast<char>(1 + pick(255));
    }
    std::ofstream(dir + "/fuzzed.pt", std::ios::binary | std::ios::trunc) << damaged;
    std::string toml = base_config;
    toml.replace(toml.find("inputs = \"x.pt\""), 15, "inputs = \"fuzzed.pt\"");
    attempt(toml, dir, o);
  }
  for (const auto& contents : {torch::full({4, 1, 8, 8}, std::nan("")), torch::ones({4, 1, 8, 8}, torch::kInt),
                               torch::ones({0, 1, 8, 8}), torch::ones({4, 8, 8}), torch::ones({4, 1, 8, 9}),
                               torch::ones({4, 1, 8, 8}, torch::kBool), torch::ones({1, 1, 8, 8}) * 1e30}) {
    galvani::save_tensor(contents, dir + "/fuzzed.pt");
    std::string toml = base_config;
    toml.replace(toml.find("inputs = \"x.pt\""), 15, "inputs = \"fuzzed.pt\"");
    attempt(toml, dir, o);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  for (const auto& what : o.internal) ADD_FAILURE() << "escaped as an internal error:\n" << what;
  // Not vacuous: the mutations both broke configs and left runnable ones.
  const int total = o.ran + o.errors + static_cast<int>(o.internal.size());
  EXPECT_EQ(total, kConfigs + 47);
  EXPECT_GE(o.ran, 60) << "runs that finished";
  EXPECT_GE(o.errors, 600) << "clear errors";
  EXPECT_LT(seconds, 120.0) << "the fuzz budget";
  std::cout << "fuzz: " << o.ran << " runs, " << o.errors << " clear errors, " << o.internal.size()
            << " internal, in " << seconds << " s\n";
}
