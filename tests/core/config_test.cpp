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
  EXPECT_EQ(cfg.data.baselines, "zeros");
  EXPECT_EQ(cfg.data.target, "predicted");
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
  EXPECT_NE(error_of(std::string(kMinimal) + "[run]\nthreds = 2\n").find("run.threds"), std::string::npos);
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
  EXPECT_NE(msg.find("methods[0].steps: expected an integer, got string"), std::string::npos) << msg;
  msg = error_of(std::string(kMinimal) + "[[methods]]\nplugin = \"nig\"\n[[methods]]\nplugin = \"nig\"\n");
  EXPECT_NE(msg.find("methods[1].name"), std::string::npos) << msg;
  msg = error_of("[data]\ninputs = \"x.pt\"\n");
  EXPECT_NE(msg.find("[model]"), std::string::npos) << msg;
}
