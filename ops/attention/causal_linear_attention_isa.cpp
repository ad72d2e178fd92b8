// Causal linear attention and the causal dot product, with O(N·D) activation memory.
// docs/math.md §2; Katharopoulos et al. 2020, eq. 7–8 (the RNN form) and §3.3.1 (its gradient).
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
// q, k [B,H,N,D], v [B,H,N,Dv] → y [B,H,N,Dv]. Per (b, h), with s_0 = 0, z_0 = 0:
//
//   s_i = s_{i−1} + k_i v_iᵀ          [D,Dv]  running state, never stored per position
//   z_i = z_{i−1} + k_i               [D]
//   o_i = s_iᵀ q_i                    [Dv]    causal_dot_product returns o
//   den_i = q_iᵀ z_i + ε              []      saved: O(N)
//   y_i = o_i / den_i                 [Dv]    causal_linear_attention returns y
//
// Backward. Given dy_i, the chain through the quotient gives
//   do_i   = dy_i / den_i                                   [Dv]
//   dden_i = −(dy_i · o_i) / den_i²                         []
// (for causal_dot_product: do_i = dy_i, dden_i = 0). Then, since o_i = Σ_{j≤i} (q_i·k_j) v_j
// and den_i = Σ_{j≤i} q_i·k_j + ε:
//   dq_i = s_i do_i + dden_i z_i                            [B,H,N,D]
//   dk_j = Σ_{i≥j} q_i (do_i·v_j) + Σ_{i≥j} dden_i q_i
//        = R_j v_j + r_j,   R_j = Σ_{i≥j} q_i do_iᵀ [D,Dv],  r_j = Σ_{i≥j} dden_i q_i [D]
//                                                           [B,H,N,D]
//   dv_j = Σ_{i≥j} (q_i·k_j) do_i = R_jᵀ k_j                [B,H,N,Dv]
// so two sweeps suffice, each holding one D×Dv matrix:
//   forward sweep  (i = 1..N): rebuild s_i, z_i; recompute o_i; do_i, dden_i; dq_i.
//   reverse sweep  (i = N..1): R += q_i do_iᵀ, r += dden_i q_i; dk_i = R v_i + r;
//                              dv_i = Rᵀ k_i.
// Saved for backward: q, k, v and den (causal_linear_attention only). Scratch during
// backward: dden [B,H,N]; do_i waits in dv_i's slot between the sweeps.
//
// Compiled once per ISA (cmake/isa.cmake); causal_linear_attention.cpp holds the ops.
#include <algorithm>
#include <cmath>
#include <vector>

#include "polyak/core/threads.h"
#include "polyak/ops/attention/causal_sweeps.h"
#include "polyak/ops/attention/simd.h"
#include "polyak/ops/attention/sweep.h"
#include "polyak/ops/attention/vec.h"

