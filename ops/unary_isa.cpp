// The unary functions' formulas and loops, compiled once per ISA (ops/unary.cpp has the
// ops, their table of derivatives and the device path).
//
// In f32, eˣ, eˣ − 1 and Φ are computed by the vectorisable kernels below (exp, sigmoid,
// silu, gelu, elu): relative error ≤ 2 ulp for eˣ and eˣ − 1; gelu within 4e-7 absolute,
// 2e-6 relative for |x| ≤ 5. f64 uses libm.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "polyak/core/threads.h"
#include "polyak/ops/unary_kernels.h"

namespace polyak::detail {
namespace POLYAK_ISA_NAMESPACE {
namespace {

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

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

// y[i] = f(x[i]) over [0, n) on the threads; x and y never overlap.
template <class T, class F>
void map_loop(const T* x, T* y, int64_t n, int64_t cost, F f) {
  parallel_for(n, cost, [=](int64_t begin, int64_t end) {
    const T* __restrict px = x;
    T* __restrict py = y;
    for (int64_t i = begin; i < end; ++i) py[i] = f(px[i]);
  });
}

// dx[i] = f(saved[i], g[i]) over [0, n) on the threads.
template <class T, class F>
void map_loop(const T* saved, const T* g, T* dx, int64_t n, int64_t cost, F f) {
  parallel_for(n, cost, [=](int64_t begin, int64_t end) {
    const T* __restrict ps = saved;
    const T* __restrict pg = g;
    T* __restrict pd = dx;
    for (int64_t i = begin; i < end; ++i) pd[i] = f(ps[i], pg[i]);
  });
}

}  // namespace
}  // namespace POLYAK_ISA_NAMESPACE

template <class T>
void unary_forward(POLYAK_KERNEL_ISA_TAG, UnaryOp fn, UnaryParams p, const T* x, T* y, int64_t n,
                   int64_t cost) {
  using namespace POLYAK_ISA_NAMESPACE;
  auto run = [&](auto f) { map_loop(x, y, n, cost, f); };
  const T a = static_cast<T>(p.a), b = static_cast<T>(p.b);
  switch (fn) {
    case UnaryOp::neg:
      return run([](T v) { return -v; });
    case UnaryOp::exp:
      return run([](T v) { return exp_of(v); });
    case UnaryOp::log:
      return run([](T v) { return std::log(v); });
    case UnaryOp::sqrt:
      return run([](T v) { return std::sqrt(v); });
    case UnaryOp::square:
      return run([](T v) { return v * v; });
    case UnaryOp::abs:
      return run([](T v) { return std::abs(v); });
    case UnaryOp::tanh:
      return run([](T v) { return std::tanh(v); });
    case UnaryOp::sigmoid:
      return run([](T v) { return sigmoid_of(v); });
    case UnaryOp::relu:
      return run([](T v) { return select(v < T(0), T(0), v); });
    case UnaryOp::gelu:
      return run([](T v) { return v * normal_cdf(v); });
    case UnaryOp::silu:
      return run([](T v) { return v * sigmoid_of(v); });
    case UnaryOp::pow:
      return run([a](T v) { return static_cast<T>(std::pow(v, a)); });
    case UnaryOp::elu:
      return run([a](T v) { return select(v > T(0), v, a * expm1_of(v)); });
    case UnaryOp::clamp:  // NaN stays NaN
      return run([a, b](T v) { return select(v < a, a, select(v > b, b, v)); });
  }
}

template <class T>
void unary_backward(POLYAK_KERNEL_ISA_TAG, UnaryOp fn, UnaryParams p, const T* saved, const T* g,
                    T* dx, int64_t n, int64_t cost) {
  using namespace POLYAK_ISA_NAMESPACE;
  auto run = [&](auto f) { map_loop(saved, g, dx, n, cost, f); };
  const T a = static_cast<T>(p.a), b = static_cast<T>(p.b);
  switch (fn) {  // `s` is the output y where unary_keeps_output, else the input x
    case UnaryOp::neg:
      return run([](T, T d) { return -d; });
    case UnaryOp::exp:
      return run([](T s, T d) { return d * s; });
    case UnaryOp::log:
      return run([](T s, T d) { return d / s; });
    case UnaryOp::sqrt:
      return run([](T s, T d) { return d / (T(2) * s); });
    case UnaryOp::square:
      return run([](T s, T d) { return T(2) * s * d; });
    case UnaryOp::abs:
      return run([](T s, T d) { return select(s > T(0), d, select(s < T(0), -d, T(0))); });
    case UnaryOp::tanh:
      return run([](T s, T d) { return d * (T(1) - s * s); });
    case UnaryOp::sigmoid:
      return run([](T s, T d) { return d * s * (T(1) - s); });
    case UnaryOp::relu:
      return run([](T s, T d) { return select(s > T(0), d, T(0)); });
    case UnaryOp::gelu:
      return run([](T s, T d) {
        const T pdf = T(kInvSqrt2Pi) * exp_of(T(-0.5) * s * s);
        return d * (normal_cdf(s) + s * pdf);
      });
    case UnaryOp::silu:
      return run([](T s, T d) {
        const T sig = sigmoid_of(s);
        return d * sig * (T(1) + s * (T(1) - sig));
      });
    case UnaryOp::pow:
      return run([a](T s, T d) { return d * a * static_cast<T>(std::pow(s, a - T(1))); });
    case UnaryOp::elu:
      return run([a](T s, T d) { return select(s > T(0), d, d * a * exp_of(s)); });
    case UnaryOp::clamp:
      return run([a, b](T s, T d) { return select((s >= a) & (s <= b), d, T(0)); });
  }
}

#define POLYAK_INSTANTIATE(T)                                                                      \
  template void unary_forward<T>(POLYAK_KERNEL_ISA_TAG, UnaryOp, UnaryParams, const T*, T*,        \
                                 int64_t, int64_t);                                                \
  template void unary_backward<T>(POLYAK_KERNEL_ISA_TAG, UnaryOp, UnaryParams, const T*, const T*, \
                                  T*, int64_t, int64_t);
POLYAK_INSTANTIATE(float)
POLYAK_INSTANTIATE(double)
#undef POLYAK_INSTANTIATE

}  // namespace polyak::detail
