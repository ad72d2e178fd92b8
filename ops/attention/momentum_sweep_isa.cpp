// Causal momentum attention, exact weighting (momentum transformer eq. 12–13; docs/math.md §3),
// as one fused sweep per direction with O(N·D) activation memory.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
// q, k [B,H,N,D], v [B,H,N,Dv] → y [B,H,N,Dv]. Per (b, h), with E_0 = s_0 = 0, z_0 = 0:
//
//   E_i = β E_{i−1} + k_i v_iᵀ        [D,Dv]   (eq. 12's m_i = −E_i)
//   s_i = s_{i−1} + γ E_i              [D,Dv]   (eq. 12's s_i)
//   z_i = z_{i−1} + k_i                [D]
//   o_i = s_iᵀ q_i,  den_i = q_i·z_i + ε,  y_i = o_i / den_i
//
// Unrolled, s_i = Σ_{j≤i} w(i−j) k_j v_jᵀ with w(m) = γ Σ_{u=0..m} β^u = γ(1−β^{m+1})/(1−β):
// eq. 13 exactly.
//
// Backward. do_i = dy_i / den_i, dden_i = −(dy_i·y_i)/den_i (y is saved: no o_i rebuild):
//   dq_i = s_i do_i + dden_i z_i                                       [B,H,N,D]
//   dk_j = R_j v_j + r_j,  dv_j = R_jᵀ k_j                             [B,H,N,D], [B,H,N,Dv]
//   R_j = Σ_{i≥j} w(i−j) q_i do_iᵀ,  r_j = Σ_{i≥j} dden_i q_i
// R_j obeys the mirror of the forward recurrence,
//   M_j = β M_{j+1} + q_j do_jᵀ,  R_j = R_{j+1} + γ M_j    (M_j = Σ_{i≥j} β^{i−j} q_i do_iᵀ)
// since γ Σ_{l=j..i} β^{i−l} = w(i−j). Two sweeps, two D×Dv matrices each:
//   pass 1 (i = 1..N): rebuild E_i, s_i, z_i; dq_i.
//   pass 2 (j = N..1): M_j, R_j, r_j; dk_j, dv_j.
//
// One multiply-add per element for the decaying state. Written directly, E ← β E + k vᵀ is
// a multiply and a multiply-add per element. Within a block of L consecutive positions
// i = i0 + m (m = 0..L−1) the sweep keeps instead the scaled state
//   G_m = β^{L−1−m} E_i:   G_{−1} = β^L E_{i0−1},  G_m = G_{m−1} + β^{L−1−m} k_i v_iᵀ,
//   s_i = s_{i−1} + γ β^{−(L−1−m)} G_m,
// and G_{L−1} = E_{i0+L−1} needs no rescaling at the block's end: per position one
// multiply-add for G and one for s, plus one multiply per element per block (β^L E).
// The scale factors stay within [β^L, β^{−(L−1)}]: L is the largest block length (≤ 64)
// with β^{−(L−1)} ≤ 2^20, so nothing overflows in f32; β = 0 gives L = 1, which is the
// direct update. Rounding behaves as in the direct recurrence (an error made in G_m reaches
// later positions scaled by the same powers of β). Pass 2 runs the same scheme on M in
// reverse order.
//
// Speed (fixed Dv = 16, 32, 64; other widths take plain loops). The forward and pass 1 do
// three multiply-adds per state element and position; storing G and s once per position
// would cost more than that, so they take two positions per pass over the states, each row
// loaded and stored once for the pair (a block's unpaired last position takes a one-position
// kernel of the same form). Pass 2 does four multiply-adds per element and position and
// takes pairs too: one position at a time, its stores (M and R, each row) would bound it.
// Sums over the rows that stay in registers for a single position (o_i, dv_j) run on two
// accumulator chains, even and odd rows. The row dot products
// (dq_i[r] = s_i[r,:]·do_i, dk_j[r] = R_j[r,:]·v_j) stay vectors until a vector's width of
// rows is summed across lanes together.
// Saved for backward: q, k, v, den [B,H,N] and y (without its graph). Scratch: dden [B,H,N].
//
// Compiled once per ISA (cmake/isa.cmake); momentum_sweep.cpp holds the op and its node.
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

