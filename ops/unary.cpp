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
// In f32, eˣ, eˣ − 1 and Φ are computed by the vectorisable kernels below (exp, sigmoid,
// silu, gelu, elu): relative error ≤ 2 ulp for eˣ and eˣ − 1; gelu within 4e-7 absolute,
// 2e-6 relative for |x| ≤ 5. f64 uses libm.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "polyak/core/autograd.h"
#include "polyak/core/error.h"
#include "polyak/core/threads.h"
#include "polyak/ops/elementwise.h"

#ifdef POLYAK_WITH_CUDA
#include "polyak/cuda/cuda.h"
#endif

namespace polyak {
namespace {

// Mirrors cuda::UnaryOp; `none` marks a function without a cuda kernel.
enum class Kind { neg, exp, log, sqrt, square, abs, tanh, sigmoid, relu, gelu, silu, none };

#ifdef POLYAK_WITH_CUDA
static_assert(static_cast<int>(cuda::UnaryOp::neg) == static_cast<int>(Kind::neg) &&
                  static_cast<int>(cuda::UnaryOp::relu) == static_cast<int>(Kind::relu) &&
                  static_cast<int>(cuda::UnaryOp::silu) == static_cast<int>(Kind::silu),
              "Kind must list cuda::UnaryOp's members in its order");
cuda::UnaryOp cuda_op(Kind k) {
  return static_cast<cuda::UnaryOp>(static_cast<uint8_t>(k));
}
#endif

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

bool needs_grad(const Tensor& t) {
  return GradMode::enabled() && t.requires_grad();
}

// y[i] = f(x[i]) (f a generic lambda on the scalar type), or the cuda kernel for `kind`.
template <class F>
Tensor map_forward(const char* fn, const Tensor& x, Kind kind, int64_t cost, F f) {
  check_defined(fn, "x", x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
    if (kind == Kind::none) check_cpu(fn, "x", x);
    POLYAK_CHECK(x.dtype() == DType::f32, fn, ": x is ", x.dtype(), " on ", x.device(),
                 ", expected f32 (the cuda backend computes in f32)");
#ifdef POLYAK_WITH_CUDA
    cuda::unary(cuda_op(kind), x, y);
    return y;
#else
    fail(fn, ": x is on ", x.device(), ", but polyak was built without CUDA");
#endif
  }
  const int64_t n = x.numel();
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* py = y.data<T>();
    parallel_for(n, cost, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) py[i] = f(px[i]);
    });
  });
  return y;
}

// dx[i] = f(saved[i], g[i]) on the CPU; on cuda, the backward kernel of `kind` with
// saved = x.
template <class F>
Tensor map_backward(Kind kind, const Tensor& saved, const Tensor& g, int64_t cost, F f) {
  Tensor dx = Tensor::empty(g.shape(), g.dtype(), g.device());
  if (g.device().is_cuda()) {
#ifdef POLYAK_WITH_CUDA
    cuda::unary_backward(cuda_op(kind), saved, g, dx);
    return dx;
#else
    (void)kind;
    fail("backward: a gradient is on ", g.device(), ", but polyak was built without CUDA");
#endif
  }
  const int64_t n = g.numel();
  dispatch(g.dtype(), [&]<class T>() {
    const T* ps = saved.data<T>();
    const T* pg = g.data<T>();
    T* pd = dx.data<T>();
    parallel_for(n, cost, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) pd[i] = f(ps[i], pg[i]);
    });
  });
  return dx;
}

// Records `name` on y with a backward that keeps x (use_output = false) or y.
template <class F>
void record_unary(Tensor& y, const char* name, const Tensor& x, Kind kind, bool use_output,
                  int64_t cost, F f) {
  if (!needs_grad(x)) return;
  // The output is kept detached so that its own node does not own it. A cuda backward
  // kernel always takes x.
  Tensor saved = use_output && !x.device().is_cuda() ? y.detach() : x;
  record(y, name, {x}, [saved, kind, cost, f](const Tensor& g) -> std::vector<Tensor> {
    return {map_backward(kind, saved, g, cost, f)};
  });
}

// ---- f32 kernels that vectorise ------------------------------------------------------------
// Written as plain arithmetic (no libm calls) so that loops over them vectorise; f64 keeps
// libm (it serves gradcheck and teaching, where exactness matters more than speed).
// Selects go through select() below: under the default -ftrapping-math GCC does not turn
// `c ? a : x * y` into a vector blend (it may not speculate the multiplication), and the
// whole loop stays scalar.

