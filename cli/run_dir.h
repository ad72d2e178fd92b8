// A run directory (`--out`): one run at a time, and one run's files only.
//
//   RunDirectory dir(o.out, RunDirectory::Mode::fresh, "polyak train");
//
// opens (creating it when missing) the directory and takes its lock, `run.lock`, an
// exclusive flock held until the RunDirectory is destroyed (or the process dies, kill -9
// included: the kernel drops the lock with the process). A second run into the same
// directory fails at once, naming the directory and the pid that holds it. Temporary files
// left by saves that were killed half-way (`*.tmp.<pid>.<n>`, core/files.h) are removed:
// under the lock no other run can be writing them.
//
// Mode::fresh refuses a directory that holds another run's files (config.json, metrics.csv,
// model.safetensors, checkpoint.safetensors) so that two runs never mix; Mode::force removes
// those files first; Mode::resume expects them.
#pragma once

#include <string>
#include <vector>

namespace polyak::cli {

class RunDirectory {
 public:
  enum class Mode { fresh, force, resume };
  RunDirectory(const std::string& path, Mode mode, const char* command);
  ~RunDirectory();
  RunDirectory(const RunDirectory&) = delete;
  RunDirectory& operator=(const RunDirectory&) = delete;

  const std::string& path() const { return path_; }
  // The stale temporary files removed when the directory was opened.
  const std::vector<std::string>& removed_temporaries() const { return removed_; }

  // The files a run writes there.
  static constexpr const char* kRunFiles[] = {"config.json", "metrics.csv", "model.safetensors",
                                              "checkpoint.safetensors"};

 private:
  std::string path_;
  int lock_fd_ = -1;
  std::vector<std::string> removed_;
};

}  // namespace polyak::cli
