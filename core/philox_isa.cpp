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
  alignas(64) uint32_t words[4][kLanes];
  alignas(64) uint32_t hi[kLanes];
  for (; b + kLanes <= count; b += kLanes) {
    const uint64_t base = first + static_cast<uint64_t>(b);
    // The low word of kLanes consecutive counters, and the carry into the high word.
    Vec c0 = vadd(splat(static_cast<uint32_t>(base)), lane_index());
    for (int i = 0; i < kLanes; ++i)
      hi[i] = static_cast<uint32_t>((base + static_cast<uint64_t>(i)) >> 32);
    Vec c1 = vload(hi);
    Vec c2 = splat(0), c3 = splat(0);
    uint32_t k0 = key0, k1 = key1;
    for (int round = 0; round < 10; ++round) {
      Vec lo0, lo1;
      const Vec hi0 = mul_lo_hi(c0, mul0, &lo0);
      const Vec hi1 = mul_lo_hi(c2, mul1, &lo1);
      const Vec n0 = vxor(vxor(hi1, c1), splat(k0));
      const Vec n2 = vxor(vxor(hi0, c3), splat(k1));
      c0 = n0;
      c1 = lo1;
      c2 = n2;
      c3 = lo0;
      k0 += kPhiloxWeyl0;
      k1 += kPhiloxWeyl1;
    }
    vstore(words[0], c0);
    vstore(words[1], c1);
    vstore(words[2], c2);
    vstore(words[3], c3);
    uint32_t* o = out + 4 * b;
    for (int i = 0; i < kLanes; ++i)
      for (int j = 0; j < 4; ++j) o[4 * i + j] = words[j][i];
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