// c ? a : b on the bits, which the vectoriser turns into a blend.
template <class T>
inline T select(bool c, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const U m = U(0) - static_cast<U>(c);
  return std::bit_cast<T>((std::bit_cast<U>(a) & m) | (std::bit_cast<U>(b) & ~m));
}

// eˣ in f32: Cody–Waite reduction x = n·ln2 + r, Cephes' degree-6 polynomial for eʳ
// (≤ 2 ulp), 2ⁿ assembled in the exponent bits. 0 below −87.3 (where eˣ turns subnormal),
// +inf above 88.72; between 88.37 and 88.72 it saturates at e^88.37. NaN stays NaN.
inline float exp_f32(float x) {
  const bool under = x<-87.3f, clipped = x> 88.37f, over = x > 88.72f;
  const float xc = select(under, -87.3f, select(clipped, 88.37f, x));
  const float t = xc * 1.44269504088896341f + 12582912.0f;  // round(x / ln2) in the low bits
  const float n = t - 12582912.0f;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (std::bit_cast<int32_t>(t) - 0x4B400000 + 127) << 23;
  float y = p * std::bit_cast<float>(bits);
  return select(over, std::numeric_limits<float>::infinity(), select(under, 0.0f, y));
}

template <class T>
inline T exp_of(T v) {
  if constexpr (std::is_same_v<T, float>)
    return exp_f32(v);
  else
    return std::exp(v);
}

// eˣ − 1, accurate near 0 too: a Taylor polynomial for |v| < 1/4 (truncation < 1e-9
// relative), eˣ − 1 beyond (where the subtraction no longer cancels).
template <class T>
inline T expm1_of(T v) {
  if constexpr (std::is_same_v<T, float>) {
    float p = v * (1.0f / 7.0f) + 1.0f;
    p = p * v * (1.0f / 6.0f) + 1.0f;
    p = p * v * (1.0f / 5.0f) + 1.0f;
    p = p * v * (1.0f / 4.0f) + 1.0f;
    p = p * v * (1.0f / 3.0f) + 1.0f;
    p = p * v * (1.0f / 2.0f) + 1.0f;
    p = p * v;
    return select(std::abs(v) < 0.25f, p, exp_f32(v) - 1.0f);
  } else {
    return std::expm1(v);
  }
}

// σ(v) without exponentiating a large positive number: e = e^{−|v|}.
template <class T>
inline T sigmoid_of(T v) {
  const T e = exp_of(-std::abs(v));
  const T s = T(1) / (T(1) + e);
  return select(v >= T(0), s, e * s);
}

// Φ(v), the standard normal cdf. f32: erfc by the Chebyshev fit of Numerical Recipes
// (erfcc, relative error ≤ 1.2e-7), so Φ keeps its relative accuracy in the far left tail.
template <class T>
inline T normal_cdf(T v) {
  if constexpr (std::is_same_v<T, float>) {
    const float z = std::abs(v) * float(kInvSqrt2);
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    const float half_erfc = 0.5f * t * exp_f32(p - z * z);
    return select(v >= 0.0f, 1.0f - half_erfc, half_erfc);
  } else {
    return T(0.5) * std::erfc(-v * T(kInvSqrt2));  // erfc: no cancellation for v ≪ 0
  }
}

}  // namespace

Tensor neg(const Tensor& a) {
  Tensor y = map_forward("neg", a, Kind::neg, 1, []<class T>(T v) { return -v; });
  if (needs_grad(a))
    record(y, "NegBackward", {a}, [](const Tensor& g) -> std::vector<Tensor> { return {neg(g)}; });
  return y;
}

Tensor exp(const Tensor& x) {
  Tensor y = map_forward("exp", x, Kind::exp, 8, []<class T>(T v) { return exp_of(v); });
  record_unary(y, "ExpBackward", x, Kind::exp, true, 1,
               []<class T>(T out, T g) { return g * out; });
  return y;
}

Tensor log(const Tensor& x) {
  Tensor y = map_forward("log", x, Kind::log, 8, []<class T>(T v) { return std::log(v); });
  record_unary(y, "LogBackward", x, Kind::log, false, 1, []<class T>(T in, T g) { return g / in; });
  return y;
}

Tensor sqrt(const Tensor& x) {
  Tensor y = map_forward("sqrt", x, Kind::sqrt, 4, []<class T>(T v) { return std::sqrt(v); });
  record_unary(y, "SqrtBackward", x, Kind::sqrt, true, 1,
               []<class T>(T out, T g) { return g / (T(2) * out); });
  return y;
}

