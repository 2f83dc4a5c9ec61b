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

/// `made` itself, or PluginError naming `plugin` when a factory of it returned nothing (a null pointer would
/// otherwise crash the host at its first use).
template <typename Ptr>
Ptr non_null(const std::string& plugin, const std::string& what, Ptr made) {
  if (!made) throw PluginError(plugin, what + " returned nothing (a null pointer): a bug in the plugin");
  return made;
}

}  // namespace galvani::core
