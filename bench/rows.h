// The row protocol of the benchmarks that time one (kind, N) per child process: the child
// measures and prints one line "n median_ms min_ms rss_mib alloc_mib"; the parent runs it
// and reads the line back, so that each row's peak memory is its own.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/process.h"
#include "polyak/core/storage.h"

namespace polyak::bench {

struct Row {
  std::string kind;
  int64_t n = 0;
  double median_ms = 0, min_ms = 0;
  double rss_mib = 0, alloc_mib = 0;  // peak resident set; the allocator's peak
};

// Child side: the row line of `ms` (one time per repetition), with this process's peaks: the
// resident set's and the allocator's of `device` (where the measured tensors live).
inline void print_row_line(int64_t n, std::vector<double> ms, Device device = Device::cpu()) {
  std::sort(ms.begin(), ms.end());
  const size_t k = ms.size();
  const double median = k % 2 ? ms[k / 2] : 0.5 * (ms[k / 2 - 1] + ms[k / 2]);
  const double alloc_mib =
      static_cast<double>(allocator_stats(device).peak_allocated_bytes) / (1024.0 * 1024.0);
  std::printf("%lld %.6f %.6f %.3f %.3f\n", static_cast<long long>(n), median, ms.front(),
              status_mib("VmHWM:"), alloc_mib);
}

// Parent side: runs `command` (a child measuring `kind` at `n`) and reads its row line;
// false when the child failed or printed something else.
inline bool read_row(const std::string& command, const std::string& kind, int64_t n, Row& row) {
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return false;
  long long n_read = 0;
  const int fields = std::fscanf(pipe, "%lld %lf %lf %lf %lf", &n_read, &row.median_ms, &row.min_ms,
                                 &row.rss_mib, &row.alloc_mib);
  const int status = pclose(pipe);
  row.kind = kind;
  row.n = n_read;
  return fields == 5 && status == 0 && n_read == n;
}

}  // namespace polyak::bench