Tensor pow(const Tensor& x, double exponent) {
  Tensor y = map_forward("pow", x, Kind::none, 16, [exponent]<class T>(T v) {
    return static_cast<T>(std::pow(v, static_cast<T>(exponent)));
  });
  if (exponent != 0.0) {
    record_unary(y, "PowBackward", x, Kind::none, false, 16, [exponent]<class T>(T in, T g) {
      const T p = static_cast<T>(exponent);
      return g * p * static_cast<T>(std::pow(in, p - T(1)));
    });
  } else if (needs_grad(x)) {
    record(y, "PowBackward", {x}, [](const Tensor& g) -> std::vector<Tensor> {
      return {Tensor::zeros(g.shape(), g.dtype(), g.device())};
    });
  }
  return y;
}

Tensor square(const Tensor& x) {
  Tensor y = map_forward("square", x, Kind::square, 1, []<class T>(T v) { return v * v; });
  record_unary(y, "SquareBackward", x, Kind::square, false, 1,
               []<class T>(T in, T g) { return T(2) * in * g; });
  return y;
}

Tensor abs(const Tensor& x) {
  Tensor y = map_forward("abs", x, Kind::abs, 1, []<class T>(T v) { return std::abs(v); });
  record_unary(y, "AbsBackward", x, Kind::abs, false, 1, []<class T>(T in, T g) {
    return select(in > T(0), g, select(in < T(0), -g, T(0)));
  });
  return y;
}

Tensor tanh(const Tensor& x) {
  Tensor y = map_forward("tanh", x, Kind::tanh, 16, []<class T>(T v) { return std::tanh(v); });
  record_unary(y, "TanhBackward", x, Kind::tanh, true, 1,
               []<class T>(T out, T g) { return g * (T(1) - out * out); });
  return y;
}

Tensor sigmoid(const Tensor& x) {
  Tensor y =
      map_forward("sigmoid", x, Kind::sigmoid, 8, []<class T>(T v) { return sigmoid_of(v); });
  record_unary(y, "SigmoidBackward", x, Kind::sigmoid, true, 1,
               []<class T>(T out, T g) { return g * out * (T(1) - out); });
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y =
      map_forward("relu", x, Kind::relu, 1, []<class T>(T v) { return select(v < T(0), T(0), v); });
  record_unary(y, "ReluBackward", x, Kind::relu, true, 1,
               []<class T>(T out, T g) { return select(out > T(0), g, T(0)); });
  return y;
}

Tensor gelu(const Tensor& x) {
  Tensor y = map_forward("gelu", x, Kind::gelu, 16, []<class T>(T v) { return v * normal_cdf(v); });
  record_unary(y, "GeluBackward", x, Kind::gelu, false, 24, []<class T>(T in, T g) {
    const T pdf = T(kInvSqrt2Pi) * exp_of(T(-0.5) * in * in);
    return g * (normal_cdf(in) + in * pdf);
  });
  return y;
}

Tensor elu(const Tensor& x, double alpha) {
  Tensor y = map_forward("elu", x, Kind::none, 8, [alpha]<class T>(T v) {
    return select(v > T(0), v, static_cast<T>(alpha) * expm1_of(v));
  });
  record_unary(y, "EluBackward", x, Kind::none, false, 8, [alpha]<class T>(T in, T g) {
    return select(in > T(0), g, g * static_cast<T>(alpha) * exp_of(in));
  });
  return y;
}

Tensor silu(const Tensor& x) {
  Tensor y = map_forward("silu", x, Kind::silu, 8, []<class T>(T v) { return v * sigmoid_of(v); });
  record_unary(y, "SiluBackward", x, Kind::silu, false, 8, []<class T>(T in, T g) {
    const T s = sigmoid_of(in);
    return g * s * (T(1) + in * (T(1) - s));
  });
  return y;
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  POLYAK_CHECK(lo <= hi, "clamp: lo = ", lo, " and hi = ", hi, ", expected lo ≤ hi");
  Tensor y = map_forward("clamp", x, Kind::none, 1, [lo, hi]<class T>(T v) {
    const T l = static_cast<T>(lo), h = static_cast<T>(hi);
    return select(v < l, l, select(v > h, h, v));  // NaN stays NaN
  });
  record_unary(y, "ClampBackward", x, Kind::none, false, 1, [lo, hi]<class T>(T in, T g) {
    return select((in >= static_cast<T>(lo)) & (in <= static_cast<T>(hi)), g, T(0));
  });
  return y;
}

}  // namespace polyak