namespace polyak::detail {
inline namespace POLYAK_ISA_NAMESPACE {
namespace {

// ---- forward ---------------------------------------------------------------------------

// One (b, h), for a value width read at run time (the fixed widths take
// causal_forward_head_vec below): q, k [N,D], v [N,Dv] → y [N,Dv] (and den [N] when
// normalising). s [D·Dv], z [D] and o [Dv] are the caller's scratch.
template <class T, bool kNormalize>
void causal_forward_head(const T* q, const T* k, const T* v, T* y, T* den, int64_t N, int64_t D,
                         int64_t Dv, T eps, T* s, T* z, T* o) {
  std::fill_n(s, D * Dv, T(0));
  std::fill_n(z, D, T(0));
  for (int64_t i = 0; i < N; ++i) {
    const T* qi = q + i * D;
    const T* ki = k + i * D;
    const T* vi = v + i * Dv;
    T* yi = y + i * Dv;
    std::fill_n(o, Dv, T(0));
    for (int64_t a = 0; a < D; ++a) {
      T* sa = s + a * Dv;
      axpy(Dv, ki[a], vi, sa);  // s_i = s_{i−1} + k_i v_iᵀ   (row a)
      axpy(Dv, qi[a], sa, o);   // o_i += q_i[a] · s_i[a, :]
    }
    T inv = T(1);
    if constexpr (kNormalize) {
      axpy(D, T(1), ki, z);
      const T di = dot(D, qi, z) + eps;
      den[i] = di;
      inv = T(1) / di;
    }
    for (int64_t c = 0; c < Dv; ++c) yi[c] = o[c] * inv;
  }
}

// causal_forward_head for a fixed Dv: v_i and the running o_i stay in registers while the
// rows of s stream past; even and odd rows feed separate accumulators, so that o_i does not
// wait on one chain of D dependent multiply-adds.
template <class T, bool kNormalize, int kDv>
void causal_forward_head_vec(const T* q, const T* k, const T* v, T* y, T* den, int64_t N, int64_t D,
                             T eps, T* s, T* z) {
  using V = typename Simd<T>::V;
  constexpr int kL = Simd<T>::kLanes, kC = kDv / kL;
  static_assert(kDv % kL == 0, "fixed widths are whole vectors");
  std::fill_n(s, D * kDv, T(0));
  std::fill_n(z, D, T(0));
  for (int64_t i = 0; i < N; ++i) {
    const T* qi = q + i * D;
    const T* ki = k + i * D;
    V vv[kC], o[2][kC];
    for (int c = 0; c < kC; ++c) {
      vv[c] = load_vec(v + i * kDv + c * kL);
      o[0][c] = V{};
      o[1][c] = V{};
    }
    auto row = [&](int64_t a, int chain) {
      T* sa = s + a * kDv;
      for (int c = 0; c < kC; ++c) {
        const V sv = load_vec(sa + c * kL) + ki[a] * vv[c];  // s_i = s_{i−1} + k_i v_iᵀ
        store_vec(sa + c * kL, sv);
        o[chain][c] += qi[a] * sv;  // o_i = s_iᵀ q_i
      }
    };
    rows_in_two_chains(D, row);
    T inv = T(1);
    if constexpr (kNormalize) {
      axpy(D, T(1), ki, z);
      const T di = dot(D, qi, z) + eps;
      den[i] = di;
      inv = T(1) / di;
    }
    for (int c = 0; c < kC; ++c) store_vec(y + i * kDv + c * kL, (o[0][c] + o[1][c]) * inv);
  }
}

template <class T, bool kNormalize>
void causal_forward(const AttentionDims& d, const T* q, const T* k, const T* v, T* y, T* den,
                    T eps) {
  const int64_t N = d.N, D = d.D, Dv = d.Dv;
  parallel_for(d.B * d.H, 2 * N * D * Dv + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> s(static_cast<size_t>(D * Dv)), z(static_cast<size_t>(D));
    std::vector<T> o(static_cast<size_t>(Dv));
    with_fixed_dv(Dv, [&]<int kDv>() {
      for (int64_t h = begin; h < end; ++h) {
        const T* qh = q + h * N * D;
        const T* kh = k + h * N * D;
        const T* vh = v + h * N * Dv;
        T* denh = kNormalize ? den + h * N : nullptr;
        if constexpr (kDv > 0)
          causal_forward_head_vec<T, kNormalize, kDv>(qh, kh, vh, y + h * N * Dv, denh, N, D, eps,
                                                      s.data(), z.data());
        else
          causal_forward_head<T, kNormalize>(qh, kh, vh, y + h * N * Dv, denh, N, D, Dv, eps,
                                             s.data(), z.data(), o.data());
      }
    });
  });
}

// ---- backward --------------------------------------------------------------------------

// One (b, h), for a value width read at run time (the fixed widths take
// causal_backward_head_vec below). Writes (overwrites) dq, dk [N,D] and dv [N,Dv]. dden [N]
// is scratch. s [D·Dv], z [D], and o (o_i), g (do_i), w (dv_i being summed) [Dv] are the
// caller's scratch.
template <class T, bool kNormalize>
void causal_backward_head(const T* q, const T* k, const T* v, const T* den, const T* dy, T* dq,
                          T* dk, T* dv, T* dden, int64_t N, int64_t D, int64_t Dv, T* s, T* z, T* o,
                          T* g, T* w) {
  // Forward sweep: rebuild s_i (and z_i); dq_i = s_i do_i + dden_i z_i.
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
        axpy(Dv, ki[a], vi, sa);
        axpy(Dv, qi[a], sa, o);   // o_i = s_iᵀ q_i
        dqi[a] = dot(Dv, sa, g);  // (s_i do_i)[a]
      }
      axpy(D, T(1), ki, z);
      const T ddi = -dot(Dv, dyi, o) * inv * inv;
      dden[i] = ddi;
      axpy(D, ddi, z, dqi);
    } else {
      for (int64_t a = 0; a < D; ++a) {
        T* sa = s + a * Dv;
        axpy(Dv, ki[a], vi, sa);
        dqi[a] = dot(Dv, sa, dyi);  // dq_i = s_i do_i
      }
    }
  }

  // Reverse sweep: R += q_i do_iᵀ (and r += dden_i q_i); dk_i = R v_i + r; dv_i = Rᵀ k_i.
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
      axpy(Dv, qi[a], g, Ra);    // R += q_i do_iᵀ   (row a)
      dki[a] = dot(Dv, Ra, vi);  // dk_i = R v_i
      axpy(Dv, ki[a], Ra, w);    // dv_i = Rᵀ k_i
    }
    std::copy_n(w, Dv, dvi);
    if constexpr (kNormalize) {
      axpy(D, dden[i], qi, r);
      axpy(D, T(1), r, dki);
    }
  }
}

