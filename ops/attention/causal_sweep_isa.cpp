// The causal sweep with O(N·D) activation memory: causal linear attention and the causal dot
// product (docs/math.md §2; Katharopoulos et al. 2020, eq. 7–8), decayed ("retention")
// attention (§3.1) and causal momentum attention (§3.2; momentum transformer eq. 12–13).
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
// q, k [B,H,N,D], v [B,H,N,Dv] → y [B,H,N,Dv]. Per (b, h), from zero states:
//
//   A_i = λ A_{i−1} + ω_i k_i v_iᵀ     [D,Dv]  the state, never stored per position
//   X_i = A_i                                   the state read (one state)
//   X_i = B_i = B_{i−1} + γ A_i         [D,Dv]  momentum: eq. 12 with A = E = −m, B = s, λ = β
//   z_i = λ_z z_{i−1} + k_i             [D]     λ_z = λ for one state, 1 for momentum
//   o_i = X_iᵀ q_i,  den_i = q_i·z_i + ε,  y_i = o_i / den_i       (no normaliser: y_i = o_i)
//
// The forms (causal_sweep.h): no decay (λ = ω = 1, known at compile time) for causal linear
// attention and the causal dot product; λ = λ_h per head for decayed attention; ω_j with
// λ = 1 for momentum's reference weighting; two states with λ = β for its exact weighting,
// where X_i = Σ_{j≤i} γ Σ_{u≤i−j} β^u k_j v_jᵀ is eq. 13.
//
// Backward. do_i = dy_i / den_i and dden_i = −(dy_i·y_i)/den_i from the saved y (without a
// normaliser do_i = dy_i, dden_i = 0):
//   dq_i = X_i do_i + dden_i z_i                                            [B,H,N,D]
//   one state:  R_j = λ R_{j+1} + q_j do_jᵀ                                  [D,Dv]
//               dk_j = ω_j R_j v_j + r_j,   dv_j = ω_j R_jᵀ k_j              [B,H,N,D], [B,H,N,Dv]
//   momentum:   M_j = β M_{j+1} + q_j do_jᵀ,  R_j = R_{j+1} + γ M_j          [D,Dv]
//               dk_j = R_j v_j + r_j,       dv_j = R_jᵀ k_j
//   r_j = λ_z r_{j+1} + dden_j q_j                                           [D]
// since R_j = Σ_{i≥j} λ^{i−j} q_i do_iᵀ (momentum: Σ_{i≥j} w(i−j) q_i do_iᵀ, eq. 13's w).
// Two passes, each holding the states: pass 1 (i = 1..N) rebuilds A, X, z and gives dq;
// pass 2 (j = N..1) runs R (and M), r and gives dk, dv.
// Saved for backward: q, k, v, and when normalising y (without its graph) and den [B,H,N].
// Scratch: dden [B,H,N].
//
// One kernel visits the state rows for a position in all three passes: a rank-1 update
// A += x yᵀ (x = k, y = v forward and in pass 1; x = q, y = do in pass 2), B += g A with
// momentum, then the row dots X_r·t (t = do in pass 1, v in pass 2) and the column sums
// Σ_r c_r X_r (c = q forward, k in pass 2).
//
// Decay at one multiply-add per element. Written directly, A ← λ A + x yᵀ is a multiply and
// a multiply-add per element. Within a block of L consecutive positions (the m-th at depth
// u = L−1−m) the sweep keeps instead the scaled state
//   A'_m = λ^u A:   A'_{−1} = λ^L A (the block's entry),   A'_m = A'_{m−1} + (λ^u x) yᵀ,
// and A'_{L−1} is A at the block's end, with no rescaling: the scale goes on the D-vector x,
// plus one multiply per element per block. The state itself is A = λ^{−u} A'_m: one state
// scales what it gives (o_i, row dots, column sums) by λ^{−u}; momentum adds
// B += γ λ^{−u} A'_m. The factors stay within [λ^L, λ^{−(L−1)}]: L is the largest block
// length (≤ 64) with λ^{−(L−1)} ≤ 2^20, so nothing overflows in f32; λ = 0 gives L = 1, the
// direct update. Rounding behaves as in the direct recurrence (an error made in A'_m reaches
// later positions scaled by the same powers of λ). Pass 2 runs the same scheme from the end.
// Per-key weights scale x by ω_i forward and the outputs by ω_j in pass 2; without decay
// nothing is scaled.
//
// Speed (fixed Dv = 16, 32, 64; other widths take plain loops). The kernel takes two
// positions per visit of the state rows, each row loaded and stored once for the pair (a
// block's unpaired last position takes a one-position visit of the same form): momentum's
// two states would otherwise be bound by their stores. Within a visit the columns go in
// groups of register vectors: one vector at a time forward; in the backward as many as keep
// the sums carried across the rows in registers (all of Dv = 32 with AVX-512). The column
// sums run on two accumulator chains, even and odd rows; the row dots stay vectors until a
// vector's width of rows is summed across lanes together. What a position needs besides
// the rows is done before the visit where it can be (den_i, and so y_i's scale, is known
// before the forward visit, which writes y_i at once), and dot products on that path sum
// their lanes as a tree (dot_vec). The visits read their operands' addresses from locals:
// read through the Position structs, they would be reloaded after every store to a state.
// Compiled once per ISA (cmake/isa.cmake); causal_sweep.cpp holds the op and its node.
#include <algorithm>
#include <cmath>
#include <vector>

