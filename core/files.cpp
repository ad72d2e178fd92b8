#include "polyak/core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "polyak/core/error.h"

namespace polyak {
namespace {

std::string os_error(int err) {
  return std::generic_category().message(err);
}

}  // namespace

void write_file_atomically(const std::string& path, const std::vector<std::string_view>& parts,
                           const char* fn) {
  static std::atomic<uint64_t> counter{0};
  std::string tmp;
  int fd = -1;
  int err = 0;
  // A name of our own (pid, counter) opened exclusively: two writers never share a
  // temporary file, and the final file gets the usual permissions (umask applies).
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    err = errno;
    if (fd < 0 && err != EEXIST) break;
  }
  POLYAK_CHECK(fd >= 0, fn, ": ", path, ": cannot create the temporary file ", tmp, " (",
               os_error(err), ")");

  // `error` is errno as captured right after the failing call, before anything else runs.
  auto give_up = [&](int error, const std::string& what) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    fail(fn, ": ", path, ": ", what, " (", os_error(error), "); the previous file is untouched");
  };
  for (std::string_view part : parts) {
    const char* p = part.data();
    size_t left = part.size();
    while (left > 0) {
      ssize_t n = ::write(fd, p, left);
      err = n < 0 ? errno : EIO;
      if (n < 0 && err == EINTR) continue;
      if (n <= 0) give_up(err, "writing " + tmp + " failed");
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  if (::fsync(fd) != 0) {
    err = errno;
    give_up(err, "syncing " + tmp + " failed");
  }
  int closed = ::close(fd);
  err = errno;
  fd = -1;
  if (closed != 0) give_up(err, "closing " + tmp + " failed");
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    give_up(err, "cannot rename " + tmp + " to " + path);
  }

  // Make the rename itself durable; a failure here loses nothing already written.
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

void write_text_file_atomically(const std::string& path, const std::string& text, const char* fn) {
  write_file_atomically(path, {std::string_view(text)}, fn);
}

}  // namespace polyak
