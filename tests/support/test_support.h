// Helpers shared by the test suites: plugin loading, fixture paths, toy models built in C++.
#pragma once

#include <torch/script.h>

#include <memory>
#include <string>

#include "galvani/core/plugin_host.h"
#include "galvani/model.h"

namespace galvani::testing {

/// A plugin host with the in-tree plugins loaded (once per process).
core::PluginHost& plugins();
/// Loads a model with a registered backend (default torchscript).
std::shared_ptr<Model> load_model(const std::string& path, ModelOptions options = {},
                                  const std::string& backend = "torchscript");
/// Path of a committed small fixture model / data file.
std::string fixture(const std::string& file);
/// Whether the build generates the large (resnet18) fixtures: false only when configured with
/// -DGALVANI_LARGE_FIXTURES=OFF. Tests that need them skip, saying so, only then.
bool large_fixtures_enabled();
/// Path of a build-time generated large fixture. Throws when it does not exist: a test that needs it fails
/// rather than passing without checking (guard it with GALVANI_SKIP_WITHOUT_LARGE_FIXTURES()).
std::string large_fixture(const std::string& file);
/// A fresh temporary folder, removed at process exit.
std::string temp_dir();
/// Copies a PyTorch archive (torch.save / torch.jit.save zip) into the temporary folder with the first data byte
/// of the entry whose name ends with `entry` flipped, as a damaged copy would be; returns the copy's path.
/// Fails the test (throws) when there is no such entry.
std::string damaged_copy(const std::string& file, const std::string& entry);
/// Saves a scripted module built from TorchScript source into a temporary file and returns the path.
/// `submodules` are (name, source of its forward) pairs; each becomes a child module with that forward.
std::string save_script_model(const std::string& name, const std::vector<std::pair<std::string, std::string>>& submodules,
                              const std::string& forward_source);

}  // namespace galvani::testing

/// Skips the current test when the build was configured without the large fixtures, naming the option.
#define GALVANI_SKIP_WITHOUT_LARGE_FIXTURES()                                                                   \
  do {                                                                                                          \
    if (!galvani::testing::large_fixtures_enabled())                                                            \
      GTEST_SKIP() << "built with -DGALVANI_LARGE_FIXTURES=OFF: no resnet18 fixtures";                          \
  } while (false)

#include "galvani/core/execute.h"
#include "galvani/core/plan.h"

namespace galvani::testing {

/// A finished run: its plan and results.
struct Run {
  core::Plan plan;
  core::RunResult result;
  /// The result of `method` at `layer` (fails the test if absent).
  const MethodResult& get(const std::string& method, const std::string& layer) const;
};

/// Parses `toml` (relative paths resolve against `base_dir`), plans and executes it with the in-tree plugins.
Run run_config(const std::string& toml, const std::string& base_dir = ".");

/// The message of the galvani::Error that run_config(toml) throws, or "(no error)".
std::string run_error(const std::string& toml);

/// Saves a tensor into the temporary folder and returns its path.
std::string save_temp_tensor(const torch::Tensor& t, const std::string& name);

}  // namespace galvani::testing
