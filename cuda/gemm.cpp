// cuda::gemm: row-major (batched) SGEMM through cuBLAS, which is column-major.
//
// A row-major [R, C] matrix is, read as column-major, its transpose [C, R]. So the row-major
// product C = op(A) · op(B) [M, N] is computed as the column-major product
//   Cᵀ = op(B)ᵀ · op(A)ᵀ   [N, M]
// by passing B first, A second, with each operand's own transpose flag and leading dimension
// (its row length in row-major): ldb = trans_b ? K : N, lda = trans_a ? M : K, ldc = N.
//
// Under Precision::bf16 (core/autocast.h) A and B are first rounded to bf16 into scratch
// from the caching allocator (to_bf16, precision.cu: the same rounding as core/bf16.h) and
// the product is cublasGemmEx with bf16 inputs, f32 output and CUBLAS_COMPUTE_32F: f32
// accumulation, bf16 tensor cores. The scratch goes back to the cache when this returns,
// while the product may still be queued; that is safe because every kernel of a device runs
// on its one stream, in order.
//
// One cuBLAS handle per device, created on first use and bound to that device's stream. Its
// math mode is set to CUBLAS_DEFAULT_MATH explicitly: f32 products stay true f32, never TF32
// (which CUBLAS_TF32_TENSOR_OP_MATH would allow), so they match the CPU GEMM to f32
// rounding; bf16 is only ever asked for, through autocast.
#include <climits>
#include <mutex>
#include <vector>

#include "polyak/cuda/common.h"
#include "polyak/cuda/cuda.h"

namespace polyak::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // 32 MiB, what Hopper's cuBLAS asks for

// Never destroyed: cublasDestroy after the CUDA runtime has shut down (static destruction
// at exit) can fail; the driver reclaims everything when the process ends.
cublasHandle_t handle(int index) {
  static std::mutex mutex;
  static std::vector<cublasHandle_t>* handles =
      new std::vector<cublasHandle_t>(static_cast<size_t>(std::max(1, device_count())), nullptr);
  std::lock_guard<std::mutex> lock(mutex);
  cublasHandle_t& h = (*handles)[static_cast<size_t>(index)];
  if (h == nullptr) {
    POLYAK_CUDA_CHECK(cublasCreate(&h));
    POLYAK_CUDA_CHECK(cublasSetStream(h, stream(index)));
    POLYAK_CUDA_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    // A workspace of its own, allocated once, so that a GEMM captured in a graph never asks
    // cuBLAS to allocate (its default pool would, on the captured stream).
    void* workspace = nullptr;
    POLYAK_CUDA_CHECK(cudaMalloc(&workspace, kWorkspaceBytes));
    POLYAK_CUDA_CHECK(cublasSetWorkspace(h, workspace, kWorkspaceBytes));
  }
  return h;
}

void check_operand(const char* arg, const Tensor& t, int64_t batch, int64_t stride, int64_t rows,
                   int64_t cols) {
  const int64_t need = (batch - 1) * stride + rows * cols;
  if (stride < 0 || t.numel() < need)
    fail("cuda::gemm: ", arg, " has shape ", t.shape(), " (", t.numel(),
         " elements), expected at least ", need, " for batch ", batch, " of [", rows, ",", cols,
         "] with stride ", stride);
}

// The first `count` elements of device `index`'s `x` rounded to bf16, in scratch that lives
// as long as the returned tensor (f32 elements, two bf16 each).
Tensor bf16_copy(const float* x, int64_t count, int index) {
  Tensor scratch = Tensor::empty({(count + 1) / 2}, DType::f32, Device::cuda(index));
  to_bf16(x, static_cast<uint16_t*>(scratch.raw_data()), count, index);
  return scratch;
}

}  // namespace

void gemm_raw(int index, const float* a, const float* b, float* out, const GemmArgs& args) {
  const int64_t batch = args.batch, m = args.m, n = args.n, k = args.k;
  if (batch == 0 || m == 0 || n == 0) return;
  const bool trans_a = args.trans_a, trans_b = args.trans_b;
  const int64_t a_stride = args.a_stride, b_stride = args.b_stride, out_stride = args.out_stride;
  const float alpha = args.alpha, beta = args.beta;
  DeviceGuard guard(index);
  if (k == 0) {  // an empty sum: out = beta · out, without asking cuBLAS about K = 0
    scale_batched(out, batch, m * n, out_stride, beta, index);
    return;
  }
  cublasHandle_t h = handle(index);
  const auto M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int ldb = trans_b ? K : N;
  const int lda = trans_a ? M : K;
  if (args.precision == Precision::bf16) {
    const Tensor a16 = bf16_copy(a, (batch - 1) * a_stride + m * k, index);
    const Tensor b16 = bf16_copy(b, (batch - 1) * b_stride + k * n, index);
    const void* a_in = a16.raw_data();
    const void* b_in = b16.raw_data();
    if (batch == 1) {
      POLYAK_CUDA_CHECK(cublasGemmEx(h, op_b, op_a, N, M, K, &alpha, b_in, CUDA_R_16BF, ldb, a_in,
                                     CUDA_R_16BF, lda, &beta, out, CUDA_R_32F, N,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
      POLYAK_CUDA_CHECK(cublasGemmStridedBatchedEx(
          h, op_b, op_a, N, M, K, &alpha, b_in, CUDA_R_16BF, ldb, b_stride, a_in, CUDA_R_16BF, lda,
          a_stride, &beta, out, CUDA_R_32F, N, out_stride, static_cast<int>(batch),
          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return;
  }
  if (batch == 1) {
    POLYAK_CUDA_CHECK(cublasSgemm(h, op_b, op_a, N, M, K, &alpha, b, ldb, a, lda, &beta, out, N));
  } else {
    POLYAK_CUDA_CHECK(cublasSgemmStridedBatched(h, op_b, op_a, N, M, K, &alpha, b, ldb, b_stride, a,
                                                lda, a_stride, &beta, out, N, out_stride,
                                                static_cast<int>(batch)));
  }
}

void gemm(const Tensor& a, const Tensor& b, Tensor& out, const GemmArgs& args) {
  const char* fn = "cuda::gemm";
  const int64_t batch = args.batch, m = args.m, n = args.n, k = args.k;
  const int64_t a_stride = args.a_stride, b_stride = args.b_stride, out_stride = args.out_stride;
  check_f32_cuda(fn, "a", a);
  check_same_cuda_device(fn, "b", b, "a", a);
  check_same_cuda_device(fn, "out", out, "a", a);
  check_f32_cuda(fn, "b", b);
  check_f32_cuda(fn, "out", out);
  if (batch < 0 || m < 0 || n < 0 || k < 0)
    fail(fn, ": negative size (batch ", batch, ", m ", m, ", n ", n, ", k ", k, ")");
  if (batch == 0 || m == 0 || n == 0) return;
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX || batch > INT_MAX)
    fail(fn, ": sizes (batch ", batch, ", m ", m, ", n ", n, ", k ", k,
         ") exceed cuBLAS's 32-bit limit");
  check_operand("a", a, batch, a_stride, m, k);
  check_operand("b", b, batch, b_stride, k, n);
  check_operand("out", out, batch, out_stride, m, n);
  if (batch > 1 && out_stride < m * n)
    fail(fn, ": out_stride ", out_stride, " makes the ", batch, " products [", m, ",", n,
         "] overlap, expected at least ", m * n);

  gemm_raw(a.device().index, cdata(a), cdata(b), mdata(out), args);
}

}  // namespace polyak::cuda