constexpr int64_t kMaxBlock = 64;

// Elements between the two D×Dv states in one buffer. Without it, at D·Dv·sizeof(T) = 4 KiB
// (D = Dv = 32, f32) a load from one state and a store to the other share their low 12
// address bits, and the CPU stalls the load as if it depended on the store (4K aliasing).
constexpr int64_t kStatePad = 16;

// The block length L and its scale factors, in T: up[u] = β^u (u ≤ L), down[u] = γ β^{−u}
// (u < L).
template <class T>
struct Blocks {
  int64_t L = 1;
  std::vector<T> up, down;
  Blocks(double beta, double gamma) {
    if (beta > 0) {
      const double span = 20.0 * std::log(2.0) / -std::log(beta);
      L = std::clamp<int64_t>(1 + static_cast<int64_t>(std::min(span, 1e6)), 1, kMaxBlock);
    }
    up.resize(static_cast<size_t>(L + 1));
    down.resize(static_cast<size_t>(L));
    for (int64_t u = 0; u <= L; ++u) {
      up[static_cast<size_t>(u)] = static_cast<T>(std::pow(beta, static_cast<double>(u)));
      if (u < L)
        down[static_cast<size_t>(u)] =
            static_cast<T>(gamma * std::pow(beta, -static_cast<double>(u)));
    }
  }
};

template <class T>
void scale(int64_t n, T a, T* x) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

// Each kernel below advances the states through one position (or a pair) of a block:
// a, a0, a1 scale the key (pass 1, forward) or the query (pass 2) by β^u; g, g0, g1 = γβ^{−u}
// scale the block state into s (or R). The run-time-Dv versions keep everything in plain
// loops; the fixed-Dv versions use whole vectors so that accumulators stay in registers.

// ---- forward -----------------------------------------------------------------------------

// One position for a run-time Dv: G += a k vᵀ, s += g G, o = sᵀ q (row by row).
template <class T>
void forward_step(const T* q, const T* k, const T* v, int64_t D, int64_t Dv, T a, T g, T* G, T* s,
                  T* o) {
  std::fill_n(o, Dv, T(0));
  for (int64_t r = 0; r < D; ++r) {
    T* Gr = G + r * Dv;
    T* sr = s + r * Dv;
    const T kr = a * k[r], qr = q[r];
#pragma omp simd
    for (int64_t c = 0; c < Dv; ++c) {
      Gr[c] += kr * v[c];
      sr[c] += g * Gr[c];
      o[c] += qr * sr[c];
    }
  }
}

