// Writes a run's results into its output folder, each file atomically.
#pragma once

#include <string>

#include "galvani/core/plan.h"
#include "galvani/core/results.h"

namespace galvani::core {

/// Writes attributions/<method>/<layer>.pt, scores/<layer>.csv, tables/<evaluator>/<table>.csv,
/// summary.json and the report (report.md, report.html, plots/) into `dir`, each file atomically.
/// summary.json says `"complete"` (false when a method or evaluator failed, with `"failures"`).
void write_results(const Plan& plan, const RunResult& result, const std::string& dir);

/// The results folder of one run, claimed before the first shard runs and published once every file is
/// written, so that nothing is half-claimed:
/// - claiming locks it (a second run into the same folder is refused while this one lives, killed or not:
///   the lock is the kernel's), refuses a folder holding anything but an earlier run's results, and removes
///   what a killed run left beside it;
/// - results are written into a staging folder beside it (`staging()`); `publish()` swaps the two at once
///   (renameat2 RENAME_EXCHANGE) and removes the earlier results. A reader, or a run killed at any point,
///   finds the earlier complete results or the new ones, never a mix, and never an earlier run's files
///   (other methods, other layers) among this run's.
class ResultsFolder {
 public:
  /// Claims `dir` (created with its parents when missing). Throws IoError naming the folder and the fix.
  explicit ResultsFolder(const std::string& dir);
  ~ResultsFolder();  ///< removes the staging folder unless published; releases the lock
  ResultsFolder(const ResultsFolder&) = delete;
  ResultsFolder& operator=(const ResultsFolder&) = delete;

  const std::string& dir() const { return dir_; }
  const std::string& staging() const { return staging_; }
  /// Makes the staging folder the results folder. Throws IoError when the file system refuses.
  void publish();

 private:
  std::string dir_, staging_, lock_path_;
  int lock_fd_ = -1;
  bool published_ = false;
};

}  // namespace galvani::core
