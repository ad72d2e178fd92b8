// Decayed ("retention") causal linear attention and key-weighted causal linear attention:
// the single-state causal sweeps. docs/math.md §3 (the decayed term of momentum attention) and
// §2 (the sweep and its gradient).
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
// q, k [B,H,N,D], v [B,H,N,Dv] → y [B,H,N,Dv]. Both ops are y_i = o_i / den_i with
//   decayed   o_i = Σ_{j≤i} λ^{i−j} (q_i·k_j) v_j,  den_i = Σ_{j≤i} λ^{i−j} q_i·k_j + ε
//             (decayed_causal_dot_product: den_i = 1)
//   weighted  o_i = Σ_{j≤i} ω_j (q_i·k_j) v_j,      den_i = Σ_{j≤i} q_i·k_j + ε
//             (causal_momentum_attention's reference weighting, ω_j = γ(1 − β^{N−j+1})/(1 − β))
// computed per (b, h) by one running state, never stored per position:
//   s_i = λ s_{i−1} + ω_i k_i v_iᵀ  [D,Dv]    z_i = λ_z z_{i−1} + k_i  [D]
//   o_i = s_iᵀ q_i,  den_i = q_i·z_i + ε
// (decayed: ω = 1, λ_z = λ; weighted: λ = λ_z = 1).
//
// Backward. do_i = dy_i / den_i, dden_i = −(dy_i·o_i)/den_i² (0 without a denominator):
//   dq_i = s_i do_i + dden_i z_i                                     [B,H,N,D]
//   dk_j = ω_j R_j v_j + r_j,   dv_j = ω_j R_jᵀ k_j                   [B,H,N,D], [B,H,N,Dv]
//   R_j = Σ_{i≥j} λ^{i−j} q_i do_iᵀ = λ R_{j+1} + q_j do_jᵀ          [D,Dv]
//   r_j = Σ_{i≥j} λ_z^{i−j} dden_i q_i = λ_z r_{j+1} + dden_j q_j     [D]
// Two sweeps, one D×Dv matrix each:
//   forward sweep (i = 1..N): rebuild s_i, z_i; o_i; do_i, dden_i; dq_i.
//   reverse sweep (i = N..1): R_i, r_i; dk_i, dv_i.
// Saved for backward: q, k, v and den [B,H,N]. Scratch: dden [B,H,N]; do_i waits in dv_i's
// slot between the sweeps.
//
// Compiled once per ISA (cmake/isa.cmake); decayed_attention.cpp holds the ops.
#include <algorithm>
#include <cmath>
#include <vector>

#include "polyak/core/threads.h"
#include "polyak/ops/attention/causal_sweeps.h"
#include "polyak/ops/attention/sweep.h"
#include "polyak/ops/attention/vec.h"

