#include <gtest/gtest.h>

#include "galvani/options.h"

using galvani::ConfigError;
using galvani::Options;
using galvani::OptionValue;

namespace {
Options sample() {
  return Options("methods[2]", {{"steps", OptionValue::integer(20)},
                                {"rule", OptionValue::string("gausslegendre")},
                                {"scale", OptionValue::integer(3)},
                                {"layers", OptionValue::list({OptionValue::string("a"), OptionValue::string("b")})},
                                {"flag", OptionValue::boolean(true)}});
}
}  // namespace

TEST(Options, ReadsTypedValuesAndFallbacks) {
  const auto o = sample();
  EXPECT_EQ(o.get_int("steps", 1), 20);
  EXPECT_EQ(o.get_string("rule", ""), "gausslegendre");
  EXPECT_DOUBLE_EQ(o.get_double("scale", 0.0), 3.0);  // integers are accepted as numbers
  EXPECT_EQ(o.get_strings("layers", {}), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(o.get_bool("flag", false));
  EXPECT_EQ(o.get_int("absent", 7), 7);
  EXPECT_NO_THROW(o.check_all_used());
}

TEST(Options, UnknownKeyNamesFullPathAndValidKeys) {
  const auto o = sample();
  o.get_int("steps", 1);
  o.get_string("rule", "");
  o.get_double("scale", 0);
  o.get_strings("layers", {});
  try {
    o.check_all_used();
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("methods[2].flag"), std::string::npos) << msg;
    EXPECT_NE(msg.find("steps"), std::string::npos) << msg;  // valid keys listed
  }
}

TEST(Options, WrongTypeNamesKeyAndType) {
  const auto o = sample();
  try {
    o.get_int("rule", 0);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("methods[2].rule"), std::string::npos) << msg;
    EXPECT_NE(msg.find("integer"), std::string::npos) << msg;
    EXPECT_NE(msg.find("string"), std::string::npos) << msg;
  }
}

TEST(Options, ChoicesAndRanges) {
  const auto o = sample();
  EXPECT_THROW(o.get_choice("rule", "x", {"riemann_left", "riemann_right"}), ConfigError);
  EXPECT_THROW(o.get_int_in("steps", 1, 1, 10), ConfigError);
  EXPECT_EQ(o.get_int_in("steps", 1, 1, 100), 20);
}

TEST(Options, PathsResolveAgainstTheConfigFolder) {
  Options o("evaluators[0]", {{"labels", OptionValue::string("data/labels.pt")},
                              {"abs", OptionValue::string("/tmp/x.pt")},
                              {"up", OptionValue::string("../y.pt")},
                              {"sub", OptionValue::dict({{"file", OptionValue::string("z.pt")}})}});
  EXPECT_EQ(o.get_path("labels", ""), "data/labels.pt");  // no base folder set: as written
  o.set_base_dir("/work/configs");
  EXPECT_EQ(o.get_path("labels", ""), "/work/configs/data/labels.pt");
  EXPECT_EQ(o.get_path("abs", ""), "/tmp/x.pt");
  EXPECT_EQ(o.get_path("up", ""), "/work/y.pt");
  EXPECT_EQ(o.get_path("missing", ""), "");
  EXPECT_EQ(o.table("sub").get_path("file", ""), "/work/configs/z.pt");
  EXPECT_NO_THROW(o.check_all_used());
}
