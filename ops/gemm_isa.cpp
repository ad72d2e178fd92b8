// polyak's single-precision GEMM: C [m,n] (=|+=) op(A) [m,k] · op(B) [k,n], row-major.
// Compiled once per ISA (cmake/isa.cmake); ops/gemm_kernel.h picks the compilation.
//
// The blocking follows BLIS (Van Zee & van de Geijn, "BLIS: A Framework for Rapidly
// Instantiating BLAS Functionality", ACM TOMS 41(3), 2015; Goto & van de Geijn, "Anatomy
// of High-Performance Matrix Multiplication", ACM TOMS 34(3), 2008):
//
//   for jc in [0,n) step NC                        C's columns, B panel in L3
//     for pc in [0,k) step KC                      the shared depth
//       pack op(B)[pc:+KC, jc:+NC] → B̃            KC×NC, as NR-wide column slivers
//       for ic in [0,m) step MC
//         pack op(A)[ic:+MC, pc:+KC] → Ã          MC×KC, as MR-tall row slivers (L2)
//         for jr in [0,NC) step NR                 one B̃ sliver, KC×NR, stays in L1
//           for ir in [0,MC) step MR
//             C[ic+ir:+MR, jc+jr:+NR] += Ã sliver · B̃ sliver     (the microkernel)
//
// One change for narrow C (nc ≤ KC) with a moderate depth and an untransposed A (linear's
// dX = dY·W, k = out): all of op(B) is packed first and the pc loop moves inside the ic
// loop, so a row block of C stays in L2 across the depth instead of going to memory and
// back once per KC.
//
// Packing reads each operand through its transpose flag, so the microkernel sees one
// layout: Ã sliver element (p, i) at p·MR + i, B̃ sliver element (p, j) at p·NR + j.
// Slivers at the edges are zero-padded to MR and NR; the microkernel then computes a
// full tile into a scratch tile whose valid part is copied to C.
//
// Microkernels. Each step p broadcasts MR values of Ã and loads NR/W vectors of B̃ (W
// floats per vector) into MR·NR/W accumulators; two FMA pipes with a 4-cycle latency need
// ≥ 8 independent accumulators, and the tile is as large as the registers allow:
//   avx512  MR×NR = 14×32: 28 zmm accumulators, 2 loads of B̃, 14 broadcasts folded into
//           the FMAs (EVEX embedded broadcast); 32 registers in all.
//   avx2    MR×NR = 6×16: 12 ymm accumulators, 2 loads of B̃, 6 broadcasts; of 16.
//   baseline MR×NR = 4×8: portable C that the compiler vectorises for SSE2.
//
// Cache blocks (Low, Igual, Smith, Quintana-Ortí, "Analytical Modeling Is Enough for
// High-Performance BLIS", ACM TOMS 43(2), 2016), from the cache sizes read at run time:
//   KC: a B̃ sliver, KC·NR floats, fills two thirds of L1D beside the streaming Ã sliver,
//       at most 256 deep.
//   MC: Ã, MC·KC floats, fills a sixth of L2 (the rest holds C's tile rows and the B̃
//       slivers passing through), at least 128 rows.
//   NC: B̃, KC·NC floats, fills half of this core's share of L3, at most 4096 columns.
// (Zen 3, 32 KiB L1D, 512 KiB L2, AVX2: KC 256, MC 126, the sizes once measured best
// there. Sapphire Rapids, 48 KiB L1D, 2 MiB L2, AVX-512: KC 256, MC 336, NC 4096, best of
// the variants measured at the model's shapes, e.g. over KC 192 / MC 672 / NC 8192 by
// 5–20%.) The depth and the rows are cut into equal blocks (k = 300 is two blocks of 150,
// not 256 + 44), so no block is much thinner than the others.
#include "polyak/ops/gemm_kernel.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define POLYAK_GEMM_AVX2 1
#else
#define POLYAK_GEMM_AVX2 0
#endif
#if defined(__AVX512F__)
#define POLYAK_GEMM_AVX512 1
#else
#define POLYAK_GEMM_AVX512 0
#endif

