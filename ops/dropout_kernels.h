// Dropout's mask loop, compiled once per ISA (ops/dropout_isa.cpp; internal to ops/).
#pragma once

#include <cstdint>

#include "polyak/core/cpu.h"

namespace polyak::detail {

// dst[i] = f(src[i]) · scale where the 16-bit draw i of the Philox stream of `seed`
// starting at block `first` (half i mod 2, low first, of word (i/2) mod 4 of block
// first + i/8) is ≥ threshold (< 2¹⁶), else 0; i < n. f is the identity, or relu when
// `relu` (relu_dropout's forward, the same mask); a non-null `addend` [n] (not with relu) is
// added after the mask (dropout_add's forward). T is float or double.
// relu_dropout_backward: dx[i] = g[i] · scale where y[i] > 0 (the element was kept and
// its relu input was positive), else 0.
#define POLYAK_DROPOUT_DECLARE(isa)                                                            \
  template <class T>                                                                           \
  void dropout_apply(IsaTag<Isa::isa>, const T* src, T* dst, int64_t n, uint64_t seed,         \
                     uint64_t first, uint32_t threshold, T scale, bool relu, const T* addend); \
  template <class T>                                                                           \
  void relu_dropout_backward(IsaTag<Isa::isa>, const T* y, const T* g, T* dx, int64_t n, T scale);
POLYAK_FOR_EACH_ISA(POLYAK_DROPOUT_DECLARE)
#undef POLYAK_DROPOUT_DECLARE

}  // namespace polyak::detail
