// The discretized logistic mixture of one 8-bit intensity (docs/math.md §10; PixelCNN++,
// Salimans et al. 2017), written once for the CPU op (ops/mixture.cpp) and the device
// kernels (cuda/kernels/nn.h).
//
// Legend: K components; one pixel's parameters p [3K] = (a_0..a_{K−1} | μ_0.. | ℓ_0..):
// logits, means and log-scales. The intensity x ∈ {0, …, 255} sits at c = x / 127.5 − 1 in
// [−1, 1], in a bin of half-width h = 1/255. With ℓ' = max(ℓ, −7) (PixelCNN++'s floor),
// s = exp(−ℓ'), plus = s (c − μ + h), minus = s (c − μ − h):
//
//   x = 0:    log P_k = log σ(plus)                  (the bin reaches −∞)
//   x = 255:  log P_k = log (1 − σ(minus))           (the bin reaches +∞)
//   else:     log P_k = log (σ(plus) − σ(minus))
//                     = minus + log(expm1(plus − minus)) − softplus(plus) − softplus(minus)
//   nll = −log Σ_k softmax(a)_k P_k
//
// The interior form is exact for any scale. PixelCNN++ instead switches to the density at
// the bin's centre when σ(plus) − σ(minus) < 1e-5, an approximation this form does not need.
//
// Gradient (r_k = the posterior of component k, π = softmax(a), g± = ∂ log P_k / ∂ plus, minus):
//   ∂nll/∂a_k = π_k − r_k
//   ∂nll/∂μ_k = r_k s (g+ + g−)
//   ∂nll/∂ℓ_k = r_k (g+ plus + g− minus) · 1[ℓ_k > −7]
#pragma once

#include <cmath>
#include <cstdint>

#include "polyak/core/hd.h"

namespace polyak::mixture {

inline constexpr int64_t kLevels = 256;
inline constexpr double kMinLogScale = -7.0;
// Components a kernel handles per pixel (its scratch lives on the stack).
inline constexpr int64_t kMaxComponents = 64;

// The C math functions by type, in the forms a device kernel may call.
POLYAK_HD inline float exp_(float x) {
  return ::expf(x);
}
POLYAK_HD inline double exp_(double x) {
  return ::exp(x);
}
POLYAK_HD inline float log_(float x) {
  return ::logf(x);
}
POLYAK_HD inline double log_(double x) {
  return ::log(x);
}
POLYAK_HD inline float log1p_(float x) {
  return ::log1pf(x);
}
POLYAK_HD inline double log1p_(double x) {
  return ::log1p(x);
}
POLYAK_HD inline float expm1_(float x) {
  return ::expm1f(x);
}
POLYAK_HD inline double expm1_(double x) {
  return ::expm1(x);
}
POLYAK_HD inline float fabs_(float x) {
  return ::fabsf(x);
}
POLYAK_HD inline double fabs_(double x) {
  return ::fabs(x);
}

template <class T>
POLYAK_HD inline T softplus(T x) {  // log(1 + e^x), without overflow
  return (x > T(0) ? x : T(0)) + log1p_(exp_(-fabs_(x)));
}

template <class T>
POLYAK_HD inline T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + exp_(-x));
  const T e = exp_(x);
  return e / (T(1) + e);
}

// log(expm1(δ)) for the bin width δ = 2 e^{−ℓ'}/255 in scaled units: for a tiny δ (a scale
// far below a level) log δ + δ/2, with log δ = log(2/255) − ℓ' computed without forming δ,
// so that it stays finite where e^{−ℓ'} underflows.
template <class T>
POLYAK_HD inline T log_expm1_delta(T delta, T l) {
  return delta < T(1e-4) ? log_(T(2) / T(255)) - l + delta / 2 : log_(expm1_(delta));
}

