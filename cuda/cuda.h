// The CUDA backend (f32): the DeviceBackend that core and ops reach for tensors on a cuda
// device (core/backend.h), and its kernels, which tests/cuda also calls directly. Declared
// always; defined only when polyak is built with CUDA (POLYAK_WITH_CUDA), except
// is_available() and device_count(), which answer false and 0 without it. Every kernel has
// a CPU reference in ops/ that tests compare it with. register.cpp registers the backend
// with core when the program starts.
#pragma once

#include <cstddef>
#include <cstdint>

#include "polyak/core/backend.h"
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
// The device backend: allocation and copies, which core/storage.cpp uses for cuda tensors,
// and the kernels below, which ops reach through core's device_kernels().
// allocate/deallocate are cudaMalloc/cudaFree themselves: core's caching allocator sits in
// front of every backend (size-bucketed free lists, core/storage.h), so a steady training
// loop reaches them only in its first step and cudaFree runs only on empty_cache(). A
// second cache here would keep what empty_cache() hands back.
const DeviceBackend& device_backend();

// The kernel groups of the backend (core/kernels_*.h), from cuda/kernels/*.h run by CudaExec
// (cuda/launch.cuh).
const NnKernels& nn_kernels();
const RandomKernels& random_kernels();
const ShapeKernels& shape_kernels();
const AttentionKernels& attention_kernels();
const OptimKernels& optim_kernels();

// The elementwise functions and reductions overwrite `out` (or `dx`), which the caller
// preallocates; an elementwise `out` may alias its first input.
//
// out[i] = a[i] op b[i % b_numel]: same shapes, or b repeating along the trailing axes of a
// (a bias row, a scalar). All f32 on one cuda device; out preallocated with a's shape.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
// out = a op scalar (and scalar op a when `scalar_first`).
void binary_scalar(BinaryOp op, const Tensor& a, double scalar, bool scalar_first, Tensor& out);
// out = f(x) for every UnaryOp (core/backend.h), with its parameters `p`.
void unary(UnaryOp op, UnaryParams p, const Tensor& x, Tensor& out);
// Backward helper of unary ops: dx = dy · f'(x) (neg, exp, log, … as above).
void unary_backward(UnaryOp op, UnaryParams p, const Tensor& x, const Tensor& dy, Tensor& dx);
// Sum over the leading rows: x viewed as [rows, cols] → out [cols] (bias gradients).
void sum_rows(const Tensor& x, int64_t rows, int64_t cols, Tensor& out);
void sum_all(const Tensor& x, Tensor& out);  // out [] (one element)

// cuBLAS SGEMM, batched (strided) when args.batch > 1, as core's GemmArgs describes it.
void gemm(const Tensor& a, const Tensor& b, Tensor& out, const GemmArgs& args);

}  // namespace polyak::cuda
