// Error types of the SDK: every failure a user can cause is one of these, with a message they can act on.
#pragma once

#include <stdexcept>
#include <string>

#define GALVANI_API __attribute__((visibility("default")))

namespace galvani {

/// Base of every error Galvani raises on purpose.
class GALVANI_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message);
  ~Error() override;
};

/// A configuration value is missing, unknown, of the wrong type or out of range.
class GALVANI_API ConfigError : public Error {
 public:
  using Error::Error;
  ~ConfigError() override;
};

/// A model cannot be loaded, has no such layer, or cannot be tapped.
class GALVANI_API ModelError : public Error {
 public:
  using Error::Error;
  ~ModelError() override;
};

/// Tensors whose shapes, dtypes or devices do not fit together.
class GALVANI_API ShapeError : public Error {
 public:
  using Error::Error;
  ~ShapeError() override;
};

/// Non-finite values (NaN, inf) where finite numbers are required.
class GALVANI_API NumericError : public Error {
 public:
  using Error::Error;
  ~NumericError() override;
};

/// Reading or writing a file failed.
class GALVANI_API IoError : public Error {
 public:
  using Error::Error;
  ~IoError() override;
};

/// Something inside a plugin failed; carries the plugin's name and its message (never its exception object).
class GALVANI_API PluginError : public Error {
 public:
  PluginError(std::string plugin, const std::string& message);
  ~PluginError() override;
  const std::string& plugin() const noexcept { return plugin_; }

 private:
  std::string plugin_;
};

}  // namespace galvani
