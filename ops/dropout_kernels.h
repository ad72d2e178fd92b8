// Dropout's mask loop, compiled once per ISA (ops/dropout_isa.cpp; internal to ops/).
#pragma once

#include <cstdint>

#include "polyak/core/cpu.h"

namespace polyak::detail {

// dst[i] = src[i] · scale where word i of the Philox stream of `seed` starting at block
// `first` (word i mod 4 of block first + i/4) is ≥ threshold, else 0; i < n. T is float
// or double.
#define POLYAK_DROPOUT_DECLARE(isa)                                                    \
  template <class T>                                                                   \
  void dropout_apply(IsaTag<Isa::isa>, const T* src, T* dst, int64_t n, uint64_t seed, \
                     uint64_t first, uint32_t threshold, T scale);
POLYAK_FOR_EACH_ISA(POLYAK_DROPOUT_DECLARE)
#undef POLYAK_DROPOUT_DECLARE

}  // namespace polyak::detail