// Positions i, i + 1 (q, k, v point at row i) for a fixed Dv, one vector of columns at a
// time: the two output vectors and the two value vectors stay in registers while the rows
// of G and s stream past, each loaded and stored once for both positions. kk [2D] is
// scratch for the scaled keys.
template <class T, int kDv>
void forward_pair(const T* q, const T* k, const T* v, int64_t D, T a0, T a1, T g0, T g1, T* G, T* s,
                  T* kk, T* o0, T* o1) {
  using V = typename Simd<T>::V;
  constexpr int kL = Simd<T>::kLanes;
  static_assert(kDv % kL == 0, "fixed widths are whole vectors");
  for (int64_t r = 0; r < D; ++r) {
    kk[r] = a0 * k[r];
    kk[D + r] = a1 * k[D + r];
  }
  const T* q1 = q + D;
  const T* k1 = kk + D;
  // Rows r and r + 1 feed separate accumulators: one chain per output vector would wait
  // on the multiply-add latency every row.
  auto row = [&](int64_t r, int cv, const V& v0, const V& v1, V& acc0, V& acc1) {
    T* Gr = G + r * kDv + cv;
    T* sr = s + r * kDv + cv;
    V gv = load_vec(Gr) + kk[r] * v0;
    V sv = load_vec(sr) + g0 * gv;
    acc0 += q[r] * sv;
    gv += k1[r] * v1;
    sv += g1 * gv;
    acc1 += q1[r] * sv;
    store_vec(Gr, gv);
    store_vec(sr, sv);
  };
  for (int cv = 0; cv < kDv; cv += kL) {
    const V v0 = load_vec(v + cv), v1 = load_vec(v + kDv + cv);
    V acc0{}, acc1{}, acc0b{}, acc1b{};
    int64_t r = 0;
    for (; r + 1 < D; r += 2) {
      row(r, cv, v0, v1, acc0, acc1);
      row(r + 1, cv, v0, v1, acc0b, acc1b);
    }
    if (r < D) row(r, cv, v0, v1, acc0, acc1);
    store_vec(o0 + cv, acc0 + acc0b);
    store_vec(o1 + cv, acc1 + acc1b);
  }
}

// One position for a fixed Dv (a block's last, unpaired one): v_i and o_i stay in
// registers, o_i on two accumulator chains (even and odd rows).
template <class T, int kDv>
void forward_single(const T* q, const T* k, const T* v, int64_t D, T a, T g, T* G, T* s, T* o) {
  using V = typename Simd<T>::V;
  constexpr int kL = Simd<T>::kLanes, kNV = kDv / kL;
  V vv[kNV], acc[2][kNV];
  for (int cv = 0; cv < kNV; ++cv) {
    vv[cv] = load_vec(v + cv * kL);
    acc[0][cv] = acc[1][cv] = V{};
  }
  rows_in_two_chains(D, [&](int64_t r, int chain) {
    const T kr = a * k[r], qr = q[r];
    for (int cv = 0; cv < kNV; ++cv) {
      T* Gr = G + r * kDv + cv * kL;
      T* sr = s + r * kDv + cv * kL;
      const V gv = load_vec(Gr) + kr * vv[cv];
      const V sv = load_vec(sr) + g * gv;
      acc[chain][cv] += qr * sv;
      store_vec(Gr, gv);
      store_vec(sr, sv);
    }
  });
  for (int cv = 0; cv < kNV; ++cv) store_vec(o + cv * kL, acc[0][cv] + acc[1][cv]);
}

// One (b, h). G, s [D·Dv], z [D], kk [2D] and o0, o1 [Dv] are the caller's scratch.
template <class T, int kDv>
void forward_head(const T* q, const T* k, const T* v, T* y, T* den, int64_t N, int64_t D,
                  int64_t dv_runtime, T eps, const Blocks<T>& bl, T* G, T* s, T* z, T* kk, T* o0,
                  T* o1) {
  const int64_t Dv = kDv > 0 ? kDv : dv_runtime;
  std::fill_n(G, D * Dv, T(0));
  std::fill_n(s, D * Dv, T(0));
  std::fill_n(z, D, T(0));
  // y_i = o_i / (q_i·z_i + ε) once z has taken k_i.
  auto finish = [&](int64_t i, const T* o) {
    axpy(D, T(1), k + i * D, z);
    const T di = dot(D, q + i * D, z) + eps;
    den[i] = di;
    const T inv = T(1) / di;
    T* yi = y + i * Dv;
    for (int64_t c = 0; c < Dv; ++c) yi[c] = o[c] * inv;
  };
  for (int64_t i0 = 0; i0 < N; i0 += bl.L) {
    const int64_t L = std::min(bl.L, N - i0);
    scale(D * Dv, bl.up[static_cast<size_t>(L)], G);  // G_{−1} = β^L E
    int64_t m = 0;
    if constexpr (kDv > 0) {
      for (; m + 1 < L; m += 2) {
        const int64_t i = i0 + m;
        const auto u = static_cast<size_t>(L - 1 - m);
        forward_pair<T, kDv>(q + i * D, k + i * D, v + i * Dv, D, bl.up[u], bl.up[u - 1],
                             bl.down[u], bl.down[u - 1], G, s, kk, o0, o1);
        finish(i, o0);
        finish(i + 1, o1);
      }
    }
    for (; m < L; ++m) {
      const int64_t i = i0 + m;
      const auto u = static_cast<size_t>(L - 1 - m);
      if constexpr (kDv > 0)
        forward_single<T, kDv>(q + i * D, k + i * D, v + i * Dv, D, bl.up[u], bl.down[u], G, s, o0);
      else
        forward_step(q + i * D, k + i * D, v + i * Dv, D, Dv, bl.up[u], bl.down[u], G, s, o0);
      finish(i, o0);
    }
  }
}

