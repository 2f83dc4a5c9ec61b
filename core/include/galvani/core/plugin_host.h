// The plugin host: loads plugin libraries with Boost.DLL, checks them, and keeps them loaded for good.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "galvani/core/registry.h"

namespace galvani::core {

/// What happened to one library file.
struct PluginRecord {
  std::string file;
  std::string name;     ///< from the plugin's info; empty if it could not be read
  std::string version;
  bool loaded = false;
  std::string error;    ///< why it was refused
  std::vector<std::string> components;  ///< "method conductance", ...
};

/// Loads plugins. Libraries are opened `rtld_now | rtld_local` and never closed: objects, exceptions and
/// std::functions made by plugin code may live until the process ends. A library that fails to load, has
/// no entry symbol, has another ABI or fingerprint, or throws during registration is refused with a
/// message and leaves the registry as it was.
class PluginHost {
 public:
  PluginHost();
  ~PluginHost();
  PluginHost(const PluginHost&) = delete;
  PluginHost& operator=(const PluginHost&) = delete;

  /// Loads one library; returns its record (also kept in records()). Never throws for a bad library.
  const PluginRecord& load_file(const std::string& file);
  /// Loads every `*.so` in a folder (sorted by name); a missing folder is recorded as an error.
  void load_directory(const std::string& dir);
  /// The default search path: the built-in plugin folder, then GALVANI_PLUGIN_PATH (':'-separated).
  /// `builtin`: that folder when the caller knows it (the Python module, which is not an executable beside its
  /// plugins); empty: found from the executable's location.
  void load_default(const std::string& builtin = {});
  /// The folders of the default search path: the host's own plugins (`builtin`, or next to the executable, or the
  /// build folder), then GALVANI_PLUGIN_PATH's.
  static std::vector<std::string> default_directories(const std::string& builtin = {});

  const Registry& registry() const { return registry_; }
  const std::vector<PluginRecord>& records() const { return records_; }
  /// Throws Error if any library given explicitly failed (used when a config lists plugin paths).
  void require_loaded(const std::string& file) const;

 private:
  struct Library;
  Registry registry_;
  std::vector<PluginRecord> records_;
  std::vector<std::unique_ptr<Library>> libraries_;
};

/// The process-wide host: constructed on first use, never destroyed (plugins stay loaded to the end).
PluginHost& global_plugin_host();

}  // namespace galvani::core
