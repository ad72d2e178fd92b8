// Recurrent (RNN-mode) steps of the causal attention kinds: one position against a
// constant-size state, for generation. docs/math.md §1–3; form (3) of docs/design.md.
//
// Dimension legend: B batch, H heads, D query/key width, Dv value width, C cache capacity.
// q, k [B,H,D], v [B,H,Dv] → y [B,H,Dv]. Per (b, h):
//
//   linear   (eq. 7–8):  s += k vᵀ;  z += k;                    y = sᵀ q / (q·z + ε)
//   momentum (eq. 12):   m = β m − k vᵀ;  s = s − γ m;  z += k;  y = sᵀ q / (q·z + ε)
//   softmax  (eq. 3):    append k, v to the cache;  y = Σ_j p_j v_j,
//                        p_j = exp(q·k_j/√D − max) / Σ exp(…)  over the filled rows
//
// After i steps from zero states these equal row i of the parallel forms exactly (up to
// rounding): the linear state is s_i of causal_linear_attention, the momentum state s is
// eq. 13's γ Σ_{j≤i} (1 − β^{i−j+1})/(1 − β) k_j v_jᵀ, and m = −E_i of
// causal_momentum_attention's sweep.
//
// Not differentiable: nothing is recorded (the caller runs under NoGradGuard); the states
// are written in place through their data pointers.
#include "polyak/ops/attention/recurrent.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "polyak/core/threads.h"
#include "polyak/ops/attention/attention_checks.h"
#include "polyak/ops/attention/momentum_attention.h"
#include "polyak/ops/attention/vec.h"

namespace polyak {
namespace {

using detail::axpy;
using detail::check_or_init_state;
using detail::check_step_inputs;
using detail::dot;
using detail::StepDims;

// Capacity of a KV cache created by the first softmax step.
constexpr int64_t kInitialCacheCapacity = 64;

void check_eps(const char* fn, double eps) {
  POLYAK_CHECK(std::isfinite(eps) && eps >= 0, fn, ": eps is ", eps,
               ", expected a finite value >= 0");
}

// ---- linear and momentum ---------------------------------------------------------------

// One (b, h) of either step. With kMomentum: m = β m − k vᵀ, s = s − γ m, row by row;
// otherwise s += k vᵀ. Then z += k and y = sᵀ q / (q·z + ε).
template <class T, bool kMomentum>
void linear_kind_step(const StepDims& d, const T* q, const T* k, const T* v, T* m, T* s, T* z, T* y,
                      T beta, T gamma, T eps) {
  const int64_t D = d.D, Dv = d.Dv;
  parallel_for(d.B * d.H, 2 * D * Dv + 1, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      const T* qh = q + h * D;
      const T* kh = k + h * D;
      const T* vh = v + h * Dv;
      T* sh = s + h * D * Dv;
      T* zh = z + h * D;
      T* yh = y + h * Dv;
      std::fill_n(yh, Dv, T(0));
      for (int64_t a = 0; a < D; ++a) {
        T* sa = sh + a * Dv;
        if constexpr (kMomentum) {
          T* ma = m + h * D * Dv + a * Dv;
          for (int64_t c = 0; c < Dv; ++c) {
            ma[c] = beta * ma[c] - kh[a] * vh[c];
            sa[c] -= gamma * ma[c];
          }
        } else {
          axpy(Dv, kh[a], vh, sa);
        }
        axpy(Dv, qh[a], sa, yh);
      }
      axpy(D, T(1), kh, zh);
      const T inv = T(1) / (dot(D, qh, zh) + eps);
      for (int64_t c = 0; c < Dv; ++c) yh[c] *= inv;
    }
  });
}

// ---- softmax ---------------------------------------------------------------------------

