// bf16 rounding of f32 values: the upper 16 bits of an f32 (sign, 8 exponent bits, 7
// mantissa bits), rounded to nearest, ties to even. What autocast's device GEMMs feed
// their products (core/autocast.h); the same function on the host (the tests' executors)
// and in the CUDA conversion kernel, so that both round every value alike.
//
// Ties to even: add 0x7FFF plus the lowest kept bit, then drop the low half. A value past
// the largest finite bf16 (0x7F7F, 3.3895e38) by half an ulp or more rounds to ±inf, as
// IEEE rounding does; ±inf stays itself; NaN stays a NaN (quiet, sign kept) rather than
// rounding into inf.
#pragma once

#include <cstdint>
#if !defined(__CUDA_ARCH__)
#include <cstring>
#endif

#include "polyak/core/hd.h"

namespace polyak {

POLYAK_HD inline uint32_t f32_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

POLYAK_HD inline float f32_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// The bf16 nearest to x, as its 16 bits.
POLYAK_HD inline uint16_t bf16_bits(float x) {
  const uint32_t u = f32_bits(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// The bf16 nearest to x, as an f32 (its low 16 bits zero).
POLYAK_HD inline float round_bf16(float x) {
  return f32_from_bits(static_cast<uint32_t>(bf16_bits(x)) << 16);
}

}  // namespace polyak
