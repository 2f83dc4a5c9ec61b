#include "galvani/core/registry.h"

#include <sstream>

namespace galvani::core {

const char* to_string(ComponentKind kind) {
  switch (kind) {
    case ComponentKind::Backend: return "backend";
    case ComponentKind::Path: return "path";
    case ComponentKind::Method: return "method";
    case ComponentKind::Evaluator: return "evaluator";
  }
  return "?";
}

void Registry::add(Component component) {
  const auto key = std::make_pair(component.kind, component.name);
  auto it = components_.find(key);
  if (it != components_.end())
    throw Error(std::string(to_string(component.kind)) + " '" + component.name + "' is registered twice: by plugin '" +
                it->second.plugin + "' (" + it->second.file + ") and by plugin '" + component.plugin + "' (" +
                component.file + ")");
  components_.emplace(key, std::move(component));
}

bool Registry::has(ComponentKind kind, const std::string& name) const {
  return components_.count(std::make_pair(kind, name)) != 0;
}

const Component& Registry::get(ComponentKind kind, const std::string& name) const {
  auto it = components_.find(std::make_pair(kind, name));
  if (it != components_.end()) return it->second;
  std::ostringstream msg;
  msg << "unknown " << to_string(kind) << " plugin '" << name << "'";
  const auto valid = names(kind);
  if (valid.empty()) {
    msg << "; no " << to_string(kind) << " plugins are loaded (see `galvani plugins`)";
  } else {
    msg << "; available:";
    for (std::size_t i = 0; i < valid.size(); ++i) msg << (i ? ", " : " ") << valid[i];
  }
  throw ConfigError(msg.str());
}

std::vector<const Component*> Registry::all() const {
  std::vector<const Component*> out;
  for (const auto& [key, c] : components_) out.push_back(&c);
  return out;
}

std::vector<std::string> Registry::names(ComponentKind kind) const {
  std::vector<std::string> out;
  for (const auto& [key, c] : components_)
    if (key.first == kind) out.push_back(key.second);
  return out;
}

StagingRegistrar::StagingRegistrar(std::string plugin, std::string file)
    : plugin_(std::move(plugin)), file_(std::move(file)) {}

Component StagingRegistrar::base(ComponentKind kind, const std::string& name, const std::string& summary) const {
  if (name.empty()) throw Error("plugin '" + plugin_ + "' registered a " + to_string(kind) + " with an empty name");
  Component c;
  c.kind = kind;
  c.name = name;
  c.summary = summary;
  c.plugin = plugin_;
  c.file = file_;
  return c;
}

void StagingRegistrar::add_backend(const std::string& name, const std::string& summary, BackendFactory factory) {
  auto c = base(ComponentKind::Backend, name, summary);
  c.backend = std::move(factory);
  staged_.push_back(std::move(c));
}
void StagingRegistrar::add_path(const std::string& name, const std::string& summary, PathFactory factory) {
  auto c = base(ComponentKind::Path, name, summary);
  c.path = std::move(factory);
  staged_.push_back(std::move(c));
}
void StagingRegistrar::add_method(const std::string& name, const std::string& summary, MethodFactory factory) {
  auto c = base(ComponentKind::Method, name, summary);
  c.method = std::move(factory);
  staged_.push_back(std::move(c));
}
void StagingRegistrar::add_evaluator(const std::string& name, const std::string& summary,
                                     EvaluatorFactory factory) {
  auto c = base(ComponentKind::Evaluator, name, summary);
  c.evaluator = std::move(factory);
  staged_.push_back(std::move(c));
}

void StagingRegistrar::commit(Registry& registry) {
  Registry check;  // duplicates within this plugin
  for (const auto& c : staged_) {
    if (registry.has(c.kind, c.name)) {
      const auto& other = registry.get(c.kind, c.name);
      throw Error(std::string(to_string(c.kind)) + " '" + c.name + "' is registered twice: by plugin '" +
                  other.plugin + "' (" + other.file + ") and by plugin '" + plugin_ + "' (" + file_ + ")");
    }
    check.add(c);
  }
  for (auto& c : staged_) registry.add(std::move(c));
  staged_.clear();
}

}  // namespace galvani::core