// ---- backward, pass 1 ------------------------------------------------------------------

// One position for a run-time Dv: G += a k vᵀ, s += g G, dq = s t (t = do_i).
template <class T>
void dq_step(const T* k, const T* v, const T* t, int64_t D, int64_t Dv, T a, T g, T* G, T* s,
             T* dq) {
  for (int64_t r = 0; r < D; ++r) {
    T* Gr = G + r * Dv;
    T* sr = s + r * Dv;
    const T kr = a * k[r];
    T acc = T(0);
#pragma omp simd reduction(+ : acc)
    for (int64_t c = 0; c < Dv; ++c) {
      Gr[c] += kr * v[c];
      sr[c] += g * Gr[c];
      acc += sr[c] * t[c];
    }
    dq[r] = acc;
  }
}

// One position of the fixed-Dv backward kernels: its rows of q, k, v and t = do, its scale
// factors a (of the key, or in pass 2 the query) and g, the vectors P [D] that hold its
// row dot products until they are summed across lanes a vector's width of rows at a time,
// and its outputs (dq in pass 1; dk, dv in pass 2).
template <class T>
struct Position {
  const T *q, *k, *v, *t;
  T a, g;
  typename Simd<T>::V* P;
  T *dqk, *dv;
};

// kP consecutive positions (1, or a pair i, i + 1) for a fixed Dv, row by row: G += a k vᵀ,
// s += g G, dq = s t for each in turn, every row of G and s loaded and stored once for all
// of them.
template <class T, int kDv, int kP>
void dq_positions(const Position<T> (&ps)[kP], int64_t D, T* G, T* s) {
  using V = typename Simd<T>::V;
  constexpr int kL = Simd<T>::kLanes;
  for (int64_t r = 0; r < D; ++r) {
    T kr[kP];
    for (int p = 0; p < kP; ++p) kr[p] = ps[p].a * ps[p].k[r];
    V acc[kP] = {};
    for (int cv = 0; cv < kDv; cv += kL) {
      T* Gr = G + r * kDv + cv;
      T* sr = s + r * kDv + cv;
      V gv = load_vec(Gr), sv = load_vec(sr);
      for (int p = 0; p < kP; ++p) {
        gv += kr[p] * load_vec(ps[p].v + cv);
        sv += ps[p].g * gv;
        acc[p] += sv * load_vec(ps[p].t + cv);
      }
      store_vec(Gr, gv);
      store_vec(sr, sv);
    }
    for (int p = 0; p < kP; ++p) ps[p].P[r] = acc[p];
  }
  for (int p = 0; p < kP; ++p) sum_lanes(D, ps[p].P, ps[p].dqk);
}

// ---- backward, pass 2 ------------------------------------------------------------------