namespace polyak {
namespace POLYAK_ISA_NAMESPACE {
namespace {

#if POLYAK_GEMM_AVX512
constexpr int64_t MR = 14, NR = 32;
#elif POLYAK_GEMM_AVX2
constexpr int64_t MR = 6, NR = 16;
#else
constexpr int64_t MR = 4, NR = 8;
#endif

// SgemmArgs::gate at some block of C: p [.., ld] (null: no gate).
struct Gate {
  const float* p;
  int64_t ld;
  float scale;
};

// The cache blocks for this CPU (see the top of the file).
struct Blocks {
  int64_t kc, mc, nc;
};

int64_t clamp_multiple(int64_t x, int64_t multiple, int64_t lo, int64_t hi) {
  return std::clamp(x / multiple * multiple, lo, hi);
}

Blocks derive_blocks() {
  const CacheSizes caches = cache_sizes();
  // Sizes a system does not report: those of a common small core.
  const int64_t l1 = caches.l1d > 0 ? caches.l1d : 32 << 10;
  const int64_t l2 = caches.l2 > 0 ? caches.l2 : 512 << 10;
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t l3 = caches.l3 > 0 ? caches.l3 / cores : 2 << 20;
  const int64_t f = sizeof(float);
  Blocks b{};
  b.kc = clamp_multiple(l1 * 2 / 3 / (NR * f), 8, 64, 256);
  b.mc = clamp_multiple(std::max<int64_t>(l2 / 6 / (b.kc * f), 128), MR, MR, 256 * MR);
  b.nc = clamp_multiple(std::max(l3, l2) / 2 / (b.kc * f), NR, NR, 4096);
  return b;
}

const Blocks& blocks() {
  static const Blocks b = derive_blocks();
  return b;
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// ---- packing ------------------------------------------------------------------------------

// Rows of a stored operand read together when packing runs along them.
constexpr int64_t kPackRows = 8;

inline void prefetch(const float* p) {
  __builtin_prefetch(p, 0, 3);
}

#if POLYAK_GEMM_AVX2
// out[p·6 + i] = rows[i][p] for p < 8: six rows of eight transposed into eight steps of
// six (48 floats, six stores). Within each 128-bit lane the unpacks and shuffles build the
// columns; the lane permutes then place columns 0..3 and 4..7.
inline void transpose_6x8(const float* r0, const float* r1, const float* r2, const float* r3,
                          const float* r4, const float* r5, float* out) {
  const __m256 a0 = _mm256_loadu_ps(r0), a1 = _mm256_loadu_ps(r1), a2 = _mm256_loadu_ps(r2);
  const __m256 a3 = _mm256_loadu_ps(r3), a4 = _mm256_loadu_ps(r4), a5 = _mm256_loadu_ps(r5);
  const __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
  const __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
  const __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
  // s_c: rows 0..3 of column c (low lane) and c + 4 (high lane).
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  // x: rows 4, 5 of column c and rows 0, 1 of column c + 1; y: rows 2..5 of column c + 1
  // (c = 0, and c = 4 in the high lane); z, w: the same for c = 2.
  const __m256 x = _mm256_shuffle_ps(t4, s1, 0x44), y = _mm256_shuffle_ps(s1, t4, 0xEE);
  const __m256 z = _mm256_shuffle_ps(t5, s3, 0x44), w = _mm256_shuffle_ps(s3, t5, 0xEE);
  _mm256_storeu_ps(out + 0, _mm256_permute2f128_ps(s0, x, 0x20));
  _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(y, s2, 0x20));
  _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(z, w, 0x20));
  _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(s0, x, 0x31));
  _mm256_storeu_ps(out + 32, _mm256_permute2f128_ps(y, s2, 0x31));
  _mm256_storeu_ps(out + 40, _mm256_permute2f128_ps(z, w, 0x31));
}

// r[c] ← column c of the 8×8 block whose rows are r[0..7].
inline void transpose_8x8_regs(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  // u: rows 0..3 (then 4..7) of columns c and c + 4, in the two lanes.
  __m256 u[8];
  u[0] = _mm256_shuffle_ps(t[0], t[2], 0x44);
  u[1] = _mm256_shuffle_ps(t[0], t[2], 0xEE);
  u[2] = _mm256_shuffle_ps(t[1], t[3], 0x44);
  u[3] = _mm256_shuffle_ps(t[1], t[3], 0xEE);
  u[4] = _mm256_shuffle_ps(t[4], t[6], 0x44);
  u[5] = _mm256_shuffle_ps(t[4], t[6], 0xEE);
  u[6] = _mm256_shuffle_ps(t[5], t[7], 0x44);
  u[7] = _mm256_shuffle_ps(t[5], t[7], 0xEE);
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[c + 4], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(u[c], u[c + 4], 0x31);
  }
}

