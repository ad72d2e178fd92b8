// Elementwise kernels and reductions (f32), the CUDA side of ops/elementwise.cpp and
// ops/reduce.cpp. Each has its CPU reference in ops/; tests/cuda compares the two.
//
//   binary         out[i] = a[i] op b[i mod nb]          op ∈ {+, −, ·, /}
//   binary_scalar  out[i] = a[i] op s   (or s op a[i])
//   unary          out[i] = f(x[i])                       f any UnaryOp (core/backend.h)
//   unary_backward dx[i]  = dy[i] · f'(x[i])             f' written beside f below
//   sum_rows       out[c] = Σ_r x[r, c]                  x [R, C] → out [C]
//   sum_all        out    = Σ_i x[i]                     x [n]    → out []
//   scale_batched  x[i·stride + j] ·= beta                (gemm with K = 0)
//
// Reductions are two-pass and deterministic (no atomics): blocks write partial sums, one
// more launch adds them up in a fixed order.
#include <cmath>

#include "polyak/cuda/common.h"
#include "polyak/cuda/cuda.h"
#include "polyak/cuda/kernels/broadcast.h"

namespace polyak::cuda {

namespace {

// ---- kernels ---------------------------------------------------------------------------

// a op b, shared with the broadcasting kernel (cuda/kernels/broadcast.h).
using kernels::binary_value;

// f(x) when !grad, f'(x) when grad: each derivative beside its function; a and b are the
// parameters of pow (exponent a), elu (α = a) and clamp ([a, b]).
__device__ inline float apply_unary(UnaryOp op, float a, float b, float x, bool grad) {
  switch (op) {
    case UnaryOp::neg:
      return grad ? -1.0f : -x;
    case UnaryOp::exp:
      return expf(x);  // f' = f
    case UnaryOp::log:
      return grad ? 1.0f / x : logf(x);
    case UnaryOp::sqrt:
      return grad ? 0.5f / sqrtf(x) : sqrtf(x);
    case UnaryOp::square:
      return grad ? 2.0f * x : x * x;
    case UnaryOp::abs:
      return grad ? (x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f)) : fabsf(x);
    case UnaryOp::tanh: {
      const float t = tanhf(x);
      return grad ? 1.0f - t * t : t;  // f' = 1 − tanh²
    }
    case UnaryOp::sigmoid: {
      const float s = 1.0f / (1.0f + expf(-x));
      return grad ? s * (1.0f - s) : s;  // f' = σ(1 − σ)
    }
    case UnaryOp::relu:
      return grad ? (x > 0.0f ? 1.0f : 0.0f) : fmaxf(x, 0.0f);
    case UnaryOp::gelu: {
      const float cdf = 0.5f * erfcf(-x * 0.70710678118654752f);     // Φ(x)
      const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);  // φ(x)
      return grad ? cdf + x * pdf : x * cdf;                         // f = xΦ, f' = Φ + xφ
    }
    case UnaryOp::silu: {
      const float s = 1.0f / (1.0f + expf(-x));
      return grad ? s * (1.0f + x * (1.0f - s)) : x * s;  // f = xσ, f' = σ(1 + x(1 − σ))
    }
    case UnaryOp::pow:
      return grad ? a * powf(x, a - 1.0f) : powf(x, a);  // f' = a·xᵃ⁻¹
    case UnaryOp::elu:
      return x > 0.0f ? (grad ? 1.0f : x) : (grad ? a * expf(x) : a * expm1f(x));
    default:  // UnaryOp::clamp: NaN stays NaN; f' = 1 on [a, b]
      return grad ? (x >= a && x <= b ? 1.0f : 0.0f) : (x < a ? a : (x > b ? b : x));
  }
}

#define POLYAK_GRID_STRIDE(i, n)                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void binary_kernel(BinaryOp op, const float* a, const float* b, int64_t nb, float* out,
                              int64_t n) {
  POLYAK_GRID_STRIDE(i, n) {
    out[i] = binary_value(op, a[i], b[nb == n ? i : i % nb]);
  }
}

__global__ void binary_scalar_kernel(BinaryOp op, const float* a, float s, bool scalar_first,
                                     float* out, int64_t n) {
  POLYAK_GRID_STRIDE(i, n) {
    out[i] = scalar_first ? binary_value(op, s, a[i]) : binary_value(op, a[i], s);
  }
}