#include "polyak/core/threads.h"
#include "polyak/ops/attention/causal_sweep.h"
#include "polyak/ops/attention/simd.h"
#include "polyak/ops/attention/sweep.h"
#include "polyak/ops/attention/vec.h"

namespace polyak::detail {
inline namespace POLYAK_ISA_NAMESPACE {
namespace {

constexpr int64_t kMaxBlock = 64;

// Where the second D×Dv state starts in a buffer after the first: half a page apart in their
// low 12 address bits. A load from one state and a store to the other whose addresses
// share those bits stall the load as if it depended on the store (4K aliasing); at
// D·Dv·sizeof(T) = 4 KiB (D = Dv = 32, f32) back to back, B's row r would alias A's next
// vector.
template <class T>
int64_t second_state(int64_t D, int64_t Dv) {
  const int64_t bytes = D * Dv * static_cast<int64_t>(sizeof(T));
  return D * Dv + (2048 - bytes % 4096 + 4096) % 4096 / static_cast<int64_t>(sizeof(T));
}

// ---- the decay ---------------------------------------------------------------------------

// The block length L of a decay λ and its scale factors, in T: up[u] = λ^u (u ≤ L),
// down[u] = γ λ^{−u} (u < L; γ = 1 for one state).
template <class T>
struct Blocks {
  int64_t L = 1;
  std::vector<T> up, down;
  Blocks(double lambda, double gamma) {
    if (lambda >= 1) {
      L = kMaxBlock;
    } else if (lambda > 0) {
      const double span = 20.0 * std::log(2.0) / -std::log(lambda);
      L = std::clamp<int64_t>(1 + static_cast<int64_t>(std::min(span, 1e6)), 1, kMaxBlock);
    }
    up.resize(static_cast<size_t>(L + 1));
    down.resize(static_cast<size_t>(L));
    for (int64_t u = 0; u <= L; ++u) {
      up[static_cast<size_t>(u)] = static_cast<T>(std::pow(lambda, static_cast<double>(u)));
      if (u < L)
        down[static_cast<size_t>(u)] =
            static_cast<T>(gamma * std::pow(lambda, -static_cast<double>(u)));
    }
  }
};

// One head's decay: block length L (N: one block), the factors of its blocks (per_head), the
// key weights (per_key), and λ_z of the normaliser's z (λ with one decaying state, else 1).
template <class T>
struct Scales {
  int64_t L = 0;
  const T* up = nullptr;
  const T* down = nullptr;
  const T* weight = nullptr;
  T lambda_z = T(1);
};

// The decay of every head, in T.
template <class T, SweepDecay kDecay, int kStates>
class Schedule {
 public:
  Schedule(const AttentionDims& d, const CausalSweep& sweep) : N_(d.N) {
    if constexpr (kDecay == SweepDecay::per_head)
      for (const double lambda : sweep.decays) blocks_.emplace_back(lambda, sweep.gamma);
    if constexpr (kDecay == SweepDecay::per_key)
      weight_.assign(sweep.weights.begin(), sweep.weights.end());
  }

  // Head h of H.
  Scales<T> head(int64_t h) const {
    Scales<T> s;
    s.L = N_;
    if constexpr (kDecay == SweepDecay::per_head) {
      const Blocks<T>& b = blocks_[static_cast<size_t>(h)];
      s.L = b.L;
      s.up = b.up.data();
      s.down = b.down.data();
      if constexpr (kStates == 1) s.lambda_z = b.up[1];
    }
    if constexpr (kDecay == SweepDecay::per_key) s.weight = weight_.data();
    return s;
  }

 private:
  int64_t N_;
  std::vector<Blocks<T>> blocks_;
  std::vector<T> weight_;
};

// The factors of position i at depth u of its block: a scales the update's x, g the state
// read (one state) or A into B (momentum). kReverse: pass 2.
template <class T, SweepDecay kDecay, bool kReverse>
inline void factors(const Scales<T>& s, int64_t i, int64_t u, T& a, T& g) {
  a = g = T(1);
  if constexpr (kDecay == SweepDecay::per_head) {
    a = s.up[u];
    g = s.down[u];
  } else if constexpr (kDecay == SweepDecay::per_key) {
    (kReverse ? g : a) = s.weight[i];
  }
}

template <class T>
void scale(int64_t n, T a, T* x) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

// The positions of a head in blocks of up to L from the start (from the end when kReverse):
// block(len) at each block's start, then each.template operator()<kP>(i, u) for its m-th
// position i at depth u = len − 1 − m, in pairs (kPairs: i and the next one, i ± 1) and
// singles.
template <bool kReverse, bool kPairs, class Block, class Each>
void walk(int64_t N, int64_t L, Block&& block, Each&& each) {
  for (int64_t b = 0; b < N; b += L) {
    const int64_t len = std::min(L, N - b);
    block(len);
    auto at = [&](int64_t m) { return kReverse ? N - 1 - b - m : b + m; };
    int64_t m = 0;
    if constexpr (kPairs)
      for (; m + 1 < len; m += 2) each.template operator()<2>(at(m), len - 1 - m);
    for (; m < len; ++m) each.template operator()<1>(at(m), len - 1 - m);
  }
}

// ---- one visit of the state rows ---------------------------------------------------------

enum class Pass { forward, dq, dkv };

// One position's operands: A += x yᵀ, (momentum) B += g A; X = B or A; then rows[r] = X_r·t
// (passes dq, dkv) and cols = f Σ_r c[r] X_r (forward, dkv).
template <class T>
struct Position {
  const T* x;              // [D], its scale applied
  const T* y;              // [Dv]
  T g;                     // momentum
  const T* t;              // [Dv]
  const T* c;              // [D]
  T f;                     // the column sums' scale
  typename Simd<T>::V* P;  // [D] scratch: the row dots as vectors
  T* rows;                 // [D] out
  T* cols;                 // [Dv] out
};

// Column vectors per group in a visit of kP positions. The forward takes one at a time (its
// rows then need only y and two column sums per position in registers). The backward takes
// as many as keep the sums it carries across the rows (two column sums per column vector and
// one row dot, per position) in registers beside the states and temporaries; y and t stay
// put and may as well be read from memory.
template <class T, int kNV, int kP, Pass kPass>
constexpr int group_width() {
  if (kPass == Pass::forward) return 1;
  constexpr int col_sums = kPass == Pass::dkv ? 2 : 0;
  int width = kNV;
  while (width > 1 && kP * (width * col_sums + 1) + 4 > Simd<T>::kRegisters) width /= 2;
  return width;
}

// kP positions in turn for a fixed Dv, row by row, every state row loaded and stored once
// for all of them; the column vectors in groups (group_width), one pass over the rows each.
template <class T, int kDv, int kP, int kStates, Pass kPass>
void visit_rows(const Position<T> (&ps)[kP], int64_t D, T* A, T* B) {
  using V = typename Simd<T>::V;
  constexpr int kL = Simd<T>::kLanes, kNV = kDv / kL, kG = group_width<T, kNV, kP, kPass>();
  static_assert(kDv % kL == 0 && kNV % kG == 0, "fixed widths are whole vectors and groups");
  constexpr bool kRowDots = kPass != Pass::forward, kColSums = kPass != Pass::dq;
  // Locals, not reads through `ps`: the stores below (memcpy) could alias those.
  const T* x[kP];
  const T* c[kP];
  T g[kP];
  V* P[kP];
  for (int p = 0; p < kP; ++p) {
    x[p] = ps[p].x;
    c[p] = ps[p].c;
    g[p] = ps[p].g;
    P[p] = ps[p].P;
  }
  for (int g0 = 0; g0 < kNV; g0 += kG) {
    V y[kP][kG], t[kP][kG], cols[kP][2][kG];
    for (int p = 0; p < kP; ++p)
      for (int cv = 0; cv < kG; ++cv) {
        y[p][cv] = load_vec(ps[p].y + (g0 + cv) * kL);
        if constexpr (kRowDots) t[p][cv] = load_vec(ps[p].t + (g0 + cv) * kL);
        cols[p][0][cv] = cols[p][1][cv] = V{};
      }
    rows_in_two_chains(D, [&](int64_t r, int chain) {
      V dots[kP] = {};
      for (int cv = 0; cv < kG; ++cv) {
        T* Ar = A + r * kDv + (g0 + cv) * kL;
        V a = load_vec(Ar), b{};
        if constexpr (kStates == 2) b = load_vec(B + r * kDv + (g0 + cv) * kL);
        for (int p = 0; p < kP; ++p) {
          a += x[p][r] * y[p][cv];
          if constexpr (kStates == 2) b += g[p] * a;
          const V& read = kStates == 2 ? b : a;
          if constexpr (kRowDots) dots[p] += read * t[p][cv];
          if constexpr (kColSums) cols[p][chain][cv] += c[p][r] * read;
        }
        store_vec(Ar, a);
        if constexpr (kStates == 2) store_vec(B + r * kDv + (g0 + cv) * kL, b);
      }
      if constexpr (kRowDots)
        for (int p = 0; p < kP; ++p) P[p][r] = g0 == 0 ? dots[p] : P[p][r] + dots[p];
    });
    if constexpr (kColSums)
      for (int p = 0; p < kP; ++p)
        for (int cv = 0; cv < kG; ++cv)
          store_vec(ps[p].cols + (g0 + cv) * kL, ps[p].f * (cols[p][0][cv] + cols[p][1][cv]));
  }
  if constexpr (kRowDots)
    for (int p = 0; p < kP; ++p) sum_lanes(D, P[p], ps[p].rows);
}

// One position for a run-time Dv, in plain loops.
template <class T, int kStates, Pass kPass>
void visit_rows_any(const Position<T>& p, int64_t D, int64_t Dv, T* A, T* B) {
  constexpr bool kRowDots = kPass != Pass::forward, kColSums = kPass != Pass::dq;
  const T *x = p.x, *y = p.y, *t = p.t, *c = p.c;  // locals: see visit_rows
  const T g = p.g;
  T* cols = p.cols;
  T* rows = p.rows;
  if constexpr (kColSums) std::fill_n(cols, Dv, T(0));
  for (int64_t r = 0; r < D; ++r) {
    T* Ar = A + r * Dv;
    T* Br = kStates == 2 ? B + r * Dv : nullptr;
    const T xr = x[r];
    const T cr = kColSums ? c[r] : T(0);
    T acc = T(0);
#pragma omp simd reduction(+ : acc)
    for (int64_t col = 0; col < Dv; ++col) {
      Ar[col] += xr * y[col];
      T read = Ar[col];
      if constexpr (kStates == 2) {
        Br[col] += g * read;
        read = Br[col];
      }
      if constexpr (kRowDots) acc += read * t[col];
      if constexpr (kColSums) cols[col] += cr * read;
    }
    if constexpr (kRowDots) rows[r] = acc;
  }
  if (kColSums && p.f != T(1)) scale(Dv, p.f, cols);
}

template <class T, int kDv, int kP, int kStates, Pass kPass>
void visit(const Position<T> (&ps)[kP], int64_t D, int64_t Dv, T* A, T* B) {
  if constexpr (kDv > 0) {
    visit_rows<T, kDv, kP, kStates, kPass>(ps, D, A, B);
  } else {
    static_assert(kP == 1, "a run-time width takes one position at a time");
    visit_rows_any<T, kStates, kPass>(ps[0], D, Dv, A, B);
  }
}

// ---- one (b, h) ------------------------------------------------------------------------

// One thread's scratch: the states A, B [D·Dv], z (or r) [D], the scaled x of two
// positions [2D], their do [2Dv] and row-dot vectors [2D].
template <class T>
struct Scratch {
  std::vector<T> states, z, x, t;
  std::vector<typename Simd<T>::V> P;
  Scratch(int64_t D, int64_t Dv)
      : states(static_cast<size_t>(second_state<T>(D, Dv) + D * Dv)),
        z(static_cast<size_t>(D)),
        x(static_cast<size_t>(2 * D)),
        t(static_cast<size_t>(2 * Dv)),
        P(static_cast<size_t>(2 * D)) {}
};

// The tensors of a sweep (those it has), at (b, h) 0 or moved to another by at(bh).
template <class T>
struct Head {
  const T *q = nullptr, *k = nullptr, *v = nullptr, *y = nullptr, *den = nullptr, *dy = nullptr;
  T *y_out = nullptr, *den_out = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr,
    *dden = nullptr;
  int64_t N = 0, D = 0, Dv = 0;

  Head at(int64_t bh) const {
    auto move = [](auto* p, int64_t offset) { return p ? p + offset : p; };
    const int64_t qk = bh * N * D, vy = bh * N * Dv, n = bh * N;
    return {move(q, qk),
            move(k, qk),
            move(v, vy),
            move(y, vy),
            move(den, n),
            move(dy, vy),
            move(y_out, vy),
            move(den_out, n),
            move(dq, qk),
            move(dk, qk),
            move(dv, vy),
            move(dden, n),
            N,
            D,
            Dv};
  }
};

// One (b, h) of a sweep of one form: its forward, and its backward's two passes.
template <class T, SweepDecay kDecay, int kStates, bool kNormalize, int kDv>
struct HeadSweep {
  const Head<T>& h;
  const Scales<T>& s;
  Scratch<T>& w;
  T eps;

  static constexpr bool scaled() { return kDecay != SweepDecay::none; }
  // One state gives its read scaled by g (λ^{−u}, or ω_j in pass 2).
  static constexpr bool scales_read() { return kStates == 1 && kDecay != SweepDecay::none; }
  T* A() const { return w.states.data(); }
  T* B() const { return w.states.data() + second_state<T>(h.D, h.Dv); }

  // x of position p of a visit: `from` scaled by a (into scratch), or `from` itself.
  const T* scaled_x(int p, T a, const T* from) const {
    if constexpr (!scaled()) {
      return from;
    } else {
      T* to = w.x.data() + p * h.D;
#pragma omp simd
      for (int64_t r = 0; r < h.D; ++r) to[r] = a * from[r];
      return to;
    }
  }

  // do_i of position p of a visit (dy_i itself without a normaliser).
  const T* load_do(int p, int64_t i) const {
    const T* dyi = h.dy + i * h.Dv;
    if constexpr (!kNormalize) {
      return dyi;
    } else {
      T* t = w.t.data() + p * h.Dv;
      const T inv = T(1) / h.den[i];
      for (int64_t c = 0; c < h.Dv; ++c) t[c] = dyi[c] * inv;
      return t;
    }
  }

  // z = λ_z z + k_i (or r = λ_z r + dden_j q_j: a = dden_j, x = q_j).
  void advance_z(T a, const T* x) const {
    T* z = w.z.data();
    if constexpr (kDecay == SweepDecay::per_head && kStates == 1) {
      const T lambda = s.lambda_z;
#pragma omp simd
      for (int64_t r = 0; r < h.D; ++r) z[r] = lambda * z[r] + a * x[r];
    } else {
      axpy(h.D, a, x, z);
    }
  }

  void reset() const {
    std::fill_n(A(), h.D * h.Dv, T(0));
    if constexpr (kStates == 2) std::fill_n(B(), h.D * h.Dv, T(0));
    std::fill_n(w.z.data(), h.D, T(0));
  }

  // Rescales the decaying state at a block's start: A'_{−1} = λ^len A.
  auto block() const {
    return [this](int64_t len) {
      if constexpr (kDecay == SweepDecay::per_head) scale(h.D * h.Dv, s.up[len], A());
    };
  }

  // Finishes the row dots of a position: out = f out + a z, the f only where one state's
  // read is scaled, the a z only with a normaliser.
  void finish_rows(T f, T a, T* out) const {
    const T* z = w.z.data();
    if constexpr (scales_read() && kNormalize) {
#pragma omp simd
      for (int64_t r = 0; r < h.D; ++r) out[r] = f * out[r] + a * z[r];
    } else if constexpr (scales_read()) {
      scale(h.D, f, out);
    } else if constexpr (kNormalize) {
      axpy(h.D, a, z, out);
    }
  }

  // y_i = f X_iᵀ q_i with f = g/den_i (one state) or 1/den_i; den_i = q_i·z_i + ε is known
  // before the visit, so the visit writes y_i at once.
  void forward() const {
    reset();
    walk<false, (kDv > 0)>(h.N, s.L, block(), [&]<int kP>(int64_t i0, int64_t u0) {
      Position<T> ps[kP];
      for (int p = 0; p < kP; ++p) {
        const int64_t i = i0 + p;
        T a, g;
        factors<T, kDecay, false>(s, i, u0 - p, a, g);
        T f = scales_read() ? g : T(1);
        if constexpr (kNormalize) {
          advance_z(T(1), h.k + i * h.D);
          const T di = dot_vec(h.D, h.q + i * h.D, w.z.data()) + eps;
          h.den_out[i] = di;
          f /= di;
        }
        ps[p] = {scaled_x(p, a, h.k + i * h.D),
                 h.v + i * h.Dv,
                 g,
                 nullptr,
                 h.q + i * h.D,
                 f,
                 nullptr,
                 nullptr,
                 h.y_out + i * h.Dv};
      }
      visit<T, kDv, kP, kStates, Pass::forward>(ps, h.D, h.Dv, A(), B());
    });
  }

  // Pass 1: dq_i = X_i do_i + dden_i z_i.
  void dq() const {
    reset();
    walk<false, (kDv > 0)>(h.N, s.L, block(), [&]<int kP>(int64_t i0, int64_t u0) {
      Position<T> ps[kP];
      T g[kP];
      for (int p = 0; p < kP; ++p) {
        const int64_t i = i0 + p;
        T a;
        factors<T, kDecay, false>(s, i, u0 - p, a, g[p]);
        const T* t = load_do(p, i);
        if constexpr (kNormalize)  // dden_i = −(dy_i·y_i)/den_i
          h.dden[i] = -dot_vec(h.Dv, h.dy + i * h.Dv, h.y + i * h.Dv) / h.den[i];
        ps[p] = {scaled_x(p, a, h.k + i * h.D), h.v + i * h.Dv, g[p],   t, nullptr, T(1),
                 w.P.data() + p * h.D,          h.dq + i * h.D, nullptr};
      }
      visit<T, kDv, kP, kStates, Pass::dq>(ps, h.D, h.Dv, A(), B());
      for (int p = 0; p < kP; ++p) {
        const int64_t i = i0 + p;
        if constexpr (kNormalize) advance_z(T(1), h.k + i * h.D);
        finish_rows(g[p], kNormalize ? h.dden[i] : T(0), h.dq + i * h.D);
      }
    });
  }

  // Pass 2, from the end: R (and M) in the states, r in z; dk_j = R_j v_j + r_j,
  // dv_j = R_jᵀ k_j (one state: R_j's part of each scaled by g).
  void dkv() const {
    reset();
    walk<true, (kDv > 0)>(h.N, s.L, block(), [&]<int kP>(int64_t j0, int64_t u0) {
      Position<T> ps[kP];
      T g[kP];
      for (int p = 0; p < kP; ++p) {
        const int64_t j = j0 - p;
        T a;
        factors<T, kDecay, true>(s, j, u0 - p, a, g[p]);
        ps[p] = {scaled_x(p, a, h.q + j * h.D),
                 load_do(p, j),
                 g[p],
                 h.v + j * h.Dv,
                 h.k + j * h.D,
                 scales_read() ? g[p] : T(1),
                 w.P.data() + p * h.D,
                 h.dk + j * h.D,
                 h.dv + j * h.Dv};
      }
      visit<T, kDv, kP, kStates, Pass::dkv>(ps, h.D, h.Dv, A(), B());
      for (int p = 0; p < kP; ++p) {
        const int64_t j = j0 - p;
        if constexpr (kNormalize) advance_z(h.dden[j], h.q + j * h.D);
        finish_rows(g[p], T(1), h.dk + j * h.D);
      }
    });
  }
};

// Runs `body(head, scales, scratch)` over every (b, h) in parallel, with the fixed width
// (sweep.h) as a template argument: body.template operator()<kDv>(…).
template <class T, SweepDecay kDecay, int kStates, class F>
void for_each_head(const AttentionDims& d, const CausalSweep& sweep, int64_t cost,
                   const Head<T>& all, F&& body) {
  const Schedule<T, kDecay, kStates> schedule(d, sweep);
  parallel_for(d.B * d.H, cost, [&](int64_t begin, int64_t end) {
    Scratch<T> w(d.D, d.Dv);
    with_fixed_dv(d.Dv, [&]<int kDv>() {
      for (int64_t bh = begin; bh < end; ++bh) {
        const Head<T> h = all.at(bh);
        const Scales<T> s = schedule.head(bh % d.H);
        body.template operator()<kDv>(h, s, w);
      }
    });
  });
}

}  // namespace
}  // namespace POLYAK_ISA_NAMESPACE

template <class T, SweepDecay kDecay, int kStates, bool kNormalize>
void causal_sweep_forward(POLYAK_KERNEL_ISA_TAG, const AttentionDims& d, const CausalSweep& sweep,
                          const T* q, const T* k, const T* v, T* y, T* den) {
  const Head<T> all{
      .q = q, .k = k, .v = v, .y_out = y, .den_out = den, .N = d.N, .D = d.D, .Dv = d.Dv};
  const T eps = static_cast<T>(sweep.eps);
  for_each_head<T, kDecay, kStates>(
      d, sweep, (kStates + 1) * d.N * d.D * d.Dv + 1, all,
      [&]<int kDv>(const Head<T>& h, const Scales<T>& s, Scratch<T>& w) {
        HeadSweep<T, kDecay, kStates, kNormalize, kDv>{h, s, w, eps}.forward();
      });
}

template <class T, SweepDecay kDecay, int kStates, bool kNormalize>
void causal_sweep_backward(POLYAK_KERNEL_ISA_TAG, const AttentionDims& d, const CausalSweep& sweep,
                           const T* q, const T* k, const T* v, const T* y, const T* den,
                           const T* dy, T* dq, T* dk, T* dv, T* dden) {
  const Head<T> all{.q = q,
                    .k = k,
                    .v = v,
                    .y = y,
                    .den = den,
                    .dy = dy,
                    .dq = dq,
                    .dk = dk,
                    .dv = dv,
                    .dden = dden,
                    .N = d.N,
                    .D = d.D,
                    .Dv = d.Dv};
  for_each_head<T, kDecay, kStates>(
      d, sweep, (2 * kStates + 4) * d.N * d.D * d.Dv + 1, all,
      [&]<int kDv>(const Head<T>& h, const Scales<T>& s, Scratch<T>& w) {
        const HeadSweep<T, kDecay, kStates, kNormalize, kDv> sweep_head{h, s, w, T(0)};
        sweep_head.dq();
        sweep_head.dkv();
      });
}

// The forms of causal_sweep.cpp's dispatch.
#define POLYAK_INSTANTIATE_FORM(T, kDecay, kStates, kNormalize)                            \
  template void causal_sweep_forward<T, kDecay, kStates, kNormalize>(                      \
      POLYAK_KERNEL_ISA_TAG, const AttentionDims&, const CausalSweep&, const T*, const T*, \
      const T*, T*, T*);                                                                   \
  template void causal_sweep_backward<T, kDecay, kStates, kNormalize>(                     \
      POLYAK_KERNEL_ISA_TAG, const AttentionDims&, const CausalSweep&, const T*, const T*, \
      const T*, const T*, const T*, const T*, T*, T*, T*, T*);
#define POLYAK_INSTANTIATE(T)                                \
  POLYAK_INSTANTIATE_FORM(T, SweepDecay::none, 1, true)      \
  POLYAK_INSTANTIATE_FORM(T, SweepDecay::none, 1, false)     \
  POLYAK_INSTANTIATE_FORM(T, SweepDecay::per_head, 1, true)  \
  POLYAK_INSTANTIATE_FORM(T, SweepDecay::per_head, 1, false) \
  POLYAK_INSTANTIATE_FORM(T, SweepDecay::per_key, 1, true)   \
  POLYAK_INSTANTIATE_FORM(T, SweepDecay::per_head, 2, true)
POLYAK_INSTANTIATE(float)
POLYAK_INSTANTIATE(double)
#undef POLYAK_INSTANTIATE
#undef POLYAK_INSTANTIATE_FORM

}  // namespace polyak::detail
