#include "galvani/core/plugin_host.h"

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#ifndef GALVANI_BUILD_PLUGIN_DIR
#define GALVANI_BUILD_PLUGIN_DIR ""
#endif
#ifndef GALVANI_INSTALL_PLUGIN_DIR
#define GALVANI_INSTALL_PLUGIN_DIR "lib/galvani/plugins"
#endif

namespace fs = std::filesystem;

namespace galvani::core {

struct PluginHost::Library {
  boost::dll::shared_library library;
};

PluginHost::PluginHost() = default;

PluginHost::~PluginHost() {
  // Never unload: objects, exceptions and std::functions created by plugin code may still be alive anywhere
  // in the process, and their code must stay mapped until it ends.
  for (auto& lib : libraries_) (void)lib.release();
}

const PluginRecord& PluginHost::load_file(const std::string& file) {
  PluginRecord record;
  record.file = file;
  auto fail = [&](const std::string& why) -> const PluginRecord& {
    record.error = why;
    records_.push_back(record);
    return records_.back();
  };

  auto lib = std::make_unique<Library>();
  try {
    lib->library.load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    return fail(std::string("cannot load the library: ") + e.what());
  }
  if (!lib->library.has(kPluginEntrySymbol))
    return fail(std::string("not a Galvani plugin: it exports no '") + kPluginEntrySymbol +
                "' entry (declare one with GALVANI_PLUGIN(...))");
  const PluginInfo* info = nullptr;
  try {
    auto entry = lib->library.get_alias<const PluginInfo*()>(kPluginEntrySymbol);
    info = entry();
  } catch (const std::exception& e) {
    return fail(std::string("its entry point failed: ") + e.what());
  }
  if (info == nullptr) return fail("its entry point returned no plugin information");
  record.name = info->name ? info->name : "";
  record.version = info->version ? info->version : "";
  if (info->abi_version != kPluginAbiVersion)
    return fail("plugin ABI version " + std::to_string(info->abi_version) + ", but this host speaks version " +
                std::to_string(kPluginAbiVersion) + "; rebuild the plugin against this SDK (" +
                GALVANI_VERSION_STRING + ")");
  if (info->struct_size < sizeof(PluginInfo))
    return fail("its plugin information is truncated (" + std::to_string(info->struct_size) + " bytes, expected " +
                std::to_string(sizeof(PluginInfo)) + "); rebuild the plugin against this SDK");
  const std::string fingerprint = info->fingerprint ? info->fingerprint : "";
  const std::string mismatch = fingerprint_mismatch(build_fingerprint(), fingerprint);
  if (!mismatch.empty())
    return fail("built for another SDK or ABI (" + mismatch + "); host: " + build_fingerprint() +
                "; plugin: " + fingerprint + "; rebuild the plugin against this SDK");
  if (record.name.empty()) return fail("the plugin has no name");
  if (info->register_components == nullptr) return fail("the plugin has no registration function");
  for (const auto& other : records_)
    if (other.loaded && other.name == record.name)
      return fail("a plugin named '" + record.name + "' is loaded already from " + other.file);

  StagingRegistrar staging(record.name, file);
  try {
    info->register_components(staging);
    staging.commit(registry_);
  } catch (const std::exception& e) {
    return fail(std::string("registration failed: ") + e.what());
  } catch (...) {
    return fail("registration failed with an unknown exception");
  }
  for (const auto* c : registry_.all())
    if (c->plugin == record.name) record.components.push_back(std::string(to_string(c->kind)) + " " + c->name);
  record.loaded = true;
  libraries_.push_back(std::move(lib));
  records_.push_back(record);
  return records_.back();
}

void PluginHost::load_directory(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    PluginRecord record;
    record.file = dir;
    record.error = "plugin folder does not exist";
    records_.push_back(record);
    return;
  }
  // Without exceptions: an entry that cannot be followed (a symbolic-link loop, a dangling link, no permission)
  // is recorded with its reason and the rest of the folder still loads.
  std::vector<std::string> files;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const auto& entry = *it;
    if (entry.path().extension() != ".so") continue;
    std::error_code entry_ec;
    if (entry.is_regular_file(entry_ec)) {
      files.push_back(entry.path().string());
    } else if (entry_ec) {
      PluginRecord record;
      record.file = entry.path().string();
      record.error = "cannot be read: " + entry_ec.message();
      records_.push_back(record);
    }
  }
  if (ec) {
    PluginRecord record;
    record.file = dir;
    record.error = "plugin folder cannot be listed: " + ec.message();
    records_.push_back(record);
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) load_file(f);
}

std::vector<std::string> PluginHost::default_directories(const std::string& builtin) {
  // The built-in plugins first: they keep their names, and a plugin on GALVANI_PLUGIN_PATH that registers a
  // taken name is refused as a duplicate instead of replacing a built-in.
  std::vector<std::string> dirs;
  std::error_code ec;
  const fs::path exe_dir = boost::dll::program_location().parent_path().string();
  const fs::path installed = exe_dir / ".." / GALVANI_INSTALL_PLUGIN_DIR;
  const fs::path beside = exe_dir / "plugins";
  if (!builtin.empty()) {
    dirs.push_back(builtin);
  } else if (fs::is_directory(beside, ec)) {
    dirs.push_back(fs::weakly_canonical(beside, ec).string());
  } else if (fs::is_directory(installed, ec)) {
    dirs.push_back(fs::weakly_canonical(installed, ec).string());
  } else if (std::string(GALVANI_BUILD_PLUGIN_DIR).size() && fs::is_directory(GALVANI_BUILD_PLUGIN_DIR, ec)) {
    dirs.push_back(GALVANI_BUILD_PLUGIN_DIR);
  }
  if (const char* env = std::getenv("GALVANI_PLUGIN_PATH")) {
    std::stringstream in(env);
    for (std::string d; std::getline(in, d, ':');)
      if (!d.empty()) dirs.push_back(d);
  }
  return dirs;
}

void PluginHost::load_default(const std::string& builtin) {
  for (const auto& d : default_directories(builtin)) {
    bool seen = false;
    for (const auto& r : records_) seen |= fs::path(r.file).parent_path() == fs::path(d);
    if (!seen) load_directory(d);
  }
}

void PluginHost::require_loaded(const std::string& file) const {
  for (const auto& r : records_)
    if (r.file == file && !r.loaded) throw Error("plugin " + file + " was not loaded: " + r.error);
}

PluginHost& global_plugin_host() {
  static PluginHost* host = new PluginHost();  // never destroyed: plugins stay loaded to the end
  return *host;
}

}  // namespace galvani::core
