// layer_norm's and rms_norm's row loops, compiled once per ISA (ops/norm_isa.cpp; ops/norm.cpp
// has the ops and their formulas; internal to ops/). x, y, dy, dx [R, C]; gamma, beta,
// dgamma, dbeta [C]; mean, rstd, rms [R]. A null gamma or beta is no affine term; a null
// dx, dgamma or dbeta is a gradient not wanted. T is float or double.
#pragma once

#include <cstdint>

#include "polyak/core/cpu.h"

namespace polyak::detail {

#define POLYAK_NORM_DECLARE(isa)                                                                  \
  template <class T>                                                                              \
  void layer_norm_forward(IsaTag<Isa::isa>, const T* x, const T* gamma, const T* beta, T* y,      \
                          T* mean, T* rstd, int64_t R, int64_t C, T eps);                         \
  template <class T>                                                                              \
  void layer_norm_backward(IsaTag<Isa::isa>, const T* x, const T* dy, const T* mean,              \
                           const T* rstd, const T* gamma, T* dx, T* dgamma, T* dbeta, int64_t R,  \
                           int64_t C);                                                            \
  template <class T>                                                                              \
  void rms_norm_forward(IsaTag<Isa::isa>, const T* x, const T* gamma, T* y, T* rms, int64_t R,    \
                        int64_t C, T eps);                                                        \
  template <class T>                                                                              \
  void rms_norm_backward(IsaTag<Isa::isa>, const T* x, const T* dy, const T* rms, const T* gamma, \
                         T* dx, T* dgamma, int64_t R, int64_t C, T eps);
POLYAK_FOR_EACH_ISA(POLYAK_NORM_DECLARE)
#undef POLYAK_NORM_DECLARE

}  // namespace polyak::detail
