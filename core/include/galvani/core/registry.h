// The registry: every component that loaded plugins registered, by kind and name.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "galvani/plugin.h"

namespace galvani::core {

enum class ComponentKind { Backend, Path, Method, Evaluator };
const char* to_string(ComponentKind kind);

struct Component {
  ComponentKind kind;
  std::string name;
  std::string summary;
  std::string plugin;  ///< the plugin library's name
  std::string file;    ///< the library file
  BackendFactory backend;
  PathFactory path;
  MethodFactory method;
  EvaluatorFactory evaluator;
};

/// Holds components. Registration of a name that exists already (in any plugin) is refused with an error
/// naming both libraries. Lookups of unknown names list the registered ones.
class Registry {
 public:
  void add(Component component);
  const Component& get(ComponentKind kind, const std::string& name) const;
  bool has(ComponentKind kind, const std::string& name) const;
  std::vector<const Component*> all() const;
  std::vector<std::string> names(ComponentKind kind) const;

 private:
  std::map<std::pair<ComponentKind, std::string>, Component> components_;
};

/// Collects one plugin's registrations; commits them to the registry only if the whole registration
/// succeeded, so a plugin that throws half-way leaves nothing behind.
class StagingRegistrar : public Registrar {
 public:
  StagingRegistrar(std::string plugin, std::string file);
  void add_backend(const std::string& name, const std::string& summary, BackendFactory factory) override;
  void add_path(const std::string& name, const std::string& summary, PathFactory factory) override;
  void add_method(const std::string& name, const std::string& summary, MethodFactory factory) override;
  void add_evaluator(const std::string& name, const std::string& summary, EvaluatorFactory factory) override;
  /// Checks for duplicates against `registry` and within the plugin, then adds everything.
  void commit(Registry& registry);

 private:
  Component base(ComponentKind kind, const std::string& name, const std::string& summary) const;
  std::string plugin_, file_;
  std::vector<Component> staged_;
};

}  // namespace galvani::core
