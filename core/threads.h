// Thread control for the CPU kernels (OpenMP and Eigen's GEMM share one setting).
#pragma once

#include <cstdint>
#include <functional>

namespace polyak {

// Number of threads CPU kernels use; set_num_threads(0) restores the default (all cores).
int num_threads();
void set_num_threads(int n);

// Runs body(begin, end) over [0, n) split across threads when n·cost_per_item is large
// enough to pay for it; otherwise on the calling thread.
void parallel_for(int64_t n, int64_t cost_per_item,
                  const std::function<void(int64_t begin, int64_t end)>& body);

}  // namespace polyak
