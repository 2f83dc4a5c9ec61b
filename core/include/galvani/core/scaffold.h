// `galvani new-plugin`: writes a buildable out-of-tree plugin project.
#pragma once

#include <string>
#include <vector>

namespace galvani::core {

/// The kinds a scaffold can be made for: "method", "evaluator", "path", "backend".
const std::vector<std::string>& scaffold_kinds();

/// Writes `dir/name/` with CMakeLists.txt (find_package(Galvani), galvani_add_plugin), src/<ident>.cpp (a
/// working implementation with a comment at each decision), tests/<ident>_test.cpp (GoogleTest that loads the
/// built plugin) and README.md. `name` is lower-case letters, digits and '-'. Refuses to overwrite an existing
/// folder. Returns the folder written.
std::string write_plugin_scaffold(const std::string& name, const std::string& kind, const std::string& dir);

}  // namespace galvani::core
