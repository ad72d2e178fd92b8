// polyak's own single-precision GEMM for the CPU (internal to ops/).
//
//   C [m,n] (=|+=) op(A) · op(B)      op(A) [m,k], op(B) [k,n], all row-major
//
// A is stored [m,k] (leading dimension lda ≥ k), or [k,m] (lda ≥ m) when trans_a;
// B is stored [k,n] (ldb ≥ n), or [n,k] (ldb ≥ k) when trans_b; C has ldc ≥ n.
// Single-threaded: callers cut large products into panels, one per thread.
// Compiled once per ISA (ops/gemm_isa.cpp, which explains the blocking); sgemm() runs the
// compilation for active_isa().
#pragma once

#include <cstdint>

#include "polyak/core/cpu.h"

namespace polyak {

struct SgemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;
  const float* bias = nullptr;
  // When non-null, a_sums [m] is overwritten with op(A)'s row sums over the depth,
  // Σ_p op(A)(i, p), taken while A is packed: linear's bias gradient beside its dW = dYᵀ·X,
  // without a pass of its own over dY.
  float* a_sums = nullptr;
  // When non-null, gate [m, ldg] multiplies C's final value elementwise by gate_scale where
  // gate > 0 and by 0 elsewhere, tile by tile while each tile of C is in cache: the
  // gradient through a ReLU (and dropout) whose output is `gate`, on the product dY · W
  // that reaches it, without a pass of its own over C.
  const float* gate = nullptr;
  int64_t ldg = 0;
  float gate_scale = 1.0f;
};

// The microkernel's tile, MR rows × NR columns of C, and the cache blocks: callers splitting
// C across threads cut it at multiples of MR and NR so that no thread gets a ragged sliver.
struct SgemmShape {
  int64_t mr, nr;      // microkernel tile
  int64_t kc, mc, nc;  // depth, rows and columns of the packed blocks
};

#define POLYAK_SGEMM_DECLARE(isa)                      \
  void sgemm(IsaTag<Isa::isa>, const SgemmArgs& args); \
  SgemmShape sgemm_shape(IsaTag<Isa::isa>);
POLYAK_FOR_EACH_ISA(POLYAK_SGEMM_DECLARE)
#undef POLYAK_SGEMM_DECLARE

// C (= when !accumulate, += when accumulate) op(A) · op(B). A non-null `bias` [n] (used
// only when !accumulate) makes it C = bias + op(A) · op(B), bias added to every row in the
// same pass that writes C. With k == 0 the product is zero.
inline void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate,
                  const float* bias = nullptr) {
  const SgemmArgs args{trans_a, trans_b, m, n,   k,          a,    lda,
                       b,       ldb,     c, ldc, accumulate, bias, nullptr};
  with_active_isa([&](auto isa) { sgemm(isa, args); });
}

// The same product on every thread, C cut into one panel per thread, through the
// compilation for `isa`: matmul's f32 path (ops/matmul.cpp), open to benchmarks that compare
// the ISAs and to tests. C must be contiguous (ldc = n).
void sgemm_threads(Isa isa, const SgemmArgs& args);

// The shape of the GEMM active_isa() runs.
inline SgemmShape sgemm_shape() {
  return with_active_isa([](auto isa) { return sgemm_shape(isa); });
}

}  // namespace polyak
