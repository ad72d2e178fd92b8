#include "polyak/core/threads.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>

namespace polyak {
namespace {
int default_threads() {
  return std::max(1, omp_get_num_procs());
}
int g_threads = 0;  // 0: not set yet
}  // namespace

int num_threads() {
  return g_threads > 0 ? g_threads : default_threads();
}

void set_num_threads(int n) {
  g_threads = n > 0 ? n : default_threads();
  omp_set_num_threads(g_threads);
  Eigen::setNbThreads(g_threads);
}

void parallel_for(int64_t n, int64_t cost_per_item,
                  const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  constexpr int64_t kMinWorkPerThread = 32768;  // below this, threading costs more than it saves
  int threads = num_threads();
  int64_t work = n * std::max<int64_t>(cost_per_item, 1);
  if (threads <= 1 || work < 2 * kMinWorkPerThread || omp_in_parallel()) {
    body(0, n);
    return;
  }
  int64_t chunks = std::min<int64_t>(threads, std::max<int64_t>(1, work / kMinWorkPerThread));
  chunks = std::min(chunks, n);
#pragma omp parallel for num_threads(static_cast <int>(chunks)) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
    body(begin, end);
  }
}

}  // namespace polyak
