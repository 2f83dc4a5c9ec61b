#include "galvani/error.h"

namespace galvani {

Error::Error(const std::string& message) : std::runtime_error(message) {}
Error::~Error() = default;
ConfigError::~ConfigError() = default;
ModelError::~ModelError() = default;
ShapeError::~ShapeError() = default;
NumericError::~NumericError() = default;
IoError::~IoError() = default;

PluginError::PluginError(std::string plugin, const std::string& message)
    : Error("plugin '" + plugin + "': " + message), plugin_(std::move(plugin)) {}
PluginError::~PluginError() = default;

}  // namespace galvani