namespace polyak::detail {
inline namespace POLYAK_ISA_NAMESPACE {
namespace {

// kWeighted: per-key weights ω (and λ = λ_z = 1); otherwise the decay λ (and ω = 1).
template <class T>
struct SweepParams {
  T decay = 1;                // λ
  const T* weight = nullptr;  // ω [N]
  T eps = 0;
};

// s_i[a, :] from s_{i−1}[a, :] for one row a.
template <class T, bool kWeighted>
inline void advance_row(int64_t Dv, const SweepParams<T>& p, int64_t i, T ka, const T* vi, T* sa) {
  if constexpr (kWeighted) {
    axpy(Dv, p.weight[i] * ka, vi, sa);
  } else {
#pragma omp simd
    for (int64_t c = 0; c < Dv; ++c) sa[c] = p.decay * sa[c] + ka * vi[c];
  }
}

// x ← λ x + a y (λ = 1 when weighted).
template <class T, bool kWeighted>
inline void decay_axpy(int64_t n, const SweepParams<T>& p, T a, const T* y, T* x) {
  if constexpr (kWeighted) {
    axpy(n, a, y, x);
  } else {
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) x[c] = p.decay * x[c] + a * y[c];
  }
}

// ---- forward -----------------------------------------------------------------------------

// One (b, h): q, k [N,D], v [N,Dv] → y [N,Dv] (and den [N] when normalising).
// s [D·Dv], z [D] and o [Dv] are the caller's scratch.
template <class T, bool kWeighted, bool kNormalize, int kDv>
void forward_head(const T* q, const T* k, const T* v, T* y, T* den, int64_t N, int64_t D,
                  int64_t dv_runtime, const SweepParams<T>& p, T* s, T* z, T* o_scratch) {
  const int64_t Dv = kDv > 0 ? kDv : dv_runtime;
  T o_fixed[kDv > 0 ? kDv : 1];
  T* o = kDv > 0 ? o_fixed : o_scratch;
  std::fill_n(s, D * Dv, T(0));
  std::fill_n(z, D, T(0));
  for (int64_t i = 0; i < N; ++i) {
    const T* qi = q + i * D;
    const T* ki = k + i * D;
    const T* vi = v + i * Dv;
    std::fill_n(o, Dv, T(0));
    for (int64_t a = 0; a < D; ++a) {
      T* sa = s + a * Dv;
      advance_row<T, kWeighted>(Dv, p, i, ki[a], vi, sa);
      axpy(Dv, qi[a], sa, o);  // o_i += q_i[a] · s_i[a, :]
    }
    T inv = T(1);
    if constexpr (kNormalize) {
      decay_axpy<T, kWeighted>(D, p, T(1), ki, z);
      const T di = dot(D, qi, z) + p.eps;
      den[i] = di;
      inv = T(1) / di;
    }
    T* yi = y + i * Dv;
    for (int64_t c = 0; c < Dv; ++c) yi[c] = o[c] * inv;
  }
}

template <class T, bool kWeighted, bool kNormalize>
void sweep_forward(const AttentionDims& d, const T* q, const T* k, const T* v, T* y, T* den,
                   const SweepParams<T>& p) {
  const int64_t N = d.N, D = d.D, Dv = d.Dv;
  parallel_for(d.B * d.H, 2 * N * D * Dv + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> s(static_cast<size_t>(D * Dv)), z(static_cast<size_t>(D));
    std::vector<T> o(static_cast<size_t>(Dv));
    with_fixed_dv(Dv, [&]<int kDv>() {
      for (int64_t h = begin; h < end; ++h) {
        forward_head<T, kWeighted, kNormalize, kDv>(
            q + h * N * D, k + h * N * D, v + h * N * Dv, y + h * N * Dv,
            kNormalize ? den + h * N : nullptr, N, D, Dv, p, s.data(), z.data(), o.data());
      }
    });
  });
}

// ---- backward ----------------------------------------------------------------------------

// One (b, h). Writes (overwrites) dq, dk [N,D] and dv [N,Dv]. dden [N] is scratch.
// s [D·Dv], z [D], and o, g, w [Dv] are the caller's scratch.
template <class T, bool kWeighted, bool kNormalize, int kDv>
void backward_head(const T* q, const T* k, const T* v, const T* den, const T* dy, T* dq, T* dk,
                   T* dv, T* dden, int64_t N, int64_t D, int64_t dv_runtime,
                   const SweepParams<T>& p, T* s, T* z, T* o_scratch, T* g_scratch, T* w_scratch) {
  const int64_t Dv = kDv > 0 ? kDv : dv_runtime;
  T o_fixed[kDv > 0 ? kDv : 1], g_fixed[kDv > 0 ? kDv : 1], w_fixed[kDv > 0 ? kDv : 1];
  T* o = kDv > 0 ? o_fixed : o_scratch;  // o_i
  T* g = kDv > 0 ? g_fixed : g_scratch;  // do_i
  T* w = kDv > 0 ? w_fixed : w_scratch;  // dv_i being summed

  // Forward sweep: rebuild s_i and z_i; dq_i = s_i do_i + dden_i z_i.
  std::fill_n(s, D * Dv, T(0));
  std::fill_n(z, D, T(0));
  for (int64_t i = 0; i < N; ++i) {
    const T* qi = q + i * D;
    const T* ki = k + i * D;
    const T* vi = v + i * Dv;
    const T* dyi = dy + i * Dv;
    T* dqi = dq + i * D;
    if constexpr (kNormalize) {
      // do_i = dy_i / den_i needs no o_i, so one pass over s gives o_i and s_i do_i;
      // the dden_i z_i term follows once o_i is complete.
      const T inv = T(1) / den[i];
      T* parked = dv + i * Dv;  // do_i waits in dv_i's slot for the reverse sweep
      for (int64_t c = 0; c < Dv; ++c) {
        g[c] = dyi[c] * inv;
        parked[c] = g[c];
      }
      std::fill_n(o, Dv, T(0));
      for (int64_t a = 0; a < D; ++a) {
        T* sa = s + a * Dv;
        advance_row<T, kWeighted>(Dv, p, i, ki[a], vi, sa);
        axpy(Dv, qi[a], sa, o);
        dqi[a] = dot(Dv, sa, g);
      }
      decay_axpy<T, kWeighted>(D, p, T(1), ki, z);
      const T ddi = -dot(Dv, dyi, o) * inv * inv;
      dden[i] = ddi;
      axpy(D, ddi, z, dqi);
    } else {
      for (int64_t a = 0; a < D; ++a) {
        T* sa = s + a * Dv;
        advance_row<T, kWeighted>(Dv, p, i, ki[a], vi, sa);
        dqi[a] = dot(Dv, sa, dyi);
      }
    }
  }

  // Reverse sweep: R = λ R + q_i do_iᵀ, r = λ_z r + dden_i q_i; dk_i = ω_i R v_i + r,
  // dv_i = ω_i Rᵀ k_i.
  T* R = s;
  T* r = z;
  std::fill_n(R, D * Dv, T(0));
  std::fill_n(r, D, T(0));
  for (int64_t i = N - 1; i >= 0; --i) {
    const T* qi = q + i * D;
    const T* ki = k + i * D;
    const T* vi = v + i * Dv;
    T* dki = dk + i * D;
    T* dvi = dv + i * Dv;
    std::copy_n(kNormalize ? dvi : dy + i * Dv, Dv, g);  // do_i
    std::fill_n(w, Dv, T(0));
    for (int64_t a = 0; a < D; ++a) {
      T* Ra = R + a * Dv;
      decay_axpy<T, kWeighted>(Dv, p, qi[a], g, Ra);
      dki[a] = dot(Dv, Ra, vi);
      axpy(Dv, ki[a], Ra, w);
    }
    if constexpr (kWeighted) {
      const T wi = p.weight[i];
      for (int64_t a = 0; a < D; ++a) dki[a] *= wi;
      for (int64_t c = 0; c < Dv; ++c) w[c] *= wi;
    }
    std::copy_n(w, Dv, dvi);
    if constexpr (kNormalize) {
      decay_axpy<T, kWeighted>(D, p, dden[i], qi, r);
      axpy(D, T(1), r, dki);
    }
  }
}

template <class T, bool kWeighted, bool kNormalize>
void sweep_backward(const AttentionDims& d, const T* q, const T* k, const T* v, const T* den,
                    const T* dy, T* dq, T* dk, T* dv, T* dden, const SweepParams<T>& p) {
  const int64_t N = d.N, D = d.D, Dv = d.Dv;
  parallel_for(d.B * d.H, 6 * N * D * Dv + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> s(static_cast<size_t>(D * Dv)), z(static_cast<size_t>(D));
    std::vector<T> o(static_cast<size_t>(Dv)), g(static_cast<size_t>(Dv)),
        w(static_cast<size_t>(Dv));
    with_fixed_dv(Dv, [&]<int kDv>() {
      for (int64_t h = begin; h < end; ++h) {
        backward_head<T, kWeighted, kNormalize, kDv>(
            q + h * N * D, k + h * N * D, v + h * N * Dv, kNormalize ? den + h * N : nullptr,
            dy + h * N * Dv, dq + h * N * D, dk + h * N * D, dv + h * N * Dv,
            kNormalize ? dden + h * N : nullptr, N, D, Dv, p, s.data(), z.data(), o.data(),
            g.data(), w.data());
      }
    });
  });
}

}  // namespace
}  // namespace POLYAK_ISA_NAMESPACE