__global__ void unary_kernel(UnaryOp op, float a, float b, const float* x, float* out, int64_t n) {
  POLYAK_GRID_STRIDE(i, n) {
    out[i] = apply_unary(op, a, b, x[i], false);
  }
}

__global__ void unary_backward_kernel(UnaryOp op, float a, float b, const float* x, const float* dy,
                                      float* dx, int64_t n) {
  POLYAK_GRID_STRIDE(i, n) {
    dx[i] = dy[i] * apply_unary(op, a, b, x[i], true);
  }
}

__global__ void scale_batched_kernel(float* x, int64_t batch, int64_t count, int64_t stride,
                                     float beta) {
  POLYAK_GRID_STRIDE(i, batch * count) {
    float& v = x[i / count * stride + i % count];
    v = beta == 0.0f ? 0.0f : beta * v;
  }
}

// Sum of `v` over the block (blockDim.x == kBlock); the result is valid in thread 0.
__device__ inline float block_sum(float v) {
  __shared__ float warp_sums[kBlock / 32];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < kBlock / 32 ? warp_sums[threadIdx.x] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

// partial[block] = Σ of the elements this block visits.
__global__ void sum_kernel(const float* x, int64_t n, float* partial) {
  float acc = 0.0f;
  POLYAK_GRID_STRIDE(i, n) {
    acc += x[i];
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Block (32, kRowThreads) sums rows [chunk·rows_per_chunk, …) of 32 columns:
// partial[chunk, c] = Σ_r x[r, c]. Threads along x read consecutive columns (coalesced).
constexpr int kRowThreads = 16;
__global__ void sum_rows_kernel(const float* x, int64_t rows, int64_t cols, int64_t rows_per_chunk,
                                float* partial) {
  __shared__ float acc[kRowThreads][33];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t end = min(rows, begin + rows_per_chunk);
  float s = 0.0f;
  if (c < cols)
    for (int64_t r = begin + threadIdx.y; r < end; r += kRowThreads) s += x[r * cols + c];
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int j = 1; j < kRowThreads; ++j) s += acc[j][threadIdx.x];
    partial[static_cast<int64_t>(blockIdx.y) * cols + c] = s;
  }
}

// ---- launches --------------------------------------------------------------------------

void check_launch() {
  POLYAK_CUDA_CHECK(cudaGetLastError());
}

// out [cols] = column sums of x [rows, cols], both on the device of `like`.
void launch_sum_rows(const float* x, int64_t rows, int64_t cols, float* out, const Tensor& like) {
  const int64_t col_blocks = (cols + 31) / 32;
  // Enough row chunks to fill the device, each at least 128 rows.
  const int64_t chunks = std::clamp<int64_t>(
      std::min((rows + 127) / 128, 1024 / std::max<int64_t>(col_blocks, 1)), 1, 1024);
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  const dim3 block(32, kRowThreads);
  const cudaStream_t s = stream(like.device().index);
  if (chunks == 1) {
    sum_rows_kernel<<<dim3(col_blocks, 1), block, 0, s>>>(x, rows, cols, rows_per_chunk, out);
    check_launch();
    return;
  }
  Tensor partial = Tensor::empty({chunks, cols}, DType::f32, like.device());
  sum_rows_kernel<<<dim3(col_blocks, chunks), block, 0, s>>>(x, rows, cols, rows_per_chunk,
                                                             mdata(partial));
  check_launch();
  sum_rows_kernel<<<dim3(col_blocks, 1), block, 0, s>>>(cdata(partial), chunks, cols, chunks, out);
  check_launch();
}

}  // namespace

void scale_batched(float* x, int64_t batch, int64_t count, int64_t stride, float beta, int index) {
  if (batch * count == 0) return;
  scale_batched_kernel<<<grid_for(batch * count), kBlock, 0, stream(index)>>>(x, batch, count,
                                                                              stride, beta);
  check_launch();
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  const char* fn = "cuda::binary";
  check_f32_cuda(fn, "a", a);
  check_same_cuda_device(fn, "b", b, "a", a);
  check_same_cuda_device(fn, "out", out, "a", a);
  check_f32_cuda(fn, "b", b);
  check_f32_cuda(fn, "out", out);
  check_numel(fn, "out", out, a.numel());
  const int64_t n = a.numel(), nb = b.numel();
  if (n == 0) return;
  if (nb == 0 || n % nb != 0)
    fail(fn, ": b has shape ", b.shape(), ", expected a's shape ", a.shape(),
         " or a trailing part of it that repeats");
  DeviceGuard guard(a.device().index);
  binary_kernel<<<grid_for(n), kBlock, 0, stream(a.device().index)>>>(op, cdata(a), cdata(b), nb,
                                                                      mdata(out), n);
  check_launch();
}

