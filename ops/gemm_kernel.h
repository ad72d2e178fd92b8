// polyak's own single-precision GEMM for the CPU (internal to ops/).
//
//   C [m,n] (=|+=) op(A) · op(B)      op(A) [m,k], op(B) [k,n], all row-major
//
// A is stored [m,k] (leading dimension lda ≥ k), or [k,m] (lda ≥ m) when trans_a;
// B is stored [k,n] (ldb ≥ n), or [n,k] (ldb ≥ k) when trans_b; C has ldc ≥ n.
// Single-threaded: callers cut large products into panels, one per thread.
// See gemm_kernel.cpp for the blocking.
#pragma once

#include <cstdint>

// The register-blocked microkernel needs AVX2 and FMA; without them sgemm still works (a
// portable microkernel), but Eigen's GEMM is the faster choice and matmul uses it instead.
#if defined(__AVX2__) && defined(__FMA__)
#define POLYAK_SGEMM_AVX2 1
#else
#define POLYAK_SGEMM_AVX2 0
#endif

namespace polyak {

// C (= when !accumulate, += when accumulate) op(A) · op(B). A non-null `bias` [n] (used
// only when !accumulate) makes it C = bias + op(A) · op(B), bias added to every row in the
// same pass that writes C. With k == 0 the product is zero.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate,
           const float* bias = nullptr);

// The tile shape of the microkernel: callers splitting C across threads cut it at
// multiples of these so that no thread gets a ragged sliver in the middle.
inline constexpr int64_t kSgemmMR = 6;   // rows of C per microkernel call
inline constexpr int64_t kSgemmNR = 16;  // columns of C per microkernel call

}  // namespace polyak