template <class T, bool kWeighted, bool kNormalize>
void decayed_sweep_forward(POLYAK_KERNEL_ISA_TAG, const AttentionDims& d, const T* q, const T* k,
                           const T* v, T* y, T* den, T decay, const T* weight, T eps) {
  sweep_forward<T, kWeighted, kNormalize>(d, q, k, v, y, den, SweepParams<T>{decay, weight, eps});
}

template <class T, bool kWeighted, bool kNormalize>
void decayed_sweep_backward(POLYAK_KERNEL_ISA_TAG, const AttentionDims& d, const T* q, const T* k,
                            const T* v, const T* den, const T* dy, T* dq, T* dk, T* dv, T* dden,
                            T decay, const T* weight) {
  sweep_backward<T, kWeighted, kNormalize>(d, q, k, v, den, dy, dq, dk, dv, dden,
                                           SweepParams<T>{decay, weight, T(0)});
}

#define POLYAK_INSTANTIATE(T, kWeighted, kNormalize)                                        \
  template void decayed_sweep_forward<T, kWeighted, kNormalize>(                            \
      POLYAK_KERNEL_ISA_TAG, const AttentionDims&, const T*, const T*, const T*, T*, T*, T, \
      const T*, T);                                                                         \
  template void decayed_sweep_backward<T, kWeighted, kNormalize>(                           \
      POLYAK_KERNEL_ISA_TAG, const AttentionDims&, const T*, const T*, const T*, const T*,  \
      const T*, T*, T*, T*, T*, T, const T*);
POLYAK_INSTANTIATE(float, true, true)
POLYAK_INSTANTIATE(float, false, true)
POLYAK_INSTANTIATE(float, false, false)
POLYAK_INSTANTIATE(double, true, true)
POLYAK_INSTANTIATE(double, false, true)
POLYAK_INSTANTIATE(double, false, false)
#undef POLYAK_INSTANTIATE

}  // namespace polyak::detail
