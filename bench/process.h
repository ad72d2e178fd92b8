// Process facts the benchmarks print: their memory, and their own path (each benchmark
// re-executes itself once per measured row, so that a row's peak resident set is its own).
#pragma once

#include <unistd.h>

#include <fstream>
#include <string>

namespace polyak::bench {

// A field of /proc/self/status ("VmHWM:" peak resident set, "VmRSS:" resident set) in MiB;
// 0 when the field is absent.
inline double status_mib(const char* field) {
  std::ifstream status("/proc/self/status");
  const std::string key = field;
  for (std::string line; std::getline(status, line);)
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(key.size())) / 1024.0;  // kB
  return 0;
}

// This program's path, from /proc/self/exe; empty when it cannot be read.
inline std::string self_path() {
  char buf[4096];
  const ssize_t len = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return len > 0 ? std::string(buf, static_cast<size_t>(len)) : std::string();
}

}  // namespace polyak::bench