// A copy of `cache` [B,H,C,W] with capacity `capacity` ≥ C; rows [0, length) are kept.
Tensor grow_cache(const Tensor& cache, int64_t capacity, int64_t length) {
  const Shape& cs = cache.shape();
  const int64_t BH = cs[0] * cs[1], C = cs[2], W = cs[3];
  Tensor grown = Tensor::zeros({cs[0], cs[1], capacity, W}, cache.dtype());
  const size_t row_bytes = static_cast<size_t>(W) * itemsize(cache.dtype());
  const auto* from = static_cast<const char*>(cache.raw_data());
  auto* to = static_cast<char*>(grown.raw_data());
  for (int64_t h = 0; h < BH; ++h)
    std::copy_n(from + static_cast<size_t>(h * C) * row_bytes,
                static_cast<size_t>(length) * row_bytes,
                to + static_cast<size_t>(h * capacity) * row_bytes);
  return grown;
}

// One step per (b, h) over the `length` filled rows of the caches (the new row included).
template <class T>
void softmax_step(const StepDims& d, int64_t C, int64_t length, const T* q, const T* kc,
                  const T* vc, T* y) {
  const int64_t D = d.D, Dv = d.Dv;
  const T scale = D > 0 ? T(1) / std::sqrt(static_cast<T>(D)) : T(1);
  parallel_for(d.B * d.H, length * (D + Dv) + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> p(static_cast<size_t>(length));
    for (int64_t h = begin; h < end; ++h) {
      const T* qh = q + h * D;
      const T* kh = kc + h * C * D;
      const T* vh = vc + h * C * Dv;
      T* yh = y + h * Dv;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < length; ++j) {
        p[static_cast<size_t>(j)] = scale * dot(D, qh, kh + j * D);
        mx = std::max(mx, p[static_cast<size_t>(j)]);
      }
      T total = T(0);
      for (int64_t j = 0; j < length; ++j) {
        p[static_cast<size_t>(j)] = std::exp(p[static_cast<size_t>(j)] - mx);
        total += p[static_cast<size_t>(j)];
      }
      std::fill_n(yh, Dv, T(0));
      for (int64_t j = 0; j < length; ++j)
        axpy(Dv, p[static_cast<size_t>(j)] / total, vh + j * Dv, yh);
    }
  });
}

}  // namespace

Tensor linear_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& s,
                             Tensor& z, double eps) {
  constexpr const char* fn = "linear_attention_step";
  const StepDims d = check_step_inputs(fn, q, k, v);
  check_eps(fn, eps);
  const DType dtype = q.dtype();
  check_or_init_state(fn, "s", s, {d.B, d.H, d.D, d.Dv}, "[B,H,D,Dv]", dtype);
  check_or_init_state(fn, "z", z, {d.B, d.H, d.D}, "[B,H,D]", dtype);
  Tensor y = Tensor::empty({d.B, d.H, d.Dv}, dtype);
  dispatch(dtype, [&]<class T>() {
    linear_kind_step<T, false>(d, q.data<T>(), k.data<T>(), v.data<T>(), nullptr, s.data<T>(),
                               z.data<T>(), y.data<T>(), T(0), T(1), static_cast<T>(eps));
  });
  return y;
}

Tensor momentum_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& m,
                               Tensor& s, Tensor& z, double beta, double gamma, double eps) {
  constexpr const char* fn = "momentum_attention_step";
  const StepDims d = check_step_inputs(fn, q, k, v);
  check_momentum_parameters(fn, beta, gamma);
  check_eps(fn, eps);
  const DType dtype = q.dtype();
  check_or_init_state(fn, "m", m, {d.B, d.H, d.D, d.Dv}, "[B,H,D,Dv]", dtype);
  check_or_init_state(fn, "s", s, {d.B, d.H, d.D, d.Dv}, "[B,H,D,Dv]", dtype);
  check_or_init_state(fn, "z", z, {d.B, d.H, d.D}, "[B,H,D]", dtype);
  POLYAK_CHECK(!m.shares_storage(s), fn, ": m and s share storage, expected two distinct states");
  Tensor y = Tensor::empty({d.B, d.H, d.Dv}, dtype);
  dispatch(dtype, [&]<class T>() {
    linear_kind_step<T, true>(d, q.data<T>(), k.data<T>(), v.data<T>(), m.data<T>(), s.data<T>(),
                              z.data<T>(), y.data<T>(), static_cast<T>(beta), static_cast<T>(gamma),
                              static_cast<T>(eps));
  });
  return y;
}