// One position j for a run-time Dv: M += a q tᵀ, R += g M, dk = R v, dv = Rᵀ k.
template <class T>
void dkv_step(const T* q, const T* k, const T* v, const T* t, int64_t D, int64_t Dv, T a, T g, T* M,
              T* R, T* dk, T* dv) {
  std::fill_n(dv, Dv, T(0));
  for (int64_t r = 0; r < D; ++r) {
    T* Mr = M + r * Dv;
    T* Rr = R + r * Dv;
    const T qr = a * q[r], kr = k[r];
    T acc = T(0);
#pragma omp simd reduction(+ : acc)
    for (int64_t c = 0; c < Dv; ++c) {
      Mr[c] += qr * t[c];
      Rr[c] += g * Mr[c];
      acc += Rr[c] * v[c];
      dv[c] += kr * Rr[c];
    }
    dk[r] = acc;
  }
}

// kP positions of the reverse sweep (1, or a pair j, j − 1, in that order) for a fixed Dv:
// M += a q tᵀ, R += g M, dk = R v, dv = Rᵀ k for each in turn, every row of M and R loaded
// and stored once for all of them (one position at a time, those stores would bound it).
// Each dv stays in registers, on two accumulator chains (even and odd rows).
template <class T, int kDv, int kP>
void dkv_positions(const Position<T> (&ps)[kP], int64_t D, T* M, T* R) {
  using V = typename Simd<T>::V;
  constexpr int kL = Simd<T>::kLanes, kNV = kDv / kL;
  V w[kP][2][kNV] = {};
  rows_in_two_chains(D, [&](int64_t r, int chain) {
    T qr[kP];
    for (int p = 0; p < kP; ++p) qr[p] = ps[p].a * ps[p].q[r];
    V acc[kP] = {};
    for (int cv = 0; cv < kNV; ++cv) {
      T* Mr = M + r * kDv + cv * kL;
      T* Rr = R + r * kDv + cv * kL;
      V mv = load_vec(Mr), rv = load_vec(Rr);
      for (int p = 0; p < kP; ++p) {
        mv += qr[p] * load_vec(ps[p].t + cv * kL);
        rv += ps[p].g * mv;
        acc[p] += rv * load_vec(ps[p].v + cv * kL);
        w[p][chain][cv] += ps[p].k[r] * rv;
      }
      store_vec(Mr, mv);
      store_vec(Rr, rv);
    }
    for (int p = 0; p < kP; ++p) ps[p].P[r] = acc[p];
  });
  for (int p = 0; p < kP; ++p) {
    sum_lanes(D, ps[p].P, ps[p].dqk);
    for (int cv = 0; cv < kNV; ++cv) store_vec(ps[p].dv + cv * kL, w[p][0][cv] + w[p][1][cv]);
  }
}

// ---- backward --------------------------------------------------------------------------

