// Options: a typed, strict view of one plugin's TOML table.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "galvani/error.h"

namespace galvani {

/// One configuration value, as parsed from TOML. Plain data, so it crosses plugin boundaries safely.
struct GALVANI_API OptionValue {
  enum class Kind { Bool, Int, Float, String, Array, Table };
  Kind kind = Kind::Table;
  bool b = false;
  std::int64_t i = 0;
  double f = 0.0;
  std::string s;
  std::vector<OptionValue> array;
  std::map<std::string, OptionValue> table;

  static OptionValue boolean(bool v);
  static OptionValue integer(std::int64_t v);
  static OptionValue floating(double v);
  static OptionValue string(std::string v);
  static OptionValue list(std::vector<OptionValue> v);
  static OptionValue dict(std::map<std::string, OptionValue> v);
  /// "boolean", "integer", "float", "string", "array" or "table".
  const char* kind_name() const;
  /// TOML-like rendering, for messages and the config echo.
  std::string repr() const;
};

/// A typed view of a table. Every read marks the key as used; `check_all_used` rejects the rest, so a
/// misspelt key is an error naming its full path (e.g. `methods[2].stepz`) instead of a silent default.
/// Not thread-safe: read options while constructing a component, not while it runs.
class GALVANI_API Options {
 public:
  Options();
  /// `path` is the table's location used in messages, e.g. `methods[0]`.
  Options(std::string path, std::map<std::string, OptionValue> table);

  const std::string& path() const { return path_; }
  /// Full path of a key in messages: `methods[0].steps`.
  std::string key_path(const std::string& key) const;
  bool has(const std::string& key) const;

  bool get_bool(const std::string& key, bool fallback) const;
  std::int64_t get_int(const std::string& key, std::int64_t fallback) const;
  /// Accepts integers too.
  double get_double(const std::string& key, double fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  /// A string that must be one of `allowed`.
  std::string get_choice(const std::string& key, const std::string& fallback,
                         const std::vector<std::string>& allowed) const;
  /// An integer within [lo, hi].
  std::int64_t get_int_in(const std::string& key, std::int64_t fallback, std::int64_t lo, std::int64_t hi) const;
  double get_double_in(const std::string& key, double fallback, double lo, double hi) const;
  /// An array of strings; a single string is accepted as a one-element list.
  std::vector<std::string> get_strings(const std::string& key, const std::vector<std::string>& fallback) const;
  std::vector<std::int64_t> get_ints(const std::string& key, const std::vector<std::int64_t>& fallback) const;
  /// A file or folder path: a relative one resolves against the config file's folder (like [model] and [data]
  /// paths); empty stays empty.
  std::string get_path(const std::string& key, const std::string& fallback) const;
  /// The folder relative option paths resolve against (set by the host: the config file's folder).
  void set_base_dir(std::string dir);
  /// The raw value (marks it used); nullopt when absent.
  std::optional<OptionValue> get_raw(const std::string& key) const;
  /// A sub-table as Options of its own (its keys are checked by `check_all_used` on this object too).
  Options table(const std::string& key) const;

  /// Marks a key as consumed without reading it (for keys handled elsewhere).
  void mark_used(const std::string& key) const;
  /// Keys present but never read.
  std::vector<std::string> unused() const;
  /// Throws ConfigError naming every unused key and the keys that are valid here.
  void check_all_used() const;
  const std::map<std::string, OptionValue>& raw() const { return table_; }

 private:
  const OptionValue* find(const std::string& key, OptionValue::Kind kind) const;
  std::vector<std::string> own_unused() const;  // this table's unused keys, without its sub-tables
  [[noreturn]] void type_error(const std::string& key, const char* expected, const OptionValue& got) const;

  std::string path_;
  std::string base_dir_;
  std::map<std::string, OptionValue> table_;
  std::shared_ptr<std::set<std::string>> used_;   // keys read
  std::shared_ptr<std::set<std::string>> known_;  // keys asked for, present or not: the valid ones
  std::shared_ptr<std::vector<Options>> children_;
};

}  // namespace galvani
