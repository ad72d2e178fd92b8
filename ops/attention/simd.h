// 32-byte vector helpers for the kernels that keep accumulators in registers (internal to
// ops/attention; included only by sources compiled once per ISA, see core/cpu.h).
#pragma once

#include <cstdint>
#include <cstring>

#include "polyak/core/cpu.h"

namespace polyak::detail {
inline namespace POLYAK_ISA_NAMESPACE {

// 32-byte vectors as GCC/Clang vector extensions (one AVX2 register on x86; the compiler
// splits them on narrower targets), for loops that keep accumulators in registers across
// an outer loop, which `omp simd` alone does not guarantee.
template <class T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(32)));
  enum : int { kLanes = 8 };  // (an enum: kernels compile with -fno-weak, no inline variables)
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(32)));
  enum : int { kLanes = 4 };
};

template <class T>
inline typename Simd<T>::V load_vec(const T* p) {
  typename Simd<T>::V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <class T>
inline void store_vec(T* p, const typename Simd<T>::V& v) {
  std::memcpy(p, &v, sizeof(v));
}

// out[r] = the sum of the lanes of P[r], r < n: groups of one vector's width are summed
// with shuffles (a transpose-and-add tree) instead of one horizontal sum per row.
inline void sum_lanes(int64_t n, const Simd<float>::V* P, float* out) {
  using F = Simd<float>::V;
  auto hadd = [](const F& a, const F& b) {
    return __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14) +
           __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
  };
  int64_t r = 0;
  for (; r + 8 <= n; r += 8) {
    const F u0 = hadd(hadd(P[r], P[r + 1]), hadd(P[r + 2], P[r + 3]));
    const F u1 = hadd(hadd(P[r + 4], P[r + 5]), hadd(P[r + 6], P[r + 7]));
    store_vec(out + r, __builtin_shufflevector(u0, u1, 0, 1, 2, 3, 8, 9, 10, 11) +
                           __builtin_shufflevector(u0, u1, 4, 5, 6, 7, 12, 13, 14, 15));
  }
  for (; r < n; ++r) {
    float acc = 0;
    for (int l = 0; l < 8; ++l) acc += P[r][l];
    out[r] = acc;
  }
}

inline void sum_lanes(int64_t n, const Simd<double>::V* P, double* out) {
  using D4 = Simd<double>::V;
  int64_t r = 0;
  for (; r + 4 <= n; r += 4) {
    const D4 t0 = __builtin_shufflevector(P[r], P[r + 1], 0, 4, 2, 6) +
                  __builtin_shufflevector(P[r], P[r + 1], 1, 5, 3, 7);
    const D4 t1 = __builtin_shufflevector(P[r + 2], P[r + 3], 0, 4, 2, 6) +
                  __builtin_shufflevector(P[r + 2], P[r + 3], 1, 5, 3, 7);
    store_vec(out + r, __builtin_shufflevector(t0, t1, 0, 1, 4, 5) +
                           __builtin_shufflevector(t0, t1, 2, 3, 6, 7));
  }
  for (; r < n; ++r) out[r] = P[r][0] + P[r][1] + P[r][2] + P[r][3];
}

}  // namespace POLYAK_ISA_NAMESPACE
}  // namespace polyak::detail
