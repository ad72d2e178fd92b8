// CudaExec: the executor (cuda/kernels/exec.h) that runs kernel bodies on a CUDA device.
// for_each is one grid-stride launch on the device's stream; gemm is cuBLAS. nvcc only.
#pragma once

#include "polyak/core/backend.h"
#include "polyak/cuda/common.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::cuda {

template <class F>
__global__ void for_each_kernel(int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    f(i);
}

class CudaExec {
 public:
  explicit CudaExec(Device device) : index_(device.index), guard_(device.index) {}

  template <class F>
  void for_each(int64_t n, const F& f) const {
    if (n <= 0) return;
    for_each_kernel<<<grid_for(n), kBlock, 0, stream(index_)>>>(n, f);
    POLYAK_CUDA_CHECK(cudaGetLastError());
  }

  void gemm(const float* a, const float* b, float* out, const GemmArgs& args) const {
    gemm_raw(index_, a, b, out, autocast(args));  // a driver's GEMMs follow the scope's precision
  }

 private:
  int index_;
  DeviceGuard guard_;
};

}  // namespace polyak::cuda