void binary_scalar(BinaryOp op, const Tensor& a, double scalar, bool scalar_first, Tensor& out) {
  const char* fn = "cuda::binary_scalar";
  check_f32_cuda(fn, "a", a);
  check_same_cuda_device(fn, "out", out, "a", a);
  check_f32_cuda(fn, "out", out);
  check_numel(fn, "out", out, a.numel());
  const int64_t n = a.numel();
  if (n == 0) return;
  DeviceGuard guard(a.device().index);
  binary_scalar_kernel<<<grid_for(n), kBlock, 0, stream(a.device().index)>>>(
      op, cdata(a), static_cast<float>(scalar), scalar_first, mdata(out), n);
  check_launch();
}

void unary(UnaryOp op, UnaryParams p, const Tensor& x, Tensor& out) {
  const char* fn = "cuda::unary";
  check_f32_cuda(fn, "x", x);
  check_same_cuda_device(fn, "out", out, "x", x);
  check_f32_cuda(fn, "out", out);
  check_numel(fn, "out", out, x.numel());
  const int64_t n = x.numel();
  if (n == 0) return;
  DeviceGuard guard(x.device().index);
  unary_kernel<<<grid_for(n), kBlock, 0, stream(x.device().index)>>>(
      op, static_cast<float>(p.a), static_cast<float>(p.b), cdata(x), mdata(out), n);
  check_launch();
}

void unary_backward(UnaryOp op, UnaryParams p, const Tensor& x, const Tensor& dy, Tensor& dx) {
  const char* fn = "cuda::unary_backward";
  check_f32_cuda(fn, "x", x);
  check_same_cuda_device(fn, "dy", dy, "x", x);
  check_same_cuda_device(fn, "dx", dx, "x", x);
  check_f32_cuda(fn, "dy", dy);
  check_f32_cuda(fn, "dx", dx);
  check_numel(fn, "dy", dy, x.numel());
  check_numel(fn, "dx", dx, x.numel());
  const int64_t n = x.numel();
  if (n == 0) return;
  DeviceGuard guard(x.device().index);
  unary_backward_kernel<<<grid_for(n), kBlock, 0, stream(x.device().index)>>>(
      op, static_cast<float>(p.a), static_cast<float>(p.b), cdata(x), cdata(dy), mdata(dx), n);
  check_launch();
}

void sum_rows(const Tensor& x, int64_t rows, int64_t cols, Tensor& out) {
  const char* fn = "cuda::sum_rows";
  check_f32_cuda(fn, "x", x);
  check_same_cuda_device(fn, "out", out, "x", x);
  check_f32_cuda(fn, "out", out);
  if (rows < 0 || cols < 0 || rows * cols != x.numel())
    fail(fn, ": rows ", rows, " × cols ", cols, " does not match x of shape ", x.shape());
  check_numel(fn, "out", out, cols);
  if (cols == 0) return;
  DeviceGuard guard(x.device().index);
  launch_sum_rows(cdata(x), rows, cols, mdata(out), x);
}

void sum_all(const Tensor& x, Tensor& out) {
  const char* fn = "cuda::sum_all";
  check_f32_cuda(fn, "x", x);
  check_same_cuda_device(fn, "out", out, "x", x);
  check_f32_cuda(fn, "out", out);
  check_numel(fn, "out", out, 1);
  const int64_t n = x.numel();
  const unsigned blocks = std::min(grid_for(n), 1024u);
  DeviceGuard guard(x.device().index);
  const cudaStream_t s = stream(x.device().index);
  if (blocks == 1) {
    sum_kernel<<<1, kBlock, 0, s>>>(cdata(x), n, mdata(out));
    check_launch();
    return;
  }
  Tensor partial = Tensor::empty({static_cast<int64_t>(blocks)}, DType::f32, x.device());
  sum_kernel<<<blocks, kBlock, 0, s>>>(cdata(x), n, mdata(partial));
  check_launch();
  sum_kernel<<<1, kBlock, 0, s>>>(cdata(partial), blocks, mdata(out));
  check_launch();
}

}  // namespace polyak::cuda
