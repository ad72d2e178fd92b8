// The unary functions' loops, compiled once per ISA (ops/unary_isa.cpp has the formulas;
// ops/unary.cpp the ops; internal to ops/). T is float or double; n elements, contiguous.
#pragma once

#include <cstdint>

#include "polyak/core/cpu.h"

namespace polyak::detail {

// The functions. The first eleven mirror cuda::UnaryOp, in its order (pow, elu and clamp
// have no cuda kernel).
enum class UnaryFn : uint8_t {
  neg,
  exp,
  log,
  sqrt,
  square,
  abs,
  tanh,
  sigmoid,
  relu,
  gelu,
  silu,
  pow,
  elu,
  clamp
};

// The parameters of the functions that have some: pow's exponent (a), elu's α (a),
// clamp's bounds (a = lo, b = hi).
struct UnaryParams {
  double a = 0, b = 0;
};

// unary_forward:  y[i] = f(x[i]).
// unary_backward: dx[i] = g[i] · f'(x[i]), from saved[i] = y[i] for exp, sqrt, tanh,
//                 sigmoid and relu (unary_keeps_output), x[i] for the others.
// `cost` is the work per element, for parallel_for.
#define POLYAK_UNARY_DECLARE(isa)                                                              \
  template <class T>                                                                           \
  void unary_forward(IsaTag<Isa::isa>, UnaryFn fn, UnaryParams p, const T* x, T* y, int64_t n, \
                     int64_t cost);                                                            \
  template <class T>                                                                           \
  void unary_backward(IsaTag<Isa::isa>, UnaryFn fn, UnaryParams p, const T* saved, const T* g, \
                      T* dx, int64_t n, int64_t cost);
POLYAK_FOR_EACH_ISA(POLYAK_UNARY_DECLARE)
#undef POLYAK_UNARY_DECLARE

// True when unary_backward reads the output (the derivative is cheapest in terms of y).
constexpr bool unary_keeps_output(UnaryFn fn) {
  return fn == UnaryFn::exp || fn == UnaryFn::sqrt || fn == UnaryFn::tanh ||
         fn == UnaryFn::sigmoid || fn == UnaryFn::relu;
}

}  // namespace polyak::detail
