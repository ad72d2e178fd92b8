// The unary functions' loops, compiled once per ISA (ops/unary_isa.cpp has the formulas;
// ops/unary.cpp the ops; internal to ops/). T is float or double; n elements, contiguous.
// The functions are core's UnaryOp (core/backend.h), the list every device's kernels share.
#pragma once

#include <cstdint>

#include "polyak/core/backend.h"
#include "polyak/core/cpu.h"

namespace polyak::detail {

// unary_forward:  y[i] = f(x[i]).
// unary_backward: dx[i] = g[i] · f'(x[i]), from saved[i] = y[i] for exp, sqrt, tanh,
//                 sigmoid and relu (unary_keeps_output), x[i] for the others.
// `cost` is the work per element, for parallel_for.
#define POLYAK_UNARY_DECLARE(isa)                                                              \
  template <class T>                                                                           \
  void unary_forward(IsaTag<Isa::isa>, UnaryOp fn, UnaryParams p, const T* x, T* y, int64_t n, \
                     int64_t cost);                                                            \
  template <class T>                                                                           \
  void unary_backward(IsaTag<Isa::isa>, UnaryOp fn, UnaryParams p, const T* saved, const T* g, \
                      T* dx, int64_t n, int64_t cost);
POLYAK_FOR_EACH_ISA(POLYAK_UNARY_DECLARE)
#undef POLYAK_UNARY_DECLARE

// True when unary_backward reads the output (the derivative is cheapest in terms of y).
constexpr bool unary_keeps_output(UnaryOp fn) {
  return fn == UnaryOp::exp || fn == UnaryOp::sqrt || fn == UnaryOp::tanh ||
         fn == UnaryOp::sigmoid || fn == UnaryOp::relu;
}

}  // namespace polyak::detail
