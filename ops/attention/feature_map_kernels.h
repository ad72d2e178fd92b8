// The feature maps' loops, compiled once per ISA (feature_maps_isa.cpp; internal to
// ops/attention). T is float or double; n elements, contiguous.
#pragma once

#include <cstdint>

#include "polyak/core/cpu.h"

namespace polyak::detail {

#define POLYAK_FEATURE_MAP_DECLARE(isa)                                                            \
  template <class T>                                                                               \
  void elu_feature_map_forward(IsaTag<Isa::isa>, const T* x, T* y, int64_t n);                     \
  template <class T>                                                                               \
  void elu_feature_map_backward(IsaTag<Isa::isa>, const T* x, const T* dy, T* dx, int64_t n);      \
  /* x, dx [B, N, H·D]; y, dy [B, H, N, D] */                                                     \
  template <class T>                                                                               \
  void elu_feature_map_heads_forward(IsaTag<Isa::isa>, const T* x, T* y, int64_t B, int64_t N,     \
                                     int64_t H, int64_t D);                                        \
  template <class T>                                                                               \
  void elu_feature_map_heads_backward(IsaTag<Isa::isa>, const T* x, const T* dy, T* dx, int64_t B, \
                                      int64_t N, int64_t H, int64_t D);
POLYAK_FOR_EACH_ISA(POLYAK_FEATURE_MAP_DECLARE)
#undef POLYAK_FEATURE_MAP_DECLARE

}  // namespace polyak::detail