// out[p·ld_out + i] = rows[i][p] for i, p < 8, rows `ld` apart: an 8×8 transpose.
inline void transpose_8x8(const float* rows, int64_t ld, float* out, int64_t ld_out) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(rows + i * ld);
  transpose_8x8_regs(r);
  for (int c = 0; c < 8; ++c) _mm256_storeu_ps(out + c * ld_out, r[c]);
}

// Eight steps of a full Ã sliver from MR rows `ld` apart: out[p·MR + i] = rows[i][p].
inline void pack_a_steps_8(const float* rows, int64_t ld, float* out) {
#if POLYAK_GEMM_AVX512
  // Rows 0..7 transpose straight into place; rows 8..13 transpose in registers beside two
  // zero rows, and six lanes of each column are stored. (Going through a scratch block
  // instead reloads each column across two earlier stores, which store forwarding cannot
  // serve: a stall of many cycles per load.)
  transpose_8x8(rows, ld, out, MR);
  __m256 r[8];
  for (int i = 0; i < 6; ++i) r[i] = _mm256_loadu_ps(rows + (8 + i) * ld);
  r[6] = r[7] = _mm256_setzero_ps();
  transpose_8x8_regs(r);
  for (int p = 0; p < 8; ++p) _mm256_mask_storeu_ps(out + p * MR + 8, 0x3F, r[p]);
#else
  transpose_6x8(rows, rows + ld, rows + 2 * ld, rows + 3 * ld, rows + 4 * ld, rows + 5 * ld, out);
#endif
}
#endif

// sums[i] += Σ_p Ã(i, p) for the mc rows of a packed Ã [mc, kc]: the packed slivers are
// still in cache, and the padding rows are skipped.
void add_row_sums(const float* packed, int64_t mc, int64_t kc, float* sums) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR, packed += MR * kc) {
    alignas(64) float acc[16] = {};
#if POLYAK_GEMM_AVX512
    // A step's 14 values as one masked vector, two steps per iteration (two chains).
    static_assert(MR <= 16, "a step fits one vector");
    constexpr __mmask16 kStep = (1u << MR) - 1;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 1 < kc; p += 2) {
      a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(kStep, packed + p * MR));
      a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(kStep, packed + (p + 1) * MR));
    }
    if (p < kc) a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(kStep, packed + p * MR));
    _mm512_store_ps(acc, _mm512_add_ps(a0, a1));
#else
    for (int64_t p = 0; p < kc; ++p)
#pragma omp simd
      for (int64_t i = 0; i < MR; ++i) acc[i] += packed[p * MR + i];
#endif
    const int64_t mr = std::min(MR, mc - i0);
    for (int64_t i = 0; i < mr; ++i) sums[i0 + i] += acc[i];
  }
}

