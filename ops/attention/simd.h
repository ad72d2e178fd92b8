// Register-width vector helpers for the kernels that keep accumulators in registers
// (internal to ops/attention; included only by sources compiled once per ISA, see
// core/cpu.h).
#pragma once

#include <cstdint>
#include <cstring>

#include "polyak/core/cpu.h"

namespace polyak::detail {
inline namespace POLYAK_ISA_NAMESPACE {

// Vectors as GCC/Clang vector extensions, for loops that keep accumulators in registers
// across an outer loop, which `omp simd` alone does not guarantee. They are one register
// wide: 64 bytes where the compilation has AVX-512, else 32 bytes (one AVX2 register; the
// compiler splits them on narrower targets).
typedef float F8 __attribute__((vector_size(32)));
typedef double D4 __attribute__((vector_size(32)));
#if defined(__AVX512F__)
typedef float F16 __attribute__((vector_size(64)));
typedef double D8 __attribute__((vector_size(64)));
#endif

template <class T>
struct Simd;
#if defined(__AVX512F__)
template <>
struct Simd<float> {
  typedef F16 V;
  // kRegisters: the vector registers of the ISA. (An enum: kernels compile with -fno-weak,
  // no inline variables.)
  enum : int { kLanes = 16, kRegisters = 32 };
};
template <>
struct Simd<double> {
  typedef D8 V;
  enum : int { kLanes = 8, kRegisters = 32 };
};
#else
template <>
struct Simd<float> {
  typedef F8 V;
  enum : int { kLanes = 8, kRegisters = 16 };
};
template <>
struct Simd<double> {
  typedef D4 V;
  enum : int { kLanes = 4, kRegisters = 16 };
};
#endif

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

// row(r, chain) for r < n, the even rows on chain 0 and the odd rows on chain 1: two
// accumulator sets, so that a sum over the rows is two dependency chains, not one.
template <class F>
inline void rows_in_two_chains(int64_t n, F&& row) {
  int64_t r = 0;
  for (; r + 1 < n; r += 2) {
    row(r, 0);
    row(r + 1, 1);
  }
  if (r < n) row(r, 0);
}

// The lane sums of eight 8-float vectors, as one vector: a transpose-and-add tree of
// shuffles instead of one horizontal sum per vector.
inline F8 sum_lanes8(const F8 p[8]) {
  auto hadd = [](const F8& a, const F8& b) {
    return __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14) +
           __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
  };
  const F8 u0 = hadd(hadd(p[0], p[1]), hadd(p[2], p[3]));
  const F8 u1 = hadd(hadd(p[4], p[5]), hadd(p[6], p[7]));
  return __builtin_shufflevector(u0, u1, 0, 1, 2, 3, 8, 9, 10, 11) +
         __builtin_shufflevector(u0, u1, 4, 5, 6, 7, 12, 13, 14, 15);
}

// The lane sums of four 4-double vectors, as one vector.
inline D4 sum_lanes4(const D4 p[4]) {
  const D4 t0 = __builtin_shufflevector(p[0], p[1], 0, 4, 2, 6) +
                __builtin_shufflevector(p[0], p[1], 1, 5, 3, 7);
  const D4 t1 = __builtin_shufflevector(p[2], p[3], 0, 4, 2, 6) +
                __builtin_shufflevector(p[2], p[3], 1, 5, 3, 7);
  return __builtin_shufflevector(t0, t1, 0, 1, 4, 5) + __builtin_shufflevector(t0, t1, 2, 3, 6, 7);
}

// The sum of the lanes of one vector, by halves (a short tree, not a chain of n − 1 adds).
inline float lane_sum(const F8& a) {
  const auto h =
      __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  const auto q = __builtin_shufflevector(h, h, 0, 1) + __builtin_shufflevector(h, h, 2, 3);
  return q[0] + q[1];
}
inline double lane_sum(const D4& a) {
  const auto h = __builtin_shufflevector(a, a, 0, 1) + __builtin_shufflevector(a, a, 2, 3);
  return h[0] + h[1];
}
#if defined(__AVX512F__)
inline float lane_sum(const F16& a) {
  return lane_sum(F8(__builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7) +
                     __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15)));
}
inline double lane_sum(const D8& a) {
  return lane_sum(
      D4(__builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7)));
}
#endif

// Σ x ⊙ y (n elements) in whole vectors, then the rest: vec.h's dot with a shorter sum at the
// end, for dot products on a sweep's critical path.
template <class T>
inline T dot_vec(int64_t n, const T* x, const T* y) {
  using V = typename Simd<T>::V;
  constexpr int kL = Simd<T>::kLanes;
  V acc{};
  int64_t i = 0;
  for (; i + kL <= n; i += kL) acc += load_vec(x + i) * load_vec(y + i);
  T sum = lane_sum(acc);
  for (; i < n; ++i) sum += x[i] * y[i];
  return sum;
}

// out[r] = the sum of the lanes of P[r], r < n, a group of rows at a time.
inline void sum_lanes(int64_t n, const F8* P, float* out) {
  int64_t r = 0;
  for (; r + 8 <= n; r += 8) {
    const F8 s = sum_lanes8(P + r);
    std::memcpy(out + r, &s, sizeof(s));
  }
  for (; r < n; ++r) {
    float acc = 0;
    for (int l = 0; l < 8; ++l) acc += P[r][l];
    out[r] = acc;
  }
}

inline void sum_lanes(int64_t n, const D4* P, double* out) {
  int64_t r = 0;
  for (; r + 4 <= n; r += 4) {
    const D4 s = sum_lanes4(P + r);
    std::memcpy(out + r, &s, sizeof(s));
  }
  for (; r < n; ++r) out[r] = P[r][0] + P[r][1] + P[r][2] + P[r][3];
}

#if defined(__AVX512F__)
// The wide vectors first add their two halves, then take the narrow tree.
inline void sum_lanes(int64_t n, const F16* P, float* out) {
  auto fold = [](const F16& a) {
    return __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7) +
           __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15);
  };
  int64_t r = 0;
  for (; r + 8 <= n; r += 8) {
    F8 h[8];
    for (int j = 0; j < 8; ++j) h[j] = fold(P[r + j]);
    const F8 s = sum_lanes8(h);
    std::memcpy(out + r, &s, sizeof(s));
  }
  for (; r < n; ++r) {
    float acc = 0;
    for (int l = 0; l < 16; ++l) acc += P[r][l];
    out[r] = acc;
  }
}

inline void sum_lanes(int64_t n, const D8* P, double* out) {
  auto fold = [](const D8& a) {
    return __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  };
  int64_t r = 0;
  for (; r + 4 <= n; r += 4) {
    D4 h[4];
    for (int j = 0; j < 4; ++j) h[j] = fold(P[r + j]);
    const D4 s = sum_lanes4(h);
    std::memcpy(out + r, &s, sizeof(s));
  }
  for (; r < n; ++r) {
    double acc = 0;
    for (int l = 0; l < 8; ++l) acc += P[r][l];
    out[r] = acc;
  }
}
#endif

}  // namespace POLYAK_ISA_NAMESPACE
}  // namespace polyak::detail
