#include <gtest/gtest.h>

#include "galvani/core/config.h"

using galvani::ConfigError;
using galvani::core::parse_config_string;

namespace {
const char* kMinimal = "[model]\npath = \"m.pt\"\n[data]\ninputs = \"x.pt\"\n";

std::string error_of(const std::string& toml) {
  try {
    parse_config_string(toml, "/base");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Config, DefaultsAndRelativePaths) {
  const auto cfg = parse_config_string(std::string(kMinimal) + "[[methods]]\nplugin = \"conductance\"\nlayers = \"fc\"\n",
                                       "/base");
  EXPECT_EQ(cfg.model.path, "/base/m.pt");
  EXPECT_EQ(cfg.data.inputs, "/base/x.pt");
  EXPECT_EQ(cfg.data.baselines.kind, galvani::core::BaselineSpec::Kind::Zeros);
  EXPECT_EQ(cfg.data.baselines.describe(), "zeros");
  EXPECT_EQ(cfg.data.target.kind, galvani::core::TargetSpec::Kind::Predicted);
  EXPECT_EQ(cfg.data.target.describe(), "predicted");
  EXPECT_EQ(cfg.model.device, torch::Device(torch::kCPU));
  EXPECT_FALSE(cfg.model.dtype.has_value());
  EXPECT_FALSE(cfg.run.double_precision);
  EXPECT_EQ(cfg.model.output, galvani::OutputMode::Logit);
  ASSERT_EQ(cfg.methods.size(), 1u);
  EXPECT_EQ(cfg.methods[0].name, "conductance");
  EXPECT_EQ(cfg.methods[0].layers, std::vector<std::string>{"fc"});
  EXPECT_EQ(cfg.methods[0].steps, 50);
  EXPECT_EQ(cfg.methods[0].path, "straight-line");
}

TEST(Config, UnknownKeysAreErrorsWithTheirPath) {
  EXPECT_NE(error_of(std::string(kMinimal) + "[modle]\nx = 1\n").find("modle"), std::string::npos);
  EXPECT_NE(error_of("[model]\npath = \"m.pt\"\ndevise = \"cpu\"\n[data]\ninputs = \"x.pt\"\n").find("model.devise"),
            std::string::npos);
  const auto run = error_of(std::string(kMinimal) + "[run]\nthreds = 2\n");
  EXPECT_NE(run.find("unknown key run.threds (valid here: precision, shard_size, threads)"), std::string::npos) << run;
  // A key of another table (its header lost) is listed against the table it landed in.
  const auto data = error_of(std::string(kMinimal) + "shard_size = 2\n");
  EXPECT_NE(data.find("unknown key data.shard_size (valid here: baselines, inputs, limit, path_layer, target, vocabulary)"), std::string::npos)
      << data;
}

TEST(Config, SyntaxErrorsCarryLineAndColumn) {
  const auto msg = error_of("[model]\npath = \"m.pt\n");
  EXPECT_NE(msg.find("<string>:2:"), std::string::npos) << msg;
}

TEST(Config, BadValuesNameTheKeyAndTheValidChoices) {
  auto msg = error_of("[model]\npath = \"m.pt\"\noutput = \"softmax\"\n[data]\ninputs = \"x.pt\"\n");
  EXPECT_NE(msg.find("model.output"), std::string::npos) << msg;
  EXPECT_NE(msg.find("probability"), std::string::npos) << msg;
  msg = error_of(std::string(kMinimal) + "[[methods]]\nplugin = \"nig\"\nsteps = 0\n");
  EXPECT_NE(msg.find("methods[0].steps"), std::string::npos) << msg;
  msg = error_of(std::string(kMinimal) + "[[methods]]\nplugin = \"nig\"\nsteps = \"many\"\n");
  EXPECT_NE(msg.find("methods[0].steps: expected an integer or \"auto\", got \"many\""), std::string::npos) << msg;
  msg = error_of(std::string(kMinimal) + "[[methods]]\nplugin = \"nig\"\n[[methods]]\nplugin = \"nig\"\n");
  EXPECT_NE(msg.find("methods[1].name"), std::string::npos) << msg;
  msg = error_of("[data]\ninputs = \"x.pt\"\n");
  EXPECT_NE(msg.find("[model]"), std::string::npos) << msg;
}

TEST(Config, NamesAreFolderNamesAndCollideIgnoringCase) {
  const auto method = [](const std::string& name) {
    return error_of(std::string(kMinimal) + "[[methods]]\nplugin = \"nig\"\nname = \"" + name + "\"\n");
  };
  // Each would have written outside its folder, into another's, or to a name some file systems refuse.
  const std::vector<std::string> bad_names = {"", "a/b", "a\\\\b", "..", ".hidden", "-x", "a b", "a:b",
                                             std::string(65, 'n')};
  for (const auto& bad : bad_names) {
    const auto msg = method(bad);
    EXPECT_NE(msg.find("methods[0].name"), std::string::npos) << bad << ": " << msg;
    EXPECT_NE(msg.find("letters, digits and . _ + -"), std::string::npos) << bad << ": " << msg;
  }
  EXPECT_NE(method("a\\\\b").find("(it holds '\\')"), std::string::npos) << method("a\\\\b");
  const auto ok = parse_config_string(
      std::string(kMinimal) + "[[methods]]\nplugin = \"nig\"\nname = \"nig-2.v1_a+b\"\n", "/base");
  EXPECT_EQ(ok.methods.at(0).name, "nig-2.v1_a+b");

  auto msg = error_of(std::string(kMinimal) + "[[methods]]\nplugin = \"nig\"\nname = \"NIG\"\n[[methods]]\n"
                      "plugin = \"nig\"\n");
  EXPECT_NE(msg.find("methods[1].name: \"nig\" is used by another method"), std::string::npos) << msg;
  msg = error_of(std::string(kMinimal) + "[[evaluators]]\nplugin = \"completeness\"\nname = \"t/x\"\n");
  EXPECT_NE(msg.find("evaluators[0].name"), std::string::npos) << msg;
  msg = error_of(std::string(kMinimal) + "[[evaluators]]\nplugin = \"completeness\"\n[[evaluators]]\n"
                 "plugin = \"completeness\"\nname = \"Completeness\"\n");
  EXPECT_NE(msg.find("evaluators[1].name"), std::string::npos) << msg;
}

TEST(Config, ValuesAreParsedOnceIntoTypes) {
  const auto cfg = parse_config_string(
      "[model]\npath = \"m.pt\"\ndevice = \"cuda:1\"\ndtype = \"float64\"\n[data]\ninputs = \"x.pt\"\n"
      "baselines = \"b.pt\"\ntarget = 3\n[run]\nprecision = \"double\"\n",
      "/base");
  EXPECT_EQ(cfg.model.device, torch::Device(torch::kCUDA, 1));
  EXPECT_EQ(cfg.model.dtype, torch::kDouble);
  EXPECT_EQ(cfg.data.baselines.kind, galvani::core::BaselineSpec::Kind::File);
  EXPECT_EQ(cfg.data.baselines.file, "/base/b.pt");
  EXPECT_EQ(cfg.data.target.kind, galvani::core::TargetSpec::Kind::Class);
  EXPECT_EQ(cfg.data.target.index, 3);
  EXPECT_EQ(cfg.data.target.describe(), "3");
  EXPECT_TRUE(cfg.run.double_precision);
  const auto files = parse_config_string(
      "[model]\npath = \"m.pt\"\n[data]\ninputs = \"x.pt\"\nbaselines = \"mean\"\ntarget = \"labels.pt\"\n", "/base");
  EXPECT_EQ(files.data.baselines.kind, galvani::core::BaselineSpec::Kind::Mean);
  EXPECT_EQ(files.data.target.kind, galvani::core::TargetSpec::Kind::File);
  EXPECT_EQ(files.data.target.file, "/base/labels.pt");
  const auto quoted = parse_config_string(std::string(kMinimal) + "target = \"7\"\n", "/base");
  EXPECT_EQ(quoted.data.target.kind, galvani::core::TargetSpec::Kind::Class);
  EXPECT_EQ(quoted.data.target.index, 7);
}

TEST(Config, DevicesThatCannotBeMeantAreRefused) {
  const auto device = [](const std::string& d) {
    return error_of("[model]\npath = \"m.pt\"\ndevice = \"" + d + "\"\n[data]\ninputs = \"x.pt\"\n");
  };
  auto msg = device("cpu:1");
  EXPECT_NE(msg.find("model.device: \"cpu:1\": the CPU has no device index"), std::string::npos) << msg;
  msg = device("gpu");
  EXPECT_NE(msg.find("model.device: \"gpu\" is not a device; use \"cpu\", \"cuda\" or \"cuda:N\""), std::string::npos)
      << msg;
  msg = device("meta");
  EXPECT_NE(msg.find("model.device: \"meta\" is not supported"), std::string::npos) << msg;
  EXPECT_NE(error_of(std::string(kMinimal) + "baselines = \"\"\n").find("data.baselines: empty"), std::string::npos);
}
