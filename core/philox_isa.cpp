// Philox 4x32-10 blocks, many at a time: compiled once per ISA (cmake/isa.cmake).
//
// W counters side by side, one per 32-bit lane (W = 16 with AVX-512, 8 with AVX2): each
// round's two 32×32→64 products are taken for the even lanes and, shifted, for the odd
// lanes, and the halves are blended back together. Blocks left over, and the baseline
// build, take the scalar rounds. Every path gives the words philox4x32() gives.
#include <array>

#include "polyak/core/philox.h"
#include "polyak/core/rng.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace polyak {
namespace POLYAK_ISA_NAMESPACE {
namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
using Vec = __m512i;
inline Vec splat(uint32_t x) {
  return _mm512_set1_epi32(static_cast<int>(x));
}
inline Vec mul_lo_hi(Vec a, Vec m, Vec* lo) {
  // hi and lo words of a·m per 32-bit lane
  const Vec even = _mm512_mul_epu32(a, m);
  const Vec odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  return _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}
inline Vec vxor(Vec a, Vec b) {
  return _mm512_xor_si512(a, b);
}
inline Vec lane_index() {
  return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
inline Vec vadd(Vec a, Vec b) {
  return _mm512_add_epi32(a, b);
}
inline Vec vload(const uint32_t* p) {
  return _mm512_loadu_si512(p);
}
inline void vstore(uint32_t* p, Vec v) {
  _mm512_storeu_si512(p, v);
}
// Stores word j of lane i (c[j] lane i) at out[4i + j]: a 4×4 transpose of 32-bit words
// inside each 128-bit lane, then a 4×4 transpose of the 128-bit lanes.
inline void store_blocks(uint32_t* out, const Vec c[4]) {
  const Vec t0 = _mm512_unpacklo_epi32(c[0], c[1]), t1 = _mm512_unpackhi_epi32(c[0], c[1]);
  const Vec t2 = _mm512_unpacklo_epi32(c[2], c[3]), t3 = _mm512_unpackhi_epi32(c[2], c[3]);
  // u_k holds blocks k, k + 4, k + 8, k + 12 (one per 128-bit lane).
  const Vec u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);
  const Vec u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);
  // v0 = blocks 0 4 1 5, v1 = 2 6 3 7, v2 = 8 12 9 13, v3 = 10 14 11 15.
  const Vec v0 = _mm512_shuffle_i32x4(u0, u1, 0x44), v1 = _mm512_shuffle_i32x4(u2, u3, 0x44);
  const Vec v2 = _mm512_shuffle_i32x4(u0, u1, 0xEE), v3 = _mm512_shuffle_i32x4(u2, u3, 0xEE);
  vstore(out, _mm512_shuffle_i32x4(v0, v1, 0x88));       // blocks 0..3
  vstore(out + 16, _mm512_shuffle_i32x4(v0, v1, 0xDD));  // 4..7
  vstore(out + 32, _mm512_shuffle_i32x4(v2, v3, 0x88));  // 8..11
  vstore(out + 48, _mm512_shuffle_i32x4(v2, v3, 0xDD));  // 12..15
}
#elif defined(__AVX2__)
constexpr int kLanes = 8;
using Vec = __m256i;
inline Vec splat(uint32_t x) {
  return _mm256_set1_epi32(static_cast<int>(x));
}
inline Vec mul_lo_hi(Vec a, Vec m, Vec* lo) {
  const Vec even = _mm256_mul_epu32(a, m);
  const Vec odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  return _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}
inline Vec vxor(Vec a, Vec b) {
  return _mm256_xor_si256(a, b);
}
inline Vec lane_index() {
  return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
}
inline Vec vadd(Vec a, Vec b) {
  return _mm256_add_epi32(a, b);
}
inline Vec vload(const uint32_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const Vec*>(p));
}
inline void vstore(uint32_t* p, Vec v) {
  _mm256_storeu_si256(reinterpret_cast<Vec*>(p), v);
}
// Stores word j of lane i (c[j] lane i) at out[4i + j]: a 4×4 transpose of 32-bit words
// inside each 128-bit lane, then the two halves recombined.
inline void store_blocks(uint32_t* out, const Vec c[4]) {
  const Vec t0 = _mm256_unpacklo_epi32(c[0], c[1]), t1 = _mm256_unpackhi_epi32(c[0], c[1]);
  const Vec t2 = _mm256_unpacklo_epi32(c[2], c[3]), t3 = _mm256_unpackhi_epi32(c[2], c[3]);
  // u_k holds blocks k and k + 4.
  const Vec u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const Vec u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  vstore(out, _mm256_permute2x128_si256(u0, u1, 0x20));       // blocks 0, 1
  vstore(out + 8, _mm256_permute2x128_si256(u2, u3, 0x20));   // 2, 3
  vstore(out + 16, _mm256_permute2x128_si256(u0, u1, 0x31));  // 4, 5
  vstore(out + 24, _mm256_permute2x128_si256(u2, u3, 0x31));  // 6, 7
}
#else
constexpr int kLanes = 0;
#endif

}  // namespace
}  // namespace POLYAK_ISA_NAMESPACE

void philox_fill(POLYAK_KERNEL_ISA_TAG, uint64_t seed, uint64_t first, int64_t count,
                 uint32_t* out) {
  using namespace POLYAK_ISA_NAMESPACE;
  const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
  int64_t b = 0;
#if defined(__AVX2__)
  const Vec mul0 = splat(kPhiloxMul0), mul1 = splat(kPhiloxMul1);
  alignas(64) uint32_t hi[kLanes];
  for (; b + kLanes <= count; b += kLanes) {
    const uint64_t base = first + static_cast<uint64_t>(b);
    // The low word of kLanes consecutive counters, and the high word (which the low words
    // carry into only when they wrap inside this batch).
    Vec c[4];
    c[0] = vadd(splat(static_cast<uint32_t>(base)), lane_index());
    if ((base >> 32) == ((base + kLanes - 1) >> 32)) {
      c[1] = splat(static_cast<uint32_t>(base >> 32));
    } else {
      for (int i = 0; i < kLanes; ++i)
        hi[i] = static_cast<uint32_t>((base + static_cast<uint64_t>(i)) >> 32);
      c[1] = vload(hi);
    }
    c[2] = splat(0);
    c[3] = splat(0);
    uint32_t k0 = key0, k1 = key1;
    for (int round = 0; round < 10; ++round) {
      Vec lo0, lo1;
      const Vec hi0 = mul_lo_hi(c[0], mul0, &lo0);
      const Vec hi1 = mul_lo_hi(c[2], mul1, &lo1);
      c[0] = vxor(vxor(hi1, c[1]), splat(k0));
      c[1] = lo1;
      c[2] = vxor(vxor(hi0, c[3]), splat(k1));
      c[3] = lo0;
      k0 += kPhiloxWeyl0;
      k1 += kPhiloxWeyl1;
    }
    store_blocks(out + 4 * b, c);
  }
#endif
  for (; b < count; ++b) {
    const uint64_t n = first + static_cast<uint64_t>(b);
    const auto w = philox4x32({static_cast<uint32_t>(n), static_cast<uint32_t>(n >> 32), 0u, 0u},
                              {key0, key1});
    for (int j = 0; j < 4; ++j) out[4 * b + j] = w[static_cast<size_t>(j)];
  }
}

}  // namespace polyak
