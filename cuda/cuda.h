// The CUDA backend's interface to ops/ (f32). Declared always; defined only when polyak is
// built with CUDA (POLYAK_WITH_CUDA). Ops call these for tensors on a cuda device; every
// kernel has a CPU reference in ops/ that tests compare it with.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace polyak::cuda {

// True when polyak was built with CUDA and a device is present (tests skip otherwise).
bool is_available();
int device_count();
// The device backend (allocation, copies) that core/storage.cpp uses for cuda tensors.
const DeviceBackend& device_backend();

enum class BinaryOp : uint8_t { add, sub, mul, div };
enum class UnaryOp : uint8_t { neg, exp, log, sqrt, square, abs, tanh, sigmoid, relu, gelu, silu };

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
// out[b] = op(a[b]) · op(b[b]); b_stride = 0 shares b across the batch.
void gemm(const Tensor& a, const Tensor& b, Tensor& out, int64_t batch, int64_t m, int64_t n,
          int64_t k, bool trans_a, bool trans_b, int64_t a_stride, int64_t b_stride,
          int64_t out_stride, float alpha = 1.0f, float beta = 0.0f);

}  // namespace polyak::cuda
