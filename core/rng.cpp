// Philox 4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011). Ten rounds of two 32×32→64-bit multiplies with a Weyl-sequence key schedule.
#include "core/rng.h"

#include <cmath>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace polyak {
namespace {
constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
}  // namespace

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kMul0) * c[0];
    uint64_t p1 = static_cast<uint64_t>(kMul1) * c[2];
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kWeyl0;
    k[1] += kWeyl1;
  }
  return c;
}

std::array<uint32_t, 4> Generator::block(uint64_t b) const {
  return philox4x32({static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), 0u, 0u},
                    {static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32)});
}

void Generator::fill_blocks(uint64_t first, int64_t count, uint32_t* out) const {
  const uint32_t key0 = static_cast<uint32_t>(seed_), key1 = static_cast<uint32_t>(seed_ >> 32);
  int64_t b = 0;
#if defined(__AVX2__)
  // Eight counters side by side, one per 32-bit lane; each 32×32→64 product is done for the
  // even lanes and, shifted, for the odd lanes, then the halves are blended back together.
  const __m256i mul0 = _mm256_set1_epi32(static_cast<int>(kMul0));
  const __m256i mul1 = _mm256_set1_epi32(static_cast<int>(kMul1));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  alignas(32) uint32_t words[4][8];
  for (; b + 8 <= count; b += 8) {
    const uint64_t base = first + static_cast<uint64_t>(b);
    // The low word of eight consecutive counters, and the carry into the high word.
    __m256i c0 =
        _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(base))), lane);
    alignas(32) uint32_t hi[8];
    for (int i = 0; i < 8; ++i)
      hi[i] = static_cast<uint32_t>((base + static_cast<uint64_t>(i)) >> 32);
    __m256i c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));
    __m256i c2 = _mm256_setzero_si256(), c3 = _mm256_setzero_si256();
    uint32_t k0 = key0, k1 = key1;
    for (int round = 0; round < 10; ++round) {
      const __m256i p0_even = _mm256_mul_epu32(c0, mul0);
      const __m256i p0_odd = _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), mul0);
      const __m256i p1_even = _mm256_mul_epu32(c2, mul1);
      const __m256i p1_odd = _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), mul1);
      const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(p0_even, 32), p0_odd, 0xAA);
      const __m256i lo0 = _mm256_blend_epi32(p0_even, _mm256_slli_epi64(p0_odd, 32), 0xAA);
      const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(p1_even, 32), p1_odd, 0xAA);
      const __m256i lo1 = _mm256_blend_epi32(p1_even, _mm256_slli_epi64(p1_odd, 32), 0xAA);
      const __m256i n0 =
          _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
      const __m256i n2 =
          _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
      c0 = n0;
      c1 = lo1;
      c2 = n2;
      c3 = lo0;
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(words[0]), c0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(words[1]), c1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(words[2]), c2);
    _mm256_store_si256(reinterpret_cast<__m256i*>(words[3]), c3);
    uint32_t* o = out + 4 * b;
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 4; ++j) o[4 * i + j] = words[j][i];
  }
#endif
  for (; b < count; ++b) {
    const auto w = block(first + static_cast<uint64_t>(b));
    for (int j = 0; j < 4; ++j) out[4 * b + j] = w[static_cast<size_t>(j)];
  }
}

double Generator::uniform() {
  return uint_to_unit(block(advance(1))[0]) - 1.0 / 4294967296.0;
}

double Generator::normal() {
  auto w = block(advance(1));
  double u1 = uint_to_unit(w[0]), u2 = uint_to_unit(w[1]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

uint64_t Generator::integer(uint64_t n) {
  auto w = block(advance(1));
  uint64_t x = (static_cast<uint64_t>(w[0]) << 32) | w[1];
  return n == 0 ? 0 : x % n;
}

}  // namespace polyak
