// The machine's yardsticks for `polyak bench`, one compilation per ISA (probes_isa.cpp).
#pragma once

#include <cstdint>

#include "polyak/core/cpu.h"

namespace polyak::cli {

// fma_peak_gflops: f32 multiply-add throughput of `threads` threads running `iters` steps of
// twelve independent chains in the ISA's widest vectors (a multiply and an add where there
// is no FMA), no memory traffic: the ceiling no GEMM can pass.
// eigen_sgemm: C [m,n] = op(A) · op(B), row-major, through Eigen's GEMM built for the ISA.
#define POLYAK_PROBES_DECLARE(isa)                                                       \
  double fma_peak_gflops(IsaTag<Isa::isa>, int threads, int64_t iters);                  \
  void eigen_sgemm(IsaTag<Isa::isa>, int threads, bool trans_a, bool trans_b, int64_t m, \
                   int64_t n, int64_t k, const float* a, const float* b, float* c);
POLYAK_FOR_EACH_ISA(POLYAK_PROBES_DECLARE)
#undef POLYAK_PROBES_DECLARE

}  // namespace polyak::cli