// Ã ← op(A)[0:mc, 0:kc] as MR-tall slivers, the last zero-padded. `a` points at op(A)'s
// element (0, 0).
void pack_a(bool trans, const float* a, int64_t lda, int64_t mc, int64_t kc, float* dst) {
  if (trans) {
    // op(A)(i, p) = a[p·lda + i]: each step of a sliver is MR contiguous values of one row
    // of a. A few rows at a time are spread over all the slivers: walking one sliver down
    // all kc rows instead would revisit rows whose stride (often a multiple of 4 KiB) maps
    // them onto the same few cache sets, missing L1 and L2 on every read.
    for (int64_t p0 = 0; p0 < kc; p0 += kPackRows) {
      const int64_t p1 = std::min(kc, p0 + kPackRows);
      for (int64_t i0 = 0; i0 < mc; i0 += MR) {
        const int64_t mr = std::min(MR, mc - i0);
        float* sliver = dst + i0 * kc;
        for (int64_t p = p0; p < p1; ++p) {
          const float* src = a + p * lda + i0;
          if (p + kPackRows < kc) prefetch(src + kPackRows * lda);
          float* out = sliver + p * MR;
          if (mr == MR) {
            std::memcpy(out, src, sizeof(float) * MR);
            continue;
          }
          int64_t i = 0;
          for (; i < mr; ++i) out[i] = src[i];
          for (; i < MR; ++i) out[i] = 0.0f;
        }
      }
    }
    return;
  }
  for (int64_t i0 = 0; i0 < mc; i0 += MR, dst += MR * kc) {
    const int64_t mr = std::min(MR, mc - i0);
    // op(A)(i, p) = a[i·lda + p]: interleave MR rows
    int64_t p = 0;
#if POLYAK_GEMM_AVX2
    if (mr == MR) {
      const float* r = a + i0 * lda;
      const bool more = i0 + 2 * MR <= mc;
      for (; p + 8 <= kc; p += 8) {
        // The next sliver's rows, a line at a time, so that it does not wait on memory.
        if (more && p % 16 == 0)
          for (int64_t i = 0; i < MR; ++i) prefetch(r + (MR + i) * lda + p);
        pack_a_steps_8(r + p, lda, dst + p * MR);
      }
    }
#endif
    for (; p < kc; ++p)
      for (int64_t i = 0; i < MR; ++i) dst[p * MR + i] = i < mr ? a[(i0 + i) * lda + p] : 0.0f;
  }
}

// B̃ ← op(B)[0:kc, 0:nc] as NR-wide slivers, the last zero-padded. `b` points at op(B)'s
// element (0, 0).
void pack_b(bool trans, const float* b, int64_t ldb, int64_t kc, int64_t nc, float* dst) {
  if (!trans) {
    // op(B)(p, j) = b[p·ldb + j]: each step of a sliver is NR contiguous values of one row
    // of b; a few rows at a time are spread over all the slivers (see pack_a).
    for (int64_t p0 = 0; p0 < kc; p0 += kPackRows) {
      const int64_t p1 = std::min(kc, p0 + kPackRows);
      for (int64_t j0 = 0; j0 < nc; j0 += NR) {
        const int64_t nr = std::min(NR, nc - j0);
        float* sliver = dst + j0 * kc;
        for (int64_t p = p0; p < p1; ++p) {
          const float* src = b + p * ldb + j0;
          if (p + kPackRows < kc) prefetch(src + kPackRows * ldb);
          float* out = sliver + p * NR;
          if (nr == NR) {
            std::memcpy(out, src, sizeof(float) * NR);
            continue;
          }
          int64_t j = 0;
          for (; j < nr; ++j) out[j] = src[j];
          for (; j < NR; ++j) out[j] = 0.0f;
        }
      }
    }
    return;
  }
  // op(B)(p, j) = b[j·ldb + p]: interleave NR rows of b
  for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += NR * kc) {
    const int64_t nr = std::min(NR, nc - j0);
    const float* src = b + j0 * ldb;
    int64_t p = 0;
#if POLYAK_GEMM_AVX2
    if (nr == NR)
      for (; p + 8 <= kc; p += 8)
        for (int64_t j = 0; j < NR; j += 8)
          transpose_8x8(src + j * ldb + p, ldb, dst + p * NR + j, NR);
#endif
    for (; p < kc; ++p)
      for (int64_t j = 0; j < NR; ++j) dst[p * NR + j] = j < nr ? src[j * ldb + p] : 0.0f;
  }
}

// ---- the microkernel ----------------------------------------------------------------------

