// Unary elementwise functions y = f(x), with dx = g · f'(x), every tensor of x's shape.
//
//   neg      y = −x                      dx = −g
//   exp      y = eˣ                      dx = g · y
//   log      y = ln x                    dx = g / x
//   sqrt     y = √x                      dx = g / (2y)
//   pow      y = xᵖ                      dx = g · p · xᵖ⁻¹
//   square   y = x²                      dx = 2 g · x
//   abs      y = |x|                     dx = g · sign(x)           (0 at x = 0)
//   tanh     y = tanh x                  dx = g · (1 − y²)
//   sigmoid  y = σ(x) = 1/(1 + e⁻ˣ)       dx = g · y (1 − y)
//   relu     y = max(x, 0)               dx = g · [y > 0]
//   gelu     y = x Φ(x)                  dx = g · (Φ(x) + x φ(x)),  Φ/φ the normal cdf/pdf
//   elu      y = x (x > 0), α(eˣ − 1)    dx = g (x > 0), g · α eˣ
//   silu     y = x σ(x)                  dx = g · σ(x) (1 + x (1 − σ(x)))
//   clamp    y = min(max(x, lo), hi)     dx = g · [lo ≤ x ≤ hi]
//
// Each backward keeps one tensor: the output where f' is cheapest in terms of y, the input
// otherwise. A device's backward kernel (core/backend.h) takes x, so x is kept there.
//
// The loops and the f32 formulas (vectorisable eˣ, eˣ − 1 and Φ) are in unary_isa.cpp,
// compiled once per ISA; f64 uses libm.
#include <cstdint>

#include "polyak/core/autograd.h"
#include "polyak/core/backend.h"
#include "polyak/core/error.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/unary_kernels.h"

namespace polyak {
namespace {

bool needs_grad(const Tensor& t) {
  return GradMode::enabled() && t.requires_grad();
}

// y = f(x) through the loop compiled for the ISA in use, or the kernel of x's device.
// `cost` is the work per element.
Tensor map_forward(const char* name, const Tensor& x, UnaryOp fn, int64_t cost,
                   UnaryParams p = {}) {
  check_defined(name, "x", x);
  check_floating(name, "x", x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (!x.device().is_cpu()) {
    device_kernels(name, "x", x).unary(fn, p, x, y);
    return y;
  }
  dispatch(x.dtype(), [&]<class T>() {
    with_active_isa([&](auto isa) {
      detail::unary_forward<T>(isa, fn, p, x.data<T>(), y.data<T>(), x.numel(), cost);
    });
  });
  return y;
}

// dx = g · f'(x) from `saved` (y or x, as unary_keeps_output says; x on a device).
Tensor map_backward(UnaryOp fn, UnaryParams p, const Tensor& saved, const Tensor& g, int64_t cost) {
  Tensor dx = Tensor::empty(g.shape(), g.dtype(), g.device());
  if (!g.device().is_cpu()) {
    device_kernels("backward", "gradient", g).unary_backward(fn, p, saved, g, dx);
    return dx;
  }
  dispatch(g.dtype(), [&]<class T>() {
    with_active_isa([&](auto isa) {
      detail::unary_backward<T>(isa, fn, p, saved.data<T>(), g.data<T>(), dx.data<T>(), g.numel(),
                                cost);
    });
  });
  return dx;
}

// Records `name` on y with the backward of `fn`, keeping x or y as unary_keeps_output says.
void record_unary(Tensor& y, const char* name, const Tensor& x, UnaryOp fn, int64_t cost,
                  UnaryParams p = {}) {
  if (!needs_grad(x)) return;
  // The output is kept detached so that its own node does not own it. A device's backward
  // kernel always takes x.
  Tensor saved = detail::unary_keeps_output(fn) && x.device().is_cpu() ? y.detach() : x;
  record(y, name, {x}, [saved, fn, p, cost](const Tensor& g) -> std::vector<Tensor> {
    return {map_backward(fn, p, saved, g, cost)};
  });
}

}  // namespace

Tensor neg(const Tensor& a) {
  Tensor y = map_forward("neg", a, UnaryOp::neg, 1);
  if (needs_grad(a))
    record(y, "NegBackward", {a}, [](const Tensor& g) -> std::vector<Tensor> { return {neg(g)}; });
  return y;
}

Tensor exp(const Tensor& x) {
  Tensor y = map_forward("exp", x, UnaryOp::exp, 8);
  record_unary(y, "ExpBackward", x, UnaryOp::exp, 1);
  return y;
}

Tensor log(const Tensor& x) {
  Tensor y = map_forward("log", x, UnaryOp::log, 8);
  record_unary(y, "LogBackward", x, UnaryOp::log, 1);
  return y;
}

Tensor sqrt(const Tensor& x) {
  Tensor y = map_forward("sqrt", x, UnaryOp::sqrt, 4);
  record_unary(y, "SqrtBackward", x, UnaryOp::sqrt, 1);
  return y;
}

Tensor pow(const Tensor& x, double exponent) {
  const UnaryParams p{exponent, 0};
  Tensor y = map_forward("pow", x, UnaryOp::pow, 16, p);
  if (exponent != 0.0) {
    record_unary(y, "PowBackward", x, UnaryOp::pow, 16, p);
  } else if (needs_grad(x)) {
    record(y, "PowBackward", {x}, [](const Tensor& g) -> std::vector<Tensor> {
      return {Tensor::zeros(g.shape(), g.dtype(), g.device())};
    });
  }
  return y;
}

Tensor square(const Tensor& x) {
  Tensor y = map_forward("square", x, UnaryOp::square, 1);
  record_unary(y, "SquareBackward", x, UnaryOp::square, 1);
  return y;
}

Tensor abs(const Tensor& x) {
  Tensor y = map_forward("abs", x, UnaryOp::abs, 1);
  record_unary(y, "AbsBackward", x, UnaryOp::abs, 1);
  return y;
}

Tensor tanh(const Tensor& x) {
  Tensor y = map_forward("tanh", x, UnaryOp::tanh, 16);
  record_unary(y, "TanhBackward", x, UnaryOp::tanh, 1);
  return y;
}

Tensor sigmoid(const Tensor& x) {
  Tensor y = map_forward("sigmoid", x, UnaryOp::sigmoid, 8);
  record_unary(y, "SigmoidBackward", x, UnaryOp::sigmoid, 1);
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y = map_forward("relu", x, UnaryOp::relu, 1);
  record_unary(y, "ReluBackward", x, UnaryOp::relu, 1);
  return y;
}

Tensor gelu(const Tensor& x) {
  Tensor y = map_forward("gelu", x, UnaryOp::gelu, 16);
  record_unary(y, "GeluBackward", x, UnaryOp::gelu, 24);
  return y;
}

Tensor elu(const Tensor& x, double alpha) {
  const UnaryParams p{alpha, 0};
  Tensor y = map_forward("elu", x, UnaryOp::elu, 8, p);
  record_unary(y, "EluBackward", x, UnaryOp::elu, 8, p);
  return y;
}

Tensor silu(const Tensor& x) {
  Tensor y = map_forward("silu", x, UnaryOp::silu, 8);
  record_unary(y, "SiluBackward", x, UnaryOp::silu, 8);
  return y;
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  POLYAK_CHECK(lo <= hi, "clamp: lo = ", lo, " and hi = ", hi, ", expected lo ≤ hi");
  const UnaryParams p{lo, hi};
  Tensor y = map_forward("clamp", x, UnaryOp::clamp, 1, p);
  record_unary(y, "ClampBackward", x, UnaryOp::clamp, 1, p);
  return y;
}

}  // namespace polyak
