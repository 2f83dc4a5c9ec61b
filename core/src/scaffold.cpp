#include "galvani/core/scaffold.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "galvani/error.h"
#include "galvani/tensor_io.h"
#include "galvani_scaffold_templates.h"

namespace fs = std::filesystem;

namespace galvani::core {
namespace {

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

const std::string& template_text(const std::string& file) {
  const auto& all = templates::all();
  auto it = all.find(file);
  if (it == all.end()) throw Error("internal: no scaffold template " + file);
  return it->second;
}

}  // namespace

const std::vector<std::string>& scaffold_kinds() {
  static const std::vector<std::string> kinds{"method", "evaluator", "path", "backend"};
  return kinds;
}

std::string write_plugin_scaffold(const std::string& name, const std::string& kind, const std::string& dir) {
  const auto& kinds = scaffold_kinds();
  if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end())
    throw ConfigError("--kind: \"" + kind + "\" is not one of \"method\", \"evaluator\", \"path\", \"backend\"");
  const bool valid = !name.empty() && std::islower(static_cast<unsigned char>(name[0])) &&
                     std::all_of(name.begin(), name.end(), [](char c) {
                       return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-';
                     });
  if (!valid)
    throw ConfigError("plugin name \"" + name +
                      "\": use lower-case letters, digits and '-', starting with a letter (e.g. \"my-method\")");
  std::string ident = replace_all(name, "-", "_");
  std::string cls;
  bool upper = true;
  for (char c : name) {
    if (c == '-') {
      upper = true;
      continue;
    }
    cls += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  cls += kind == "method" ? "Method" : kind == "evaluator" ? "Evaluator" : kind == "path" ? "Path" : "Backend";

  const fs::path root = fs::path(dir) / name;
  std::error_code ec;
  if (fs::exists(root, ec)) throw IoError("'" + root.string() + "' exists already; choose another name or --dir");
  create_folders((root / "src").string());
  create_folders((root / "tests").string());

  auto fill = [&](std::string text) {
    text = replace_all(text, "@TEST_BODY@", template_text(kind + ".test.in"));
    text = replace_all(text, "@USAGE@", template_text(kind + ".usage.in"));
    text = replace_all(text, "@TARGET@", ident);
    text = replace_all(text, "@IDENT@", ident);
    text = replace_all(text, "@CLASS@", cls);
    text = replace_all(text, "@KIND@", kind);
    return replace_all(text, "@NAME@", name);
  };
  write_file_atomic((root / "CMakeLists.txt").string(), fill(template_text("CMakeLists.txt.in")));
  write_file_atomic((root / "README.md").string(), fill(template_text("README.md.in")));
  write_file_atomic((root / "src" / (ident + ".cpp")).string(), fill(template_text(kind + ".cpp.in")));
  write_file_atomic((root / "tests" / (ident + "_test.cpp")).string(), fill(template_text("test.cpp.in")));
  return root.string();
}

}  // namespace galvani::core
