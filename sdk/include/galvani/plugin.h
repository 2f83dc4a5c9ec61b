// The plugin entry point: what a plugin library exports and how it registers its components.
#pragma once

#include <torch/version.h>

#include <boost/config.hpp>
#include <boost/dll/alias.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "galvani/error.h"
#include "galvani/evaluator.h"
#include "galvani/method.h"
#include "galvani/model.h"
#include "galvani/options.h"
#include "galvani/path.h"
#include "galvani/version.h"

namespace galvani {

/// Bumped whenever PluginInfo, Registrar or an interface changes incompatibly. A macro so that the build
/// fingerprint can spell it; kPluginAbiVersion is the same number.
#define GALVANI_PLUGIN_ABI 6
inline constexpr std::uint32_t kPluginAbiVersion = GALVANI_PLUGIN_ABI;

#define GALVANI_STR_(x) #x
#define GALVANI_STR(x) GALVANI_STR_(x)
#if defined(__clang__)
#define GALVANI_COMPILER_ID "clang-" GALVANI_STR(__clang_major__)
#elif defined(__GNUC__)
#define GALVANI_COMPILER_ID "gcc-" GALVANI_STR(__GNUC__)
#else
#define GALVANI_COMPILER_ID "unknown"
#endif
#if defined(GALVANI_WITH_CUDA)
#define GALVANI_CUDA_ID "1"
#else
#define GALVANI_CUDA_ID "0"
#endif

/// Everything that must match between the host and a plugin for C++ objects to cross between them:
/// SDK version and ABI, the C++ library ABI, libtorch's version and whether it was built for CUDA.
/// The compiler is recorded for the message; GCC and Clang on libstdc++ are interchangeable.
#define GALVANI_BUILD_FINGERPRINT                                                                    \
  "sdk=" GALVANI_VERSION_STRING ";abi=" GALVANI_STR(GALVANI_PLUGIN_ABI) ";cxx11abi=" GALVANI_STR(    \
      _GLIBCXX_USE_CXX11_ABI) ";torch=" TORCH_VERSION ";cuda=" GALVANI_CUDA_ID                       \
                              ";compiler=" GALVANI_COMPILER_ID

/// The host's own fingerprint (the SDK library's build), to compare a plugin's with.
GALVANI_API const char* build_fingerprint();
/// The fields of two fingerprints that differ ("torch: 1.13.0 here, 2.4.0 in the plugin; ..."); empty if
/// compatible. The compiler field is informational and never makes fingerprints incompatible.
GALVANI_API std::string fingerprint_mismatch(const std::string& host, const std::string& plugin);

using BackendFactory = std::function<std::unique_ptr<ModelBackend>()>;
using PathFactory = std::function<std::unique_ptr<PathGenerator>(const Options&)>;
using MethodFactory = std::function<std::unique_ptr<Method>(const Options&)>;
using EvaluatorFactory = std::function<std::unique_ptr<Evaluator>(const Options&)>;

/// Handed to a plugin's registration function; a plugin may register any number of components of each kind,
/// each under a name unique across all loaded plugins. Factories are called by the host, possibly later and
/// from another thread; they read their options (unknown keys are rejected after they return).
class GALVANI_API Registrar {
 public:
  virtual ~Registrar();
  virtual void add_backend(const std::string& name, const std::string& summary, BackendFactory factory) = 0;
  virtual void add_path(const std::string& name, const std::string& summary, PathFactory factory) = 0;
  virtual void add_method(const std::string& name, const std::string& summary, MethodFactory factory) = 0;
  virtual void add_evaluator(const std::string& name, const std::string& summary, EvaluatorFactory factory) = 0;
};

/// What a plugin library exports. The first five fields never change, whatever kPluginAbiVersion becomes,
/// so that any host can read them and refuse a plugin it cannot use.
struct PluginInfo {
  std::uint32_t abi_version;
  std::uint32_t struct_size;
  const char* name;
  const char* version;
  const char* fingerprint;
  void (*register_components)(Registrar&);
};

/// The exported symbol name.
inline constexpr const char* kPluginEntrySymbol = "galvani_plugin_v1";

}  // namespace galvani

/// Declares a plugin library. Use once per library, at namespace scope:
///   GALVANI_PLUGIN("my-methods", "1.0.0", [](galvani::Registrar& r) { r.add_method(...); })
/// The host loads the library, checks the ABI version and build fingerprint, then calls the function.
#define GALVANI_PLUGIN(NAME, VERSION, REGISTER)                                                         \
  namespace {                                                                                           \
  void galvani_plugin_register_(::galvani::Registrar& registrar) { (REGISTER)(registrar); }            \
  const ::galvani::PluginInfo* galvani_plugin_entry_() {                                                \
    static const ::galvani::PluginInfo info{::galvani::kPluginAbiVersion, sizeof(::galvani::PluginInfo), \
                                            NAME, VERSION, GALVANI_BUILD_FINGERPRINT,                  \
                                            &galvani_plugin_register_};                                \
    return &info;                                                                                       \
  }                                                                                                     \
  }                                                                                                     \
  BOOST_DLL_ALIAS(galvani_plugin_entry_, galvani_plugin_v1)