// c [MR,NR] (ldc) (=|+=) Ã sliver [kc,MR]ᵀ · B̃ sliver [kc,NR]; when not accumulating,
// a non-null `bias` [NR] is added to every row.
#if POLYAK_GEMM_AVX512
// Kept out of line so that its loop gets the registers to itself. The loops over the rows
// unroll fully, so acc stays in 28 registers.
[[gnu::noinline]] void microkernel(int64_t kc, const float* __restrict a, const float* __restrict b,
                                   float* c, int64_t ldc, bool accumulate, const float* bias) {
  __m512 acc[MR][2];
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    // C's tile is read only after the loop: ask for its lines now.
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; ++p, a += MR, b += NR) {
    // Ã streams from L2: fetch it a few steps ahead.
    _mm_prefetch(reinterpret_cast<const char*>(a + 8 * MR), _MM_HINT_T0);
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  const bool add_bias = !accumulate && bias;
  const __m512 bias_lo = add_bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
  const __m512 bias_hi = add_bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) {
    float* row = c + i * ldc;
    __m512 lo = acc[i][0], hi = acc[i][1];
    if (accumulate) {
      lo = _mm512_add_ps(lo, _mm512_loadu_ps(row));
      hi = _mm512_add_ps(hi, _mm512_loadu_ps(row + 16));
    } else if (add_bias) {
      lo = _mm512_add_ps(lo, bias_lo);
      hi = _mm512_add_ps(hi, bias_hi);
    }
    _mm512_storeu_ps(row, lo);
    _mm512_storeu_ps(row + 16, hi);
  }
}
#elif POLYAK_GEMM_AVX2
// Kept out of line so that its loop gets the registers to itself.
[[gnu::noinline]] void microkernel(int64_t kc, const float* __restrict a, const float* __restrict b,
                                   float* c, int64_t ldc, bool accumulate, const float* bias) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  // C's tile is read only after the loop: ask for its lines now.
  for (int64_t i = 0; i < MR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p, a += MR, b += NR) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 ai = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(ai, b0, c00);
    c01 = _mm256_fmadd_ps(ai, b1, c01);
    ai = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(ai, b0, c10);
    c11 = _mm256_fmadd_ps(ai, b1, c11);
    ai = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(ai, b0, c20);
    c21 = _mm256_fmadd_ps(ai, b1, c21);
    ai = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(ai, b0, c30);
    c31 = _mm256_fmadd_ps(ai, b1, c31);
    ai = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(ai, b0, c40);
    c41 = _mm256_fmadd_ps(ai, b1, c41);
    ai = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(ai, b0, c50);
    c51 = _mm256_fmadd_ps(ai, b1, c51);
  }
  const bool add_bias = !accumulate && bias;
  const __m256 bias_lo = add_bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
  const __m256 bias_hi = add_bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
  auto store = [&](float* row, __m256 lo, __m256 hi) {
    if (accumulate) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(row + 8));
    } else if (add_bias) {
      lo = _mm256_add_ps(lo, bias_lo);
      hi = _mm256_add_ps(hi, bias_hi);
    }
    _mm256_storeu_ps(row, lo);
    _mm256_storeu_ps(row + 8, hi);
  };
  store(c + 0 * ldc, c00, c01);
  store(c + 1 * ldc, c10, c11);
  store(c + 2 * ldc, c20, c21);
  store(c + 3 * ldc, c30, c31);
  store(c + 4 * ldc, c40, c41);
  store(c + 5 * ldc, c50, c51);
}
#else
// Portable form: the compiler vectorises the j loop for whatever the target offers.
void microkernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                 int64_t ldc, bool accumulate, const float* bias) {
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p, a += MR, b += NR)
    for (int64_t i = 0; i < MR; ++i)
      for (int64_t j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
  for (int64_t i = 0; i < MR; ++i)
    for (int64_t j = 0; j < NR; ++j) {
      const float base = accumulate ? c[i * ldc + j] : bias ? bias[j] : 0.0f;
      c[i * ldc + j] = base + acc[i][j];
    }
}
#endif