// One (b, h). Writes (overwrites) dq, dk [N,D], dv [N,Dv]; dden [N] is scratch.
// G, s [D·Dv], z [D], t0, t1 [Dv] and P0, P1 [D vectors] are the caller's scratch.
template <class T, int kDv>
void backward_head(const T* q, const T* k, const T* v, const T* y, const T* den, const T* dy, T* dq,
                   T* dk, T* dv, T* dden, int64_t N, int64_t D, int64_t dv_runtime,
                   const Blocks<T>& bl, T* G, T* s, T* z, T* t0, T* t1, typename Simd<T>::V* P0,
                   typename Simd<T>::V* P1) {
  const int64_t Dv = kDv > 0 ? kDv : dv_runtime;
  // t = do_i = dy_i / den_i (and, in pass 1, dden_i = −(dy_i·y_i)/den_i).
  auto load_do = [&](int64_t i, T* t, bool with_dden) {
    const T inv = T(1) / den[i];
    const T* dyi = dy + i * Dv;
    for (int64_t c = 0; c < Dv; ++c) t[c] = dyi[c] * inv;
    if (with_dden) dden[i] = -dot(Dv, dyi, y + i * Dv) * inv;
  };

  // Pass 1: rebuild E_i (scaled, in G), s_i and z_i; dq_i = s_i do_i + dden_i z_i.
  std::fill_n(G, D * Dv, T(0));
  std::fill_n(s, D * Dv, T(0));
  std::fill_n(z, D, T(0));
  auto finish_dq = [&](int64_t i) {
    axpy(D, T(1), k + i * D, z);
    axpy(D, dden[i], z, dq + i * D);
  };
  for (int64_t i0 = 0; i0 < N; i0 += bl.L) {
    const int64_t L = std::min(bl.L, N - i0);
    scale(D * Dv, bl.up[static_cast<size_t>(L)], G);
    int64_t m = 0;
    if constexpr (kDv > 0) {
      for (; m + 1 < L; m += 2) {
        const int64_t i = i0 + m;
        const auto u = static_cast<size_t>(L - 1 - m);
        load_do(i, t0, true);
        load_do(i + 1, t1, true);
        const Position<T> ps[2] = {
            {nullptr, k + i * D, v + i * Dv, t0, bl.up[u], bl.down[u], P0, dq + i * D, nullptr},
            {nullptr, k + (i + 1) * D, v + (i + 1) * Dv, t1, bl.up[u - 1], bl.down[u - 1], P1,
             dq + (i + 1) * D, nullptr}};
        dq_positions<T, kDv, 2>(ps, D, G, s);
        finish_dq(i);
        finish_dq(i + 1);
      }
    }
    for (; m < L; ++m) {
      const int64_t i = i0 + m;
      const auto u = static_cast<size_t>(L - 1 - m);
      load_do(i, t0, true);
      if constexpr (kDv > 0) {
        const Position<T> ps[1] = {
            {nullptr, k + i * D, v + i * Dv, t0, bl.up[u], bl.down[u], P0, dq + i * D, nullptr}};
        dq_positions<T, kDv, 1>(ps, D, G, s);
      } else
        dq_step(k + i * D, v + i * Dv, t0, D, Dv, bl.up[u], bl.down[u], G, s, dq + i * D);
      finish_dq(i);
    }
  }

  // Pass 2, j = N..1 in blocks [j1 − L + 1, j1] taken from the end (m counts down from j1):
  // M_j (scaled, in G), R_j (in s), r_j (in z); dk_j = R_j v_j + r_j, dv_j = R_jᵀ k_j.
  T* M = G;
  T* R = s;
  T* r = z;
  std::fill_n(M, D * Dv, T(0));
  std::fill_n(R, D * Dv, T(0));
  std::fill_n(r, D, T(0));
  for (int64_t j1 = N - 1; j1 >= 0; j1 -= bl.L) {
    const int64_t L = std::min(bl.L, j1 + 1);
    scale(D * Dv, bl.up[static_cast<size_t>(L)], M);
    // r_j = r_{j+1} + dden_j q_j; dk_j += r_j.
    auto finish_dk = [&](int64_t j) {
      axpy(D, dden[j], q + j * D, r);
      axpy(D, T(1), r, dk + j * D);
    };
    int64_t m = 0;
    if constexpr (kDv > 0) {
      for (; m + 1 < L; m += 2) {
        const int64_t j = j1 - m;
        const auto u = static_cast<size_t>(L - 1 - m);
        load_do(j, t0, false);
        load_do(j - 1, t1, false);
        const Position<T> ps[2] = {
            {q + j * D, k + j * D, v + j * Dv, t0, bl.up[u], bl.down[u], P0, dk + j * D,
             dv + j * Dv},
            {q + (j - 1) * D, k + (j - 1) * D, v + (j - 1) * Dv, t1, bl.up[u - 1], bl.down[u - 1],
             P1, dk + (j - 1) * D, dv + (j - 1) * Dv}};
        dkv_positions<T, kDv, 2>(ps, D, M, R);
        finish_dk(j);
        finish_dk(j - 1);
      }
    }
    for (; m < L; ++m) {
      const int64_t j = j1 - m;
      const auto u = static_cast<size_t>(L - 1 - m);
      load_do(j, t0, false);
      if constexpr (kDv > 0) {
        const Position<T> ps[1] = {{q + j * D, k + j * D, v + j * Dv, t0, bl.up[u], bl.down[u], P0,
                                    dk + j * D, dv + j * Dv}};
        dkv_positions<T, kDv, 1>(ps, D, M, R);
      } else {
        dkv_step(q + j * D, k + j * D, v + j * Dv, t0, D, Dv, bl.up[u], bl.down[u], M, R,
                 dk + j * D, dv + j * Dv);
      }
      finish_dk(j);
    }
  }
}

}  // namespace
}  // namespace POLYAK_ISA_NAMESPACE

