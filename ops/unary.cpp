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
// otherwise. On a cuda device the backward kernel takes x, so x is kept there.
//
// The loops and the f32 formulas (vectorisable eˣ, eˣ − 1 and Φ) are in unary_isa.cpp,
// compiled once per ISA; f64 uses libm.
#include <cstdint>

#include "polyak/core/autograd.h"
#include "polyak/core/error.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/unary_kernels.h"

#ifdef POLYAK_WITH_CUDA
#include "polyak/cuda/cuda.h"
#endif

namespace polyak {
namespace {

using detail::UnaryFn;
using detail::UnaryParams;

// The functions with a cuda kernel (cuda::UnaryOp mirrors UnaryFn's first members).
bool has_cuda_kernel(UnaryFn fn) {
  return fn <= UnaryFn::silu;
}

#ifdef POLYAK_WITH_CUDA
static_assert(static_cast<int>(cuda::UnaryOp::neg) == static_cast<int>(UnaryFn::neg) &&
                  static_cast<int>(cuda::UnaryOp::relu) == static_cast<int>(UnaryFn::relu) &&
                  static_cast<int>(cuda::UnaryOp::silu) == static_cast<int>(UnaryFn::silu),
              "UnaryFn must list cuda::UnaryOp's members in its order");
cuda::UnaryOp cuda_op(UnaryFn fn) {
  return static_cast<cuda::UnaryOp>(static_cast<uint8_t>(fn));
}
#endif

bool needs_grad(const Tensor& t) {
  return GradMode::enabled() && t.requires_grad();
}

// y = f(x) through the loop compiled for the ISA in use, or the cuda kernel. `cost` is the
// work per element.
Tensor map_forward(const char* name, const Tensor& x, UnaryFn fn, int64_t cost,
                   UnaryParams p = {}) {
  check_defined(name, "x", x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
    if (!has_cuda_kernel(fn)) check_cpu(name, "x", x);
    POLYAK_CHECK(x.dtype() == DType::f32, name, ": x is ", x.dtype(), " on ", x.device(),
                 ", expected f32 (the cuda backend computes in f32)");
#ifdef POLYAK_WITH_CUDA
    cuda::unary(cuda_op(fn), x, y);
    return y;
#else
    fail(name, ": x is on ", x.device(), ", but polyak was built without CUDA");
#endif
  }
  dispatch(x.dtype(), [&]<class T>() {
    with_active_isa([&](auto isa) {
      detail::unary_forward<T>(isa, fn, p, x.data<T>(), y.data<T>(), x.numel(), cost);
    });
  });
  return y;
}

// dx = g · f'(x) from `saved` (y or x, as unary_keeps_output says; x on cuda).
Tensor map_backward(UnaryFn fn, UnaryParams p, const Tensor& saved, const Tensor& g, int64_t cost) {
  Tensor dx = Tensor::empty(g.shape(), g.dtype(), g.device());
  if (g.device().is_cuda()) {
#ifdef POLYAK_WITH_CUDA
    cuda::unary_backward(cuda_op(fn), saved, g, dx);
    return dx;
#else
    fail("backward: a gradient is on ", g.device(), ", but polyak was built without CUDA");
#endif
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
void record_unary(Tensor& y, const char* name, const Tensor& x, UnaryFn fn, int64_t cost,
                  UnaryParams p = {}) {
  if (!needs_grad(x)) return;
  // The output is kept detached so that its own node does not own it. A cuda backward
  // kernel always takes x.
  Tensor saved = detail::unary_keeps_output(fn) && !x.device().is_cuda() ? y.detach() : x;
  record(y, name, {x}, [saved, fn, p, cost](const Tensor& g) -> std::vector<Tensor> {
    return {map_backward(fn, p, saved, g, cost)};
  });
}

}  // namespace

Tensor neg(const Tensor& a) {
  Tensor y = map_forward("neg", a, UnaryFn::neg, 1);
  if (needs_grad(a))
    record(y, "NegBackward", {a}, [](const Tensor& g) -> std::vector<Tensor> { return {neg(g)}; });
  return y;
}

Tensor exp(const Tensor& x) {
  Tensor y = map_forward("exp", x, UnaryFn::exp, 8);
  record_unary(y, "ExpBackward", x, UnaryFn::exp, 1);
  return y;
}

Tensor log(const Tensor& x) {
  Tensor y = map_forward("log", x, UnaryFn::log, 8);
  record_unary(y, "LogBackward", x, UnaryFn::log, 1);
  return y;
}

Tensor sqrt(const Tensor& x) {
  Tensor y = map_forward("sqrt", x, UnaryFn::sqrt, 4);
  record_unary(y, "SqrtBackward", x, UnaryFn::sqrt, 1);
  return y;
}

Tensor pow(const Tensor& x, double exponent) {
  const UnaryParams p{exponent, 0};
  Tensor y = map_forward("pow", x, UnaryFn::pow, 16, p);
  if (exponent != 0.0) {
    record_unary(y, "PowBackward", x, UnaryFn::pow, 16, p);
  } else if (needs_grad(x)) {
    record(y, "PowBackward", {x}, [](const Tensor& g) -> std::vector<Tensor> {
      return {Tensor::zeros(g.shape(), g.dtype(), g.device())};
    });
  }
  return y;
}

Tensor square(const Tensor& x) {
  Tensor y = map_forward("square", x, UnaryFn::square, 1);
  record_unary(y, "SquareBackward", x, UnaryFn::square, 1);
  return y;
}

Tensor abs(const Tensor& x) {
  Tensor y = map_forward("abs", x, UnaryFn::abs, 1);
  record_unary(y, "AbsBackward", x, UnaryFn::abs, 1);
  return y;
}

Tensor tanh(const Tensor& x) {
  Tensor y = map_forward("tanh", x, UnaryFn::tanh, 16);
  record_unary(y, "TanhBackward", x, UnaryFn::tanh, 1);
  return y;
}

Tensor sigmoid(const Tensor& x) {
  Tensor y = map_forward("sigmoid", x, UnaryFn::sigmoid, 8);
  record_unary(y, "SigmoidBackward", x, UnaryFn::sigmoid, 1);
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y = map_forward("relu", x, UnaryFn::relu, 1);
  record_unary(y, "ReluBackward", x, UnaryFn::relu, 1);
  return y;
}

Tensor gelu(const Tensor& x) {
  Tensor y = map_forward("gelu", x, UnaryFn::gelu, 16);
  record_unary(y, "GeluBackward", x, UnaryFn::gelu, 24);
  return y;
}

Tensor elu(const Tensor& x, double alpha) {
  const UnaryParams p{alpha, 0};
  Tensor y = map_forward("elu", x, UnaryFn::elu, 8, p);
  record_unary(y, "EluBackward", x, UnaryFn::elu, 8, p);
  return y;
}

Tensor silu(const Tensor& x) {
  Tensor y = map_forward("silu", x, UnaryFn::silu, 8);
  record_unary(y, "SiluBackward", x, UnaryFn::silu, 8);
  return y;
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  POLYAK_CHECK(lo <= hi, "clamp: lo = ", lo, " and hi = ", hi, ", expected lo ≤ hi");
  const UnaryParams p{lo, hi};
  Tensor y = map_forward("clamp", x, UnaryFn::clamp, 1, p);
  record_unary(y, "ClampBackward", x, UnaryFn::clamp, 1, p);
  return y;
}

}  // namespace polyak
