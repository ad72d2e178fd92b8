// One checking macro for CUDA runtime and cuBLAS calls: a failed call throws polyak::Error
// naming the call, the error and file:line, e.g.
//   cuda: cudaMalloc(&ptr, bytes) failed: cudaErrorMemoryAllocation (out of memory) at
//   cuda/device.cpp:81
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "polyak/core/error.h"

namespace polyak::cuda::detail {

inline void check(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error so that later checks see their own
  fail("cuda: ", call, " failed: ", cudaGetErrorName(status), " (", cudaGetErrorString(status),
       ") at ", file, ":", line);
}

inline void check(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  fail("cuda: ", call, " failed: ", cublasGetStatusName(status), " (",
       cublasGetStatusString(status), ") at ", file, ":", line);
}

}  // namespace polyak::cuda::detail

#define POLYAK_CUDA_CHECK(call) ::polyak::cuda::detail::check((call), #call, __FILE__, __LINE__)