// causal_backward_head for a fixed Dv, one vector of columns at a time: do_i, v_i (and the
// running o_i, dv_i) stay in registers while the rows of s (then R) stream past, and the
// per-row dot products (s_i do_i, R v_i) are kept as vectors in P [D] and summed across
// lanes a vector's width of rows at a time, instead of one horizontal sum per row.
template <class T, bool kNormalize, int kDv>
void causal_backward_head_vec(const T* q, const T* k, const T* v, const T* den, const T* dy, T* dq,
                              T* dk, T* dv, T* dden, int64_t N, int64_t D, T* s, T* z,
                              typename Simd<T>::V* P) {
  using V = typename Simd<T>::V;
  constexpr int kL = Simd<T>::kLanes, kC = kDv / kL;
  static_assert(kDv % kL == 0, "fixed widths are whole vectors");

  // Forward sweep: rebuild s_i (and z_i); dq_i = s_i do_i + dden_i z_i.
  std::fill_n(s, D * kDv, T(0));
  std::fill_n(z, D, T(0));
  for (int64_t i = 0; i < N; ++i) {
    const T* qi = q + i * D;
    const T* ki = k + i * D;
    const T* vi = v + i * kDv;
    const T* dyi = dy + i * kDv;
    T* dqi = dq + i * D;
    const T inv = kNormalize ? T(1) / den[i] : T(1);
    V g[kC], vv[kC], o[2][kC];
    for (int c = 0; c < kC; ++c) {
      g[c] = load_vec(dyi + c * kL) * inv;  // do_i
      vv[c] = load_vec(vi + c * kL);
      o[0][c] = V{};
      o[1][c] = V{};
      if constexpr (kNormalize) store_vec(dv + i * kDv + c * kL, g[c]);  // parked for later
    }
    auto row = [&](int64_t a, int chain) {
      T* sa = s + a * kDv;
      V acc{};
      for (int c = 0; c < kC; ++c) {
        const V sv = load_vec(sa + c * kL) + ki[a] * vv[c];  // s_i = s_{i−1} + k_i v_iᵀ
        store_vec(sa + c * kL, sv);
        if constexpr (kNormalize) o[chain][c] += qi[a] * sv;  // o_i = s_iᵀ q_i
        acc += sv * g[c];
      }
      P[a] = acc;
    };
    rows_in_two_chains(D, row);
    sum_lanes(D, P, dqi);  // (s_i do_i)[a]
    if constexpr (kNormalize) {
      axpy(D, T(1), ki, z);
      V od{};
      for (int c = 0; c < kC; ++c) od += load_vec(dyi + c * kL) * (o[0][c] + o[1][c]);
      T dot_dy_o = T(0);
      for (int l = 0; l < kL; ++l) dot_dy_o += od[l];
      const T ddi = -dot_dy_o * inv * inv;
      dden[i] = ddi;
      axpy(D, ddi, z, dqi);
    }
  }

  // Reverse sweep: R += q_i do_iᵀ (and r += dden_i q_i); dk_i = R v_i + r; dv_i = Rᵀ k_i.
  T* R = s;
  T* r = z;
  std::fill_n(R, D * kDv, T(0));
  std::fill_n(r, D, T(0));
  for (int64_t i = N - 1; i >= 0; --i) {
    const T* qi = q + i * D;
    const T* ki = k + i * D;
    const T* vi = v + i * kDv;
    T* dki = dk + i * D;
    T* dvi = dv + i * kDv;
    const T* doi = kNormalize ? dvi : dy + i * kDv;
    V g[kC], vv[kC], w[2][kC];
    for (int c = 0; c < kC; ++c) {
      g[c] = load_vec(doi + c * kL);
      vv[c] = load_vec(vi + c * kL);
      w[0][c] = V{};
      w[1][c] = V{};
    }
    auto row = [&](int64_t a, int chain) {
      T* Ra = R + a * kDv;
      V acc{};
      for (int c = 0; c < kC; ++c) {
        const V rv = load_vec(Ra + c * kL) + qi[a] * g[c];  // R += q_i do_iᵀ   (row a)
        store_vec(Ra + c * kL, rv);
        acc += rv * vv[c];          // dk_i = R v_i
        w[chain][c] += ki[a] * rv;  // dv_i = Rᵀ k_i
      }
      P[a] = acc;
    };
    rows_in_two_chains(D, row);
    sum_lanes(D, P, dki);
    for (int c = 0; c < kC; ++c) store_vec(dvi + c * kL, w[0][c] + w[1][c]);
    if constexpr (kNormalize) {
      axpy(D, dden[i], qi, r);
      axpy(D, T(1), r, dki);
    }
  }
}

