#include <gtest/gtest.h>

#include "galvani/core/plugin_host.h"
#include "test_support.h"

using galvani::core::ComponentKind;
using galvani::core::PluginHost;

namespace {
std::string broken(const std::string& kind) {
  return std::string(GALVANI_TEST_BROKEN_PLUGIN_DIR) + "/libgalvani_broken_" + kind + ".so";
}

// A host with the in-tree plugins, then one broken library; returns the broken library's record.
galvani::core::PluginRecord load_broken(PluginHost& host, const std::string& kind) {
  host.load_directory(GALVANI_TEST_PLUGIN_DIR);
  return host.load_file(broken(kind));
}

void expect_host_still_works(const PluginHost& host) {
  EXPECT_TRUE(host.registry().has(ComponentKind::Backend, "torchscript"));
  EXPECT_TRUE(host.registry().has(ComponentKind::Method, "conductance"));
  const auto& c = host.registry().get(ComponentKind::Path, "straight-line");
  auto path = c.path(galvani::Options());
  EXPECT_EQ(path->quadrature(4).alphas.size(), 4u);
}
}  // namespace

TEST(PluginHost, LoadsEveryInTreePlugin) {
  PluginHost host;
  host.load_directory(GALVANI_TEST_PLUGIN_DIR);
  for (const auto& r : host.records()) EXPECT_TRUE(r.loaded) << r.file << ": " << r.error;
  for (const char* m : {"conductance", "nig", "internal-influence", "activation", "gradient-x-activation",
                        "gradient-x-delta"})
    EXPECT_TRUE(host.registry().has(ComponentKind::Method, m)) << m;
  EXPECT_TRUE(host.registry().has(ComponentKind::Path, "interior-gradient"));
}

TEST(PluginHost, RefusesWrongAbiVersion) {
  PluginHost host;
  const auto r = load_broken(host, "wrong_abi");
  EXPECT_FALSE(r.loaded);
  EXPECT_NE(r.error.find("ABI version 99"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("rebuild"), std::string::npos) << r.error;
  expect_host_still_works(host);
}

TEST(PluginHost, RefusesForeignFingerprintNamingBothSides) {
  PluginHost host;
  const auto r = load_broken(host, "wrong_fingerprint");
  EXPECT_FALSE(r.loaded);
  EXPECT_NE(r.error.find("torch: " TORCH_VERSION " in the host, 0.4.0 in the plugin"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("cxx11abi"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("rebuild the plugin against this SDK"), std::string::npos) << r.error;
  expect_host_still_works(host);
}

TEST(PluginHost, ThrowingRegistrationLeavesNothingBehind) {
  PluginHost host;
  const auto r = load_broken(host, "throwing_registration");
  EXPECT_FALSE(r.loaded);
  EXPECT_NE(r.error.find("registration exploded on purpose"), std::string::npos) << r.error;
  EXPECT_FALSE(host.registry().has(ComponentKind::Evaluator, "half-registered"));
  expect_host_still_works(host);
}

TEST(PluginHost, DuplicateComponentNameNamesBothLibraries) {
  PluginHost host;
  const auto r = load_broken(host, "duplicate_name");
  EXPECT_FALSE(r.loaded);
  EXPECT_NE(r.error.find("'torchscript' is registered twice"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("libgalvani_torchscript.so"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("libgalvani_broken_duplicate_name.so"), std::string::npos) << r.error;
  expect_host_still_works(host);
}

TEST(PluginHost, MissingEntrySymbolIsExplained) {
  PluginHost host;
  const auto r = load_broken(host, "no_entry");
  EXPECT_FALSE(r.loaded);
  EXPECT_NE(r.error.find("galvani_plugin_v1"), std::string::npos) << r.error;
  expect_host_still_works(host);
}

TEST(PluginHost, UnloadableFileAndUnknownComponentAreClearErrors) {
  PluginHost host;
  host.load_directory(GALVANI_TEST_PLUGIN_DIR);
  const auto r = host.load_file("/nonexistent/libnothing.so");
  EXPECT_FALSE(r.loaded);
  EXPECT_NE(r.error.find("cannot load"), std::string::npos) << r.error;
  try {
    host.registry().get(ComponentKind::Method, "condutance");
    FAIL();
  } catch (const galvani::ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("unknown method plugin 'condutance'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("conductance"), std::string::npos) << msg;
  }
}
