// The one way the host calls into plugin code: whatever escapes comes back as a PluginError naming the plugin.
#pragma once

#include <exception>
#include <string>

#include "galvani/error.h"

namespace galvani::core {

/// Runs `fn`, turning any exception other than a Galvani error into PluginError naming `plugin`,
/// and Galvani errors into PluginError too so the message names where it came from.
template <typename Fn>
auto call_plugin(const std::string& plugin, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const PluginError&) {
    throw;
  } catch (const std::exception& e) {
    throw PluginError(plugin, e.what());
  } catch (...) {
    throw PluginError(plugin, "unknown exception");
  }
}

}  // namespace galvani::core