template <class T, bool kNormalize>
void causal_backward(const AttentionDims& d, const T* q, const T* k, const T* v, const T* den,
                     const T* dy, T* dq, T* dk, T* dv, T* dden) {
  const int64_t N = d.N, D = d.D, Dv = d.Dv;
  parallel_for(d.B * d.H, 6 * N * D * Dv + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> s(static_cast<size_t>(D * Dv)), z(static_cast<size_t>(D));
    with_fixed_dv(Dv, [&]<int kDv>() {
      static_assert(kDv % Simd<T>::kLanes == 0, "the fixed widths are whole vectors");
      std::vector<typename Simd<T>::V> P(static_cast<size_t>(kDv > 0 ? D : 0));
      std::vector<T> o(static_cast<size_t>(kDv > 0 ? 0 : 3 * Dv));  // o, g, w
      for (int64_t h = begin; h < end; ++h) {
        const T* qh = q + h * N * D;
        const T* kh = k + h * N * D;
        const T* vh = v + h * N * Dv;
        const T* denh = kNormalize ? den + h * N : nullptr;
        T* ddenh = kNormalize ? dden + h * N : nullptr;
        if constexpr (kDv > 0)
          causal_backward_head_vec<T, kNormalize, kDv>(
              qh, kh, vh, denh, dy + h * N * Dv, dq + h * N * D, dk + h * N * D, dv + h * N * Dv,
              ddenh, N, D, s.data(), z.data(), P.data());
        else
          causal_backward_head<T, kNormalize>(
              qh, kh, vh, denh, dy + h * N * Dv, dq + h * N * D, dk + h * N * D, dv + h * N * Dv,
              ddenh, N, D, Dv, s.data(), z.data(), o.data(), o.data() + Dv, o.data() + 2 * Dv);
      }
    });
  });
}

}  // namespace
}  // namespace POLYAK_ISA_NAMESPACE

template <class T, bool kNormalize>
void causal_linear_sweep_forward(POLYAK_KERNEL_ISA_TAG, const AttentionDims& d, const T* q,
                                 const T* k, const T* v, T* y, T* den, T eps) {
  causal_forward<T, kNormalize>(d, q, k, v, y, den, eps);
}

template <class T, bool kNormalize>
void causal_linear_sweep_backward(POLYAK_KERNEL_ISA_TAG, const AttentionDims& d, const T* q,
                                  const T* k, const T* v, const T* den, const T* dy, T* dq, T* dk,
                                  T* dv, T* dden) {
  causal_backward<T, kNormalize>(d, q, k, v, den, dy, dq, dk, dv, dden);
}

#define POLYAK_INSTANTIATE(T, kNormalize)                                                    \
  template void causal_linear_sweep_forward<T, kNormalize>(                                  \
      POLYAK_KERNEL_ISA_TAG, const AttentionDims&, const T*, const T*, const T*, T*, T*, T); \
  template void causal_linear_sweep_backward<T, kNormalize>(                                 \
      POLYAK_KERNEL_ISA_TAG, const AttentionDims&, const T*, const T*, const T*, const T*,   \
      const T*, T*, T*, T*, T*);
POLYAK_INSTANTIATE(float, true)
POLYAK_INSTANTIATE(float, false)
POLYAK_INSTANTIATE(double, true)
POLYAK_INSTANTIATE(double, false)
#undef POLYAK_INSTANTIATE

}  // namespace polyak::detail
