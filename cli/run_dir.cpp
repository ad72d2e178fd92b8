#include "cli/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "polyak/core/error.h"

namespace polyak::cli {
namespace {

namespace fs = std::filesystem;

// Whether `name` is a temporary file of core/files.h: <file>.tmp.<pid>.<n>.
bool is_temporary(const std::string& name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at == 0) return false;
  const std::string tail = name.substr(at + 5);
  const size_t dot = tail.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == tail.size()) return false;
  auto digits = [](const std::string& s) {
    return s.find_first_not_of("0123456789") == std::string::npos;
  };
  return digits(tail.substr(0, dot)) && digits(tail.substr(dot + 1));
}

std::string read_pid(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid.empty() ? "unknown" : pid;
}

}  // namespace

RunDirectory::RunDirectory(const std::string& path, Mode mode, const char* command) : path_(path) {
  POLYAK_CHECK(!path.empty(), command,
               ": --out is empty, expected a directory for the run's files");
  std::error_code ec;
  fs::create_directories(path, ec);
  POLYAK_CHECK(!ec && fs::is_directory(path), command, ": --out ", path,
               " is not a directory that can be created (",
               ec ? ec.message() : "a file of that name exists", ")");

  const std::string lock = (fs::path(path) / "run.lock").string();
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  POLYAK_CHECK(lock_fd_ >= 0, command, ": cannot open the lock file ", lock, " (",
               std::strerror(errno), ")");
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const std::string holder = read_pid(lock_fd_);
    ::close(lock_fd_);
    lock_fd_ = -1;
    fail(command, ": ", path, " is in use by another run (pid ", holder, ", lock ", lock,
         "), expected a directory no other run is writing; wait for that run to end or give "
         "another --out");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) == 0) (void)::pwrite(lock_fd_, pid.data(), pid.size(), 0);

  for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && is_temporary(name)) {
      fs::remove(entry.path(), ec);
      if (!ec) removed_.push_back(entry.path().string());
    }
  }

  std::string found;
  for (const char* file : kRunFiles)
    if (fs::exists(fs::path(path) / file)) found += (found.empty() ? "" : ", ") + std::string(file);
  if (mode == Mode::fresh && !found.empty()) {
    ::close(lock_fd_);
    lock_fd_ = -1;
    fail(command, ": ", path, " holds another run (", found,
         "), expected a new or empty directory; continue that run with --resume ", path,
         ", replace it with --force, or give another --out");
  }
  if (mode == Mode::force)
    for (const char* file : kRunFiles) fs::remove(fs::path(path) / file, ec);
}

RunDirectory::~RunDirectory() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

}  // namespace polyak::cli