// A tile of C [mr,nr] times (gate > 0 ? scale : 0), elementwise (SgemmArgs::gate).
void apply_gate(float* c, int64_t ldc, const Gate& gate, int64_t mr, int64_t nr) {
  for (int64_t i = 0; i < mr; ++i) {
    float* row = c + i * ldc;
    const float* g = gate.p + i * gate.ld;
    for (int64_t j = 0; j < nr; ++j) row[j] = g[j] > 0.0f ? row[j] * gate.scale : 0.0f;
  }
}

// C block [mc,nc] (=|+=) Ã [mc,kc] · B̃ [kc,nc], tile by tile; `bias` [nc] as in the
// microkernel; a non-null gate.p [mc,nc] is applied to each tile once it is written.
void macrokernel(int64_t mc, int64_t nc, int64_t kc, const float* pa, const float* pb, float* c,
                 int64_t ldc, bool accumulate, const float* bias, Gate gate) {
  alignas(64) float tile[MR * NR];
  for (int64_t j0 = 0; j0 < nc; j0 += NR) {
    const int64_t nr = std::min(NR, nc - j0);
    const float* b = pb + j0 * kc;
    for (int64_t i0 = 0; i0 < mc; i0 += MR) {
      const int64_t mr = std::min(MR, mc - i0);
      const float* a = pa + i0 * kc;
      float* ct = c + i0 * ldc + j0;
      const float* bias_j = bias ? bias + j0 : nullptr;
      const Gate gate_ij{gate.p ? gate.p + i0 * gate.ld + j0 : nullptr, gate.ld, gate.scale};
      // The gate's tiles are read from memory right after each product: fetch the next
      // tile's into L2 now, a whole microkernel ahead of its use.
      if (gate.p) {
        const bool down = i0 + MR < mc;
        const int64_t ni = down ? i0 + MR : 0, nj = down ? j0 : j0 + NR;
        for (int64_t i = 0; nj < nc && i < std::min(MR, mc - ni); ++i)
          for (int64_t j = 0; j < std::min(NR, nc - nj); j += 16)
            __builtin_prefetch(gate.p + (ni + i) * gate.ld + nj + j, 0, 1);
      }
      if (mr == MR && nr == NR) {
        microkernel(kc, a, b, ct, ldc, accumulate, bias_j);
        if (gate.p) apply_gate(ct, ldc, gate_ij, MR, NR);
        continue;
      }
      microkernel(kc, a, b, tile, NR, false, nullptr);
      for (int64_t i = 0; i < mr; ++i)
        for (int64_t j = 0; j < nr; ++j) {
          const float base = accumulate ? ct[i * ldc + j] : bias_j ? bias_j[j] : 0.0f;
          ct[i * ldc + j] = base + tile[i * NR + j];
        }
      if (gate.p) apply_gate(ct, ldc, gate_ij, mr, nr);
    }
  }
}

// ---- packing buffers ------------------------------------------------------------------------

// Each thread packs into its own buffers, allocated on its first product and reused. B̃
// has room for any depth block of nc_padded columns: KC·NC floats plus one sliver.
struct PackBuffers {
  float* a = nullptr;  // Ã, MC×KC
  float* b = nullptr;  // B̃, KC×NC
  PackBuffers() {
    const Blocks& bl = blocks();
    a = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * bl.mc * bl.kc));
    b = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * bl.kc * (bl.nc + NR)));
    if (!a || !b) {
      std::free(a);
      std::free(b);
      throw std::bad_alloc();
    }
  }
  ~PackBuffers() {
    std::free(a);
    std::free(b);
  }
  PackBuffers(const PackBuffers&) = delete;
  PackBuffers& operator=(const PackBuffers&) = delete;
};

