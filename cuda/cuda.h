// The CUDA backend's interface to ops/ (f32). Declared always; defined only when polyak is
// built with CUDA (POLYAK_WITH_CUDA), except is_available() and device_count(), which answer
// false and 0 without it. Ops call these for tensors on a cuda device; every kernel has a
// CPU reference in ops/ that tests compare it with.
#pragma once

#include <cstddef>
#include <cstdint>

#include "polyak/core/tensor.h"

namespace polyak::cuda {

// True when polyak was built with CUDA and a device is present (tests skip otherwise).
// Never throws: a missing driver or device means 0 devices.
#ifdef POLYAK_WITH_CUDA
bool is_available();
int device_count();
#else
inline bool is_available() {
  return false;
}
inline int device_count() {
  return 0;
}
#endif
// The device backend (allocation, copies) that core/storage.cpp uses for cuda tensors.
// allocate/deallocate are cudaMalloc/cudaFree themselves: core's caching allocator sits in
// front of every backend (size-bucketed free lists, core/storage.h), so a steady training
// loop reaches them only in its first step and cudaFree runs only on empty_cache(). A
// second cache here would keep what empty_cache() hands back.
const DeviceBackend& device_backend();

enum class BinaryOp : uint8_t { add, sub, mul, div };
enum class UnaryOp : uint8_t { neg, exp, log, sqrt, square, abs, tanh, sigmoid, relu, gelu, silu };

// The elementwise functions and reductions overwrite `out` (or `dx`), which the caller
// preallocates; an elementwise `out` may alias its first input.
//
// out[i] = a[i] op b[i % b_numel]: same shapes, or b repeating along the trailing axes of a
// (a bias row, a scalar). All f32 on one cuda device; out preallocated with a's shape.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
// out = a op scalar (and scalar op a when `scalar_first`).
void binary_scalar(BinaryOp op, const Tensor& a, double scalar, bool scalar_first, Tensor& out);
void unary(UnaryOp op, const Tensor& x, Tensor& out);
// Backward helper of unary ops: dx = dy · f'(x) (neg, exp, log, … as above).
void unary_backward(UnaryOp op, const Tensor& x, const Tensor& dy, Tensor& dx);
// Sum over the leading rows: x viewed as [rows, cols] → out [cols] (bias gradients).
void sum_rows(const Tensor& x, int64_t rows, int64_t cols, Tensor& out);
void sum_all(const Tensor& x, Tensor& out);  // out [] (one element)

// cuBLAS SGEMM, batched (strided) when batch > 1; row-major operands like matmul():
// out[i] = alpha · op(a[i]) · op(b[i]) + beta · out[i], a[i] [M,K] (or [K,M] with trans_a),
// b[i] [K,N] (or [N,K] with trans_b), out[i] [M,N]; strides in elements between batch
// entries; b_stride = 0 shares b across the batch; beta = 0 overwrites out.
void gemm(const Tensor& a, const Tensor& b, Tensor& out, int64_t batch, int64_t m, int64_t n,
          int64_t k, bool trans_a, bool trans_b, int64_t a_stride, int64_t b_stride,
          int64_t out_stride, float alpha = 1.0f, float beta = 0.0f);

}  // namespace polyak::cuda
