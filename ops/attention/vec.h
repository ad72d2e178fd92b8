// Small vector loops shared by the attention sweeps (internal to ops/attention).
//
// `omp simd` lets the compiler vectorise the reductions (it would not reassociate a float
// sum on its own); the operands of one call never overlap.
#pragma once

#include <cstdint>
#include <cstring>

#include "polyak/core/cpu.h"

// Each compilation of a kernel (core/cpu.h) gets its own copy of these helpers.
namespace polyak::detail {
inline namespace POLYAK_ISA_NAMESPACE {

// y += a·x   (n elements)
template <class T>
inline void axpy(int64_t n, T a, const T* x, T* y) {
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) y[c] += a * x[c];
}

// Σ x ⊙ y   (n elements)
template <class T>
inline T dot(int64_t n, const T* x, const T* y) {
  T acc = T(0);
#pragma omp simd reduction(+ : acc)
  for (int64_t c = 0; c < n; ++c) acc += x[c] * y[c];
  return acc;
}

}  // namespace POLYAK_ISA_NAMESPACE
}  // namespace polyak::detail
