#include "test_support.h"

#include <ftw.h>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <stdexcept>

namespace fs = std::filesystem;

namespace galvani::testing {

core::PluginHost& plugins() {
  static core::PluginHost* host = [] {
    auto* h = new core::PluginHost();
    h->load_directory(GALVANI_TEST_PLUGIN_DIR);
    for (const auto& r : h->records())
      if (!r.loaded) ADD_FAILURE() << "in-tree plugin failed to load: " << r.file << ": " << r.error;
    return h;
  }();
  return *host;
}

std::shared_ptr<Model> load_model(const std::string& path, ModelOptions options, const std::string& backend) {
  const auto& c = plugins().registry().get(core::ComponentKind::Backend, backend);
  auto b = c.backend();
  return b->load(path, options);
}

std::string fixture(const std::string& file) { return std::string(GALVANI_TEST_FIXTURES) + "/" + file; }

bool large_fixtures_enabled() { return GALVANI_TEST_LARGE_FIXTURES_ENABLED != 0; }

std::string large_fixture(const std::string& file) {
  const auto p = std::string(GALVANI_TEST_LARGE_FIXTURES) + "/" + file;
  if (!large_fixtures_enabled())
    throw std::runtime_error("large fixture '" + file + "' asked for in a build configured with -DGALVANI_LARGE_FIXTURES=OFF");
  if (!fs::exists(p))
    throw std::runtime_error("large fixture '" + p + "' is missing: the build generates it (target galvani_large_fixtures)");
  return p;
}

std::string damaged_copy(const std::string& file, const std::string& entry) {
  std::ifstream in(file, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto u16 = [&](std::size_t at) {
    return static_cast<std::size_t>(static_cast<unsigned char>(bytes[at])) |
           static_cast<std::size_t>(static_cast<unsigned char>(bytes[at + 1])) << 8;
  };
  // Local file headers: "PK\3\4", name length at 26, extra length at 28, the name at 30, then extra and data.
  for (std::size_t at = bytes.find("PK\3\4"); at != std::string::npos && at + 30 < bytes.size();
       at = bytes.find("PK\3\4", at + 1)) {
    const std::size_t name_len = u16(at + 26), extra_len = u16(at + 28);
    const std::string name = bytes.substr(at + 30, name_len);
    if (name.size() < entry.size() || name.compare(name.size() - entry.size(), entry.size(), entry) != 0) continue;
    bytes[at + 30 + name_len + extra_len] ^= 0x01;
    const auto out = temp_dir() + "/damaged_" + fs::path(file).filename().string();
    std::ofstream(out, std::ios::binary) << bytes;
    return out;
  }
  throw std::runtime_error("damaged_copy: '" + file + "' has no entry ending in '" + entry + "'");
}

std::string temp_dir() {
  static std::atomic<int> counter{0};
  // Removed when the process exits normally, by a static's destructor, with POSIX calls: linked against
  // PyTorch's libtorch 2.11 (CUDA machine), std::filesystem::remove_all crashed here at exit.
  struct Root {
    fs::path path;
    ~Root() {
      ::nftw(
          path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
          FTW_DEPTH | FTW_PHYS);
    }
  };
  static const Root root{[] {
    auto r = fs::temp_directory_path() / ("galvani-test-" + std::to_string(::getpid()));
    fs::create_directories(r);
    return r;
  }()};
  auto d = root.path / std::to_string(counter++);
  fs::create_directories(d);
  return d.string();
}

std::string save_script_model(const std::string& name, const std::vector<std::pair<std::string, std::string>>& submodules,
                              const std::string& forward_source) {
  torch::jit::Module root("__torch__." + name);
  for (const auto& [child, source] : submodules) {
    torch::jit::Module m("__torch__." + name + "_" + child);
    m.define(source);
    root.register_module(child, m);
  }
  root.define(forward_source);
  const auto path = temp_dir() + "/" + name + ".pt";
  root.save(path);
  return path;
}

}  // namespace galvani::testing

#include "galvani/core/config.h"
#include "galvani/tensor_io.h"

namespace galvani::testing {

const MethodResult& Run::get(const std::string& method, const std::string& layer) const {
  for (const auto& r : result.results)
    if (r.method == method && r.layer == layer) return r;
  throw std::runtime_error("no result for method '" + method + "' at layer '" + layer + "'");
}

std::string run_error(const std::string& toml) {
  try {
    run_config(toml);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

Run run_config(const std::string& toml, const std::string& base_dir) {
  auto cfg = core::parse_config_string(toml, base_dir);
  core::Timings planning;
  Run run{core::make_plan(cfg, plugins(), &planning), {}};
  run.result = core::execute(run.plan);
  run.result.timings.insert(planning.begin(), planning.end());
  return run;
}

std::string save_temp_tensor(const torch::Tensor& t, const std::string& name) {
  const auto path = temp_dir() + "/" + name;
  save_tensor(t, path);
  return path;
}

}  // namespace galvani::testing