template <class T>
void momentum_sweep_forward(POLYAK_KERNEL_ISA_TAG, const AttentionDims& d, const T* qp, const T* kp,
                            const T* vp, T* yp, T* dp, double beta, double gamma, double eps) {
  const int64_t N = d.N, D = d.D, Dv = d.Dv;
  const Blocks<T> bl(beta, gamma);
  parallel_for(d.B * d.H, 3 * N * D * Dv + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> state(static_cast<size_t>(2 * D * Dv + kStatePad)),
        z(static_cast<size_t>(3 * D));
    std::vector<T> o(static_cast<size_t>(2 * Dv));
    with_fixed_dv(Dv, [&]<int kDv>() {
      for (int64_t h = begin; h < end; ++h)
        forward_head<T, kDv>(qp + h * N * D, kp + h * N * D, vp + h * N * Dv, yp + h * N * Dv,
                             dp + h * N, N, D, Dv, static_cast<T>(eps), bl, state.data(),
                             state.data() + D * Dv + kStatePad, z.data(), z.data() + D, o.data(),
                             o.data() + Dv);
    });
  });
}

template <class T>
void momentum_sweep_backward(POLYAK_KERNEL_ISA_TAG, const AttentionDims& d, const T* qp,
                             const T* kp, const T* vp, const T* yp, const T* dp, const T* dyp,
                             T* dqp, T* dkp, T* dvp, T* ddp, double beta, double gamma) {
  const int64_t N = d.N, D = d.D, Dv = d.Dv;
  const Blocks<T> bl(beta, gamma);
  parallel_for(d.B * d.H, 7 * N * D * Dv + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> state(static_cast<size_t>(2 * D * Dv + kStatePad)), z(static_cast<size_t>(D));
    std::vector<T> t(static_cast<size_t>(2 * Dv));
    std::vector<typename Simd<T>::V> P(static_cast<size_t>(2 * D));
    with_fixed_dv(Dv, [&]<int kDv>() {
      for (int64_t h = begin; h < end; ++h)
        backward_head<T, kDv>(qp + h * N * D, kp + h * N * D, vp + h * N * Dv, yp + h * N * Dv,
                              dp + h * N, dyp + h * N * Dv, dqp + h * N * D, dkp + h * N * D,
                              dvp + h * N * Dv, ddp + h * N, N, D, Dv, bl, state.data(),
                              state.data() + D * Dv + kStatePad, z.data(), t.data(), t.data() + Dv,
                              P.data(), P.data() + D);
    });
  });
}

#define POLYAK_INSTANTIATE(T)                                                                     \
  template void momentum_sweep_forward<T>(POLYAK_KERNEL_ISA_TAG, const AttentionDims&, const T*,  \
                                          const T*, const T*, T*, T*, double, double, double);    \
  template void momentum_sweep_backward<T>(POLYAK_KERNEL_ISA_TAG, const AttentionDims&, const T*, \
                                           const T*, const T*, const T*, const T*, const T*, T*,  \
                                           T*, T*, T*, double, double);
POLYAK_INSTANTIATE(float)
POLYAK_INSTANTIATE(double)
#undef POLYAK_INSTANTIATE

}  // namespace polyak::detail