// −log p(x) for one pixel; with `grad` (3K entries), also ∂nll/∂p times `scale`, written
// (not added). Uses 2K entries of `scratch`.
template <class T>
POLYAK_HD inline T pixel_nll(const T* p, int64_t K, int64_t x, T scale, T* grad, T* scratch) {
  const T* a = p;
  const T* mu = p + K;
  const T* ell = p + 2 * K;
  T* lp = scratch;  // log P_k
  const T c = static_cast<T>(x) / T(127.5) - T(1);
  const T h = T(1) / T(255);
  T amax = a[0];
  for (int64_t k = 1; k < K; ++k) amax = a[k] > amax ? a[k] : amax;
  T asum = 0;
  for (int64_t k = 0; k < K; ++k) asum += exp_(a[k] - amax);
  const T alse = amax + log_(asum);
  T zmax = static_cast<T>(-HUGE_VAL);
  for (int64_t k = 0; k < K; ++k) {
    const T l = ell[k] > T(kMinLogScale) ? ell[k] : T(kMinLogScale);
    const T s = exp_(-l);
    const T plus = s * (c - mu[k] + h), minus = s * (c - mu[k] - h);
    T v;
    if (x <= 0)
      v = -softplus(-plus);
    else if (x >= kLevels - 1)
      v = -softplus(minus);
    else
      v = minus + log_expm1_delta(plus - minus, l) - softplus(plus) - softplus(minus);
    lp[k] = v;
    const T z = a[k] - alse + v;
    zmax = z > zmax ? z : zmax;
  }
  T zsum = 0;
  for (int64_t k = 0; k < K; ++k) zsum += exp_(a[k] - alse + lp[k] - zmax);
  const T log_p = zmax + log_(zsum);
  if (!grad) return -log_p;
  for (int64_t k = 0; k < K; ++k) {
    const T l_raw = ell[k];
    const T l = l_raw > T(kMinLogScale) ? l_raw : T(kMinLogScale);
    const T s = exp_(-l);
    const T plus = s * (c - mu[k] + h), minus = s * (c - mu[k] - h);
    // gm = g₊ + g₋ and gl = g₊ plus + g₋ minus, in forms without cancellation: inside,
    // g₊ = e^δ/(e^δ − 1) − σ(plus) and g₋ = 1 − e^δ/(e^δ − 1) − σ(minus) (δ = plus − minus),
    // so gm = 1 − σ(plus) − σ(minus) and gl = δ e^δ/(e^δ − 1) + minus − σ(plus) plus − σ(minus)
    // minus.
    T gm, gl;
    if (x <= 0) {
      gm = sigmoid(-plus);
      gl = gm * plus;
    } else if (x >= kLevels - 1) {
      gm = -sigmoid(minus);
      gl = gm * minus;
    } else {
      const T delta = plus - minus;
      const T delta_ratio = delta < T(1e-4) ? T(1) + delta / 2 : delta / (-expm1_(-delta));
      gm = T(1) - sigmoid(plus) - sigmoid(minus);
      gl = delta_ratio + minus - sigmoid(plus) * plus - sigmoid(minus) * minus;
    }
    const T pi = exp_(a[k] - alse);
    const T r = exp_(a[k] - alse + lp[k] - log_p);
    grad[k] = scale * (pi - r);
    grad[K + k] = scale * r * s * gm;
    grad[2 * K + k] = l_raw > T(kMinLogScale) ? scale * r * gl : T(0);
  }
  return -log_p;
}

// A draw of one pixel: component k from softmax(a) by `u_component` ∈ [0, 1), then the
// logistic μ_k + e^{ℓ'_k} log(u / (1 − u)) by `u_value` ∈ (0, 1), clamped to [−1, 1] and
// rounded to the nearest of the 256 levels.
template <class T>
inline int64_t sample_pixel(const T* p, int64_t K, double u_component, double u_value) {
  const T* a = p;
  T amax = a[0];
  for (int64_t k = 1; k < K; ++k) amax = a[k] > amax ? a[k] : amax;
  double total = 0;
  for (int64_t k = 0; k < K; ++k) total += std::exp(static_cast<double>(a[k] - amax));
  double target = u_component * total, running = 0;
  int64_t pick = K - 1;
  for (int64_t k = 0; k < K; ++k) {
    running += std::exp(static_cast<double>(a[k] - amax));
    if (target < running) {
      pick = k;
      break;
    }
  }
  const double l = static_cast<double>(p[2 * K + pick]) > kMinLogScale
                       ? static_cast<double>(p[2 * K + pick])
                       : kMinLogScale;
  const double u = u_value < 1e-6 ? 1e-6 : (u_value > 1 - 1e-6 ? 1 - 1e-6 : u_value);
  double c = static_cast<double>(p[K + pick]) + std::exp(l) * std::log(u / (1 - u));
  c = c < -1 ? -1 : (c > 1 ? 1 : c);
  const double level = std::floor((c + 1) * 127.5 + 0.5);
  return static_cast<int64_t>(level < 0 ? 0 : (level > 255 ? 255 : level));
}

}  // namespace polyak::mixture
