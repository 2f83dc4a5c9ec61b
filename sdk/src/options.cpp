#include "galvani/options.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

namespace galvani {

OptionValue OptionValue::boolean(bool v) {
  OptionValue o;
  o.kind = Kind::Bool;
  o.b = v;
  return o;
}
OptionValue OptionValue::integer(std::int64_t v) {
  OptionValue o;
  o.kind = Kind::Int;
  o.i = v;
  return o;
}
OptionValue OptionValue::floating(double v) {
  OptionValue o;
  o.kind = Kind::Float;
  o.f = v;
  return o;
}
OptionValue OptionValue::string(std::string v) {
  OptionValue o;
  o.kind = Kind::String;
  o.s = std::move(v);
  return o;
}
OptionValue OptionValue::list(std::vector<OptionValue> v) {
  OptionValue o;
  o.kind = Kind::Array;
  o.array = std::move(v);
  return o;
}
OptionValue OptionValue::dict(std::map<std::string, OptionValue> v) {
  OptionValue o;
  o.kind = Kind::Table;
  o.table = std::move(v);
  return o;
}

const char* OptionValue::kind_name() const {
  switch (kind) {
    case Kind::Bool: return "boolean";
    case Kind::Int: return "integer";
    case Kind::Float: return "float";
    case Kind::String: return "string";
    case Kind::Array: return "array";
    case Kind::Table: return "table";
  }
  return "?";
}

std::string OptionValue::repr() const {
  std::ostringstream out;
  switch (kind) {
    case Kind::Bool: out << (b ? "true" : "false"); break;
    case Kind::Int: out << i; break;
    case Kind::Float: out << f; break;
    case Kind::String: out << '"' << s << '"'; break;
    case Kind::Array:
      out << '[';
      for (std::size_t k = 0; k < array.size(); ++k) out << (k ? ", " : "") << array[k].repr();
      out << ']';
      break;
    case Kind::Table: {
      out << '{';
      bool first = true;
      for (const auto& [key, v] : table) {
        out << (first ? "" : ", ") << key << " = " << v.repr();
        first = false;
      }
      out << '}';
      break;
    }
  }
  return out.str();
}

Options::Options() : Options("", {}) {}

Options::Options(std::string path, std::map<std::string, OptionValue> table)
    : path_(std::move(path)),
      table_(std::move(table)),
      used_(std::make_shared<std::set<std::string>>()),
      known_(std::make_shared<std::set<std::string>>()),
      children_(std::make_shared<std::vector<Options>>()) {}

std::string Options::key_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

bool Options::has(const std::string& key) const { return table_.count(key) != 0; }

void Options::mark_used(const std::string& key) const {
  known_->insert(key);
  used_->insert(key);
}

const OptionValue* Options::find(const std::string& key, OptionValue::Kind kind) const {
  known_->insert(key);
  auto it = table_.find(key);
  if (it == table_.end()) return nullptr;
  used_->insert(key);
  const OptionValue& v = it->second;
  if (v.kind == kind) return &v;
  if (kind == OptionValue::Kind::Float && v.kind == OptionValue::Kind::Int) return &v;
  const char* expected = "?";
  switch (kind) {
    case OptionValue::Kind::Bool: expected = "a boolean (true or false)"; break;
    case OptionValue::Kind::Int: expected = "an integer"; break;
    case OptionValue::Kind::Float: expected = "a number"; break;
    case OptionValue::Kind::String: expected = "a string"; break;
    case OptionValue::Kind::Array: expected = "an array"; break;
    case OptionValue::Kind::Table: expected = "a table"; break;
  }
  type_error(key, expected, v);
}

void Options::type_error(const std::string& key, const char* expected, const OptionValue& got) const {
  throw ConfigError(key_path(key) + ": expected " + expected + ", got " + got.kind_name() + " " + got.repr());
}

bool Options::get_bool(const std::string& key, bool fallback) const {
  const OptionValue* v = find(key, OptionValue::Kind::Bool);
  return v ? v->b : fallback;
}

std::int64_t Options::get_int(const std::string& key, std::int64_t fallback) const {
  const OptionValue* v = find(key, OptionValue::Kind::Int);
  return v ? v->i : fallback;
}

double Options::get_double(const std::string& key, double fallback) const {
  const OptionValue* v = find(key, OptionValue::Kind::Float);
  if (!v) return fallback;
  return v->kind == OptionValue::Kind::Int ? static_cast<double>(v->i) : v->f;
}

std::string Options::get_string(const std::string& key, const std::string& fallback) const {
  const OptionValue* v = find(key, OptionValue::Kind::String);
  return v ? v->s : fallback;
}

std::string Options::get_choice(const std::string& key, const std::string& fallback,
                                const std::vector<std::string>& allowed) const {
  std::string v = get_string(key, fallback);
  if (std::find(allowed.begin(), allowed.end(), v) != allowed.end()) return v;
  std::ostringstream msg;
  msg << key_path(key) << ": \"" << v << "\" is not one of";
  for (std::size_t k = 0; k < allowed.size(); ++k) msg << (k ? ", " : " ") << '"' << allowed[k] << '"';
  throw ConfigError(msg.str());
}

std::int64_t Options::get_int_in(const std::string& key, std::int64_t fallback, std::int64_t lo,
                                 std::int64_t hi) const {
  std::int64_t v = get_int(key, fallback);
  if (v < lo || v > hi)
    throw ConfigError(key_path(key) + ": " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "]");
  return v;
}

double Options::get_double_in(const std::string& key, double fallback, double lo, double hi) const {
  double v = get_double(key, fallback);
  if (!(v >= lo && v <= hi)) {
    std::ostringstream msg;
    msg << key_path(key) << ": " << v << " is out of range [" << lo << ", " << hi << "]";
    throw ConfigError(msg.str());
  }
  return v;
}

std::vector<std::string> Options::get_strings(const std::string& key, const std::vector<std::string>& fallback) const {
  known_->insert(key);
  auto it = table_.find(key);
  if (it == table_.end()) return fallback;
  used_->insert(key);
  if (it->second.kind == OptionValue::Kind::String) return {it->second.s};
  if (it->second.kind != OptionValue::Kind::Array) type_error(key, "an array of strings", it->second);
  std::vector<std::string> out;
  for (std::size_t k = 0; k < it->second.array.size(); ++k) {
    const auto& e = it->second.array[k];
    if (e.kind != OptionValue::Kind::String) type_error(key + "[" + std::to_string(k) + "]", "a string", e);
    out.push_back(e.s);
  }
  return out;
}

std::vector<std::int64_t> Options::get_ints(const std::string& key, const std::vector<std::int64_t>& fallback) const {
  known_->insert(key);
  auto it = table_.find(key);
  if (it == table_.end()) return fallback;
  used_->insert(key);
  if (it->second.kind == OptionValue::Kind::Int) return {it->second.i};
  if (it->second.kind != OptionValue::Kind::Array) type_error(key, "an array of integers", it->second);
  std::vector<std::int64_t> out;
  for (std::size_t k = 0; k < it->second.array.size(); ++k) {
    const auto& e = it->second.array[k];
    if (e.kind != OptionValue::Kind::Int) type_error(key + "[" + std::to_string(k) + "]", "an integer", e);
    out.push_back(e.i);
  }
  return out;
}

std::optional<OptionValue> Options::get_raw(const std::string& key) const {
  known_->insert(key);
  auto it = table_.find(key);
  if (it == table_.end()) return std::nullopt;
  used_->insert(key);
  return it->second;
}

std::string Options::get_path(const std::string& key, const std::string& fallback) const {
  const auto value = get_string(key, fallback);
  if (value.empty() || base_dir_.empty()) return value;
  const std::filesystem::path p(value);
  return p.is_absolute() ? value : (std::filesystem::path(base_dir_) / p).lexically_normal().string();
}

void Options::set_base_dir(std::string dir) { base_dir_ = std::move(dir); }

Options Options::table(const std::string& key) const {
  const OptionValue* v = find(key, OptionValue::Kind::Table);
  Options sub(key_path(key), v ? v->table : std::map<std::string, OptionValue>{});
  sub.base_dir_ = base_dir_;
  children_->push_back(sub);
  return sub;
}

std::vector<std::string> Options::own_unused() const {
  std::vector<std::string> out;
  for (const auto& [key, value] : table_)
    if (!used_->count(key)) out.push_back(key_path(key));
  return out;
}

std::vector<std::string> Options::unused() const {
  std::vector<std::string> out = own_unused();
  for (const auto& child : *children_)
    for (auto& k : child.unused()) out.push_back(std::move(k));
  return out;
}

void Options::check_all_used() const {
  // This table's own keys first, against its own valid keys; then each sub-table against its own.
  const auto bad = own_unused();
  if (bad.empty()) {
    for (const auto& child : *children_) child.check_all_used();
    return;
  }
  std::ostringstream msg;
  msg << (bad.size() == 1 ? "unknown key " : "unknown keys ");
  for (std::size_t k = 0; k < bad.size(); ++k) msg << (k ? ", " : "") << bad[k];
  std::vector<std::string> valid(known_->begin(), known_->end());
  if (!valid.empty()) {
    msg << " (valid here:";
    for (std::size_t k = 0; k < valid.size(); ++k) msg << (k ? ", " : " ") << valid[k];
    msg << ")";
  }
  throw ConfigError(msg.str());
}

}  // namespace galvani