PackBuffers& pack_buffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
          const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate, const float* bias,
          float* a_sums, Gate gate) {
  if (m <= 0) return;
  if (a_sums) std::fill(a_sums, a_sums + m, 0.0f);
  if (n <= 0) {
    // No C to compute, but op(A)'s row sums are still asked for.
    if (a_sums)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t p = 0; p < k; ++p) a_sums[i] += trans_a ? a[p * lda + i] : a[i * lda + p];
    return;
  }
  if (accumulate) bias = nullptr;
  if (k <= 0) {
    for (int64_t i = 0; i < m && !accumulate; ++i) {
      float* row = c + i * ldc;
      if (bias)
        std::copy(bias, bias + n, row);
      else
        std::fill(row, row + n, 0.0f);
    }
    if (gate.p) apply_gate(c, ldc, gate, m, n);
    return;
  }
  const Blocks& bl = blocks();
  const int64_t KC = bl.kc, MC = bl.mc, NC = bl.nc;
  PackBuffers& buf = pack_buffers();
  // Equal blocks: the depth in ceil(k / KC) parts, the rows in ceil(m / MC) parts of
  // whole slivers.
  const int64_t kc_step = ceil_div(k, ceil_div(k, KC));
  const int64_t mc_step = ceil_div(ceil_div(m, ceil_div(m, MC)), MR) * MR;
  // op(A)(i, p) and op(B)(p, j) as pointers into the stored operands.
  auto a_at = [&](int64_t i, int64_t p) { return trans_a ? a + p * lda + i : a + i * lda + p; };
  auto b_at = [&](int64_t p, int64_t j) { return trans_b ? b + j * ldb + p : b + p * ldb + j; };

  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min(NC, n - jc);
    const int64_t nc_padded = ceil_div(nc, NR) * NR;
    // A narrow C (nc ≤ KC) whose whole depth fits B̃ packs all of op(B) first; each row
    // block of C then takes every depth block while it sits in L2, instead of making one
    // trip to memory per depth block. Not with trans_a: packing Ã then reads short runs of
    // many rows, and the usual order, which reads the neighbouring runs of the same rows
    // next (the next ic), is the one the hardware prefetchers follow.
    const bool whole_depth = !trans_a && nc <= KC && k * nc_padded <= KC * NC;
    const int64_t depth = whole_depth ? k : kc_step;
    for (int64_t dc = 0; dc < k; dc += depth) {
      const int64_t dc_end = std::min(k, dc + depth);
      // B̃ holds the depth blocks of [dc, dc_end) one after another.
      auto packed_b = [&](int64_t pc) { return buf.b + (pc - dc) * nc_padded; };
      for (int64_t pc = dc; pc < dc_end; pc += kc_step)
        pack_b(trans_b, b_at(pc, jc), ldb, std::min(kc_step, k - pc), nc, packed_b(pc));
      for (int64_t ic = 0; ic < m; ic += mc_step) {
        const int64_t mc = std::min(mc_step, m - ic);
        for (int64_t pc = dc; pc < dc_end; pc += kc_step) {
          const int64_t kc = std::min(kc_step, k - pc);
          pack_a(trans_a, a_at(ic, pc), lda, mc, kc, buf.a);
          if (a_sums && jc == 0) add_row_sums(buf.a, mc, kc, a_sums + ic);
          // The first depth block writes C (from the bias, or adds to C); the rest add; the
          // last gates.
          const bool last = pc + kc == k;
          const Gate gate_block{last && gate.p ? gate.p + ic * gate.ld + jc : nullptr, gate.ld,
                                gate.scale};
          macrokernel(mc, nc, kc, buf.a, packed_b(pc), c + ic * ldc + jc, ldc, accumulate || pc > 0,
                      bias ? bias + jc : nullptr, gate_block);
        }
      }
    }
  }
}

}  // namespace
}  // namespace POLYAK_ISA_NAMESPACE

void sgemm(POLYAK_KERNEL_ISA_TAG, const SgemmArgs& g) {
  POLYAK_ISA_NAMESPACE::gemm(g.trans_a, g.trans_b, g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.c,
                             g.ldc, g.accumulate, g.bias, g.a_sums, {g.gate, g.ldg, g.gate_scale});
}

SgemmShape sgemm_shape(POLYAK_KERNEL_ISA_TAG) {
  using namespace POLYAK_ISA_NAMESPACE;
  return {MR, NR, blocks().kc, blocks().mc, blocks().nc};
}

}  // namespace polyak