Tensor softmax_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& k_cache,
                              Tensor& v_cache, int64_t& length) {
  constexpr const char* fn = "softmax_attention_step";
  const StepDims d = check_step_inputs(fn, q, k, v);
  const DType dtype = q.dtype();
  POLYAK_CHECK(k_cache.defined() == v_cache.defined(), fn, ": k_cache is ",
               k_cache.defined() ? "defined" : "undefined", " but v_cache is ",
               v_cache.defined() ? "defined" : "undefined", ", expected both or neither");
  if (!k_cache.defined()) {
    POLYAK_CHECK(length == 0, fn, ": length is ", length,
                 " with undefined caches, expected 0 (an empty cache)");
    k_cache = Tensor::zeros({d.B, d.H, kInitialCacheCapacity, d.D}, dtype);
    v_cache = Tensor::zeros({d.B, d.H, kInitialCacheCapacity, d.Dv}, dtype);
  }
  check_rank(fn, "k_cache", k_cache, 4, "[B,H,C,D]");
  check_rank(fn, "v_cache", v_cache, 4, "[B,H,C,Dv]");
  const int64_t C = k_cache.size(2);
  const Shape k_expected{d.B, d.H, C, d.D}, v_expected{d.B, d.H, C, d.Dv};
  POLYAK_CHECK(k_cache.shape() == k_expected, fn, ": k_cache has shape ", k_cache.shape(),
               ", expected [B,H,C,D] = ", k_expected, " matching q ", q.shape());
  POLYAK_CHECK(v_cache.shape() == v_expected, fn, ": v_cache has shape ", v_cache.shape(),
               ", expected [B,H,C,Dv] = ", v_expected, " matching k_cache in C and v in Dv");
  POLYAK_CHECK(k_cache.dtype() == dtype, fn, ": k_cache has dtype ", k_cache.dtype(), ", expected ",
               dtype, " (q's dtype)");
  POLYAK_CHECK(v_cache.dtype() == dtype, fn, ": v_cache has dtype ", v_cache.dtype(), ", expected ",
               dtype, " (q's dtype)");
  check_cpu(fn, "k_cache", k_cache);
  check_cpu(fn, "v_cache", v_cache);
  POLYAK_CHECK(length >= 0 && length <= C, fn, ": length is ", length, ", expected in [0, ", C,
               "] (the cache capacity)");
  POLYAK_CHECK(!k_cache.shares_storage(v_cache), fn,
               ": k_cache and v_cache share storage, expected two distinct caches");

  if (length == C) {
    const int64_t capacity = std::max(2 * C, kInitialCacheCapacity);
    k_cache = grow_cache(k_cache, capacity, length);
    v_cache = grow_cache(v_cache, capacity, length);
  }
  const int64_t cap = k_cache.size(2);
  Tensor y = Tensor::empty({d.B, d.H, d.Dv}, dtype);
  dispatch(dtype, [&]<class T>() {
    T* kc = k_cache.data<T>();
    T* vc = v_cache.data<T>();
    const T* kp = k.data<T>();
    const T* vp = v.data<T>();
    for (int64_t h = 0; h < d.B * d.H; ++h) {
      std::copy_n(kp + h * d.D, d.D, kc + (h * cap + length) * d.D);
      std::copy_n(vp + h * d.Dv, d.Dv, vc + (h * cap + length) * d.Dv);
    }
    softmax_step<T>(d, cap, length + 1, q.data<T>(), kc, vc, y.data<T>());
  });
  ++length;
  return y;
}

}  // namespace polyak
