// Shared by the files of cuda/: the stream of a device, a guard that makes a device current,
// the launch shape of elementwise kernels and the argument checks of the public functions.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "polyak/core/tensor.h"
#include "polyak/cuda/check.h"

namespace polyak::cuda {

// The stream that every kernel, copy and cuBLAS call of device `index` is issued on.
cudaStream_t stream(int index);

// Makes device `index` current for its lifetime, restoring the previous one afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index) : index_(index) {
    POLYAK_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != index_) POLYAK_CUDA_CHECK(cudaSetDevice(index_));
  }
  ~DeviceGuard() {
    if (previous_ != index_) (void)cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int index_;
  int previous_ = 0;
};

// Grid-stride kernels: 256 threads a block, at most 8192 blocks.
constexpr int kBlock = 256;
inline unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + kBlock - 1) / kBlock, 1, 8192));
}

// x[i·stride + j] = beta · x[i·stride + j] for i < batch, j < count (0 when beta = 0, even
// where x holds NaN): the K = 0 case of gemm. Defined in elementwise.cu.
void scale_batched(float* x, int64_t batch, int64_t count, int64_t stride, float beta, int index);

// y[i] = the bits of x[i] rounded to bf16 (core/bf16.h) for i < count, on device `index`'s
// stream. Defined in precision.cu.
void to_bf16(const float* x, uint16_t* y, int64_t count, int index);

// cuBLAS SGEMM on raw pointers of device `index`, as core's GemmArgs describes it (bf16
// operands under Precision::bf16); the caller has checked the sizes (gemm.cpp).
// CudaExec::gemm (launch.cuh) and cuda::gemm run it.
void gemm_raw(int index, const float* a, const float* b, float* out, const GemmArgs& args);

// Throws naming `fn` and `arg` unless `t` is a defined f32 tensor on a cuda device.
void check_f32_cuda(const char* fn, const char* arg, const Tensor& t);
// Throws naming both devices unless `t` lies on the same device as `ref`.
void check_same_cuda_device(const char* fn, const char* arg, const Tensor& t, const char* ref_arg,
                            const Tensor& ref);
// Throws unless `t` holds `expected` elements.
void check_numel(const char* fn, const char* arg, const Tensor& t, int64_t expected);

inline const float* cdata(const Tensor& t) {
  return static_cast<const float*>(t.raw_data());
}
inline float* mdata(const Tensor& t) {
  return static_cast<float*>(t.raw_data());
}

}  // namespace polyak::cuda
