// Softmax-family attention of the attention kernel group (core/kernels_attention.h) as kernel
// bodies and drivers: tiled softmax attention forward and backward, its KV-cache step, and
// Linformer's sequence projection. Included by cuda/kernels/attention.h, whose tensor helpers
// (floats, floats_or_null) it uses. CPU references: ops/attention/softmax_attention.cpp and
// ops/attention/sequence_projection.cpp.
//
// Dimension legend: B batch, H heads, BH = B·H, N query positions, M key positions, D
// query/key width, Dv value width, R ≤ kSoftmaxRows rows of a query block, L the keys a block
// sees (t0 + R when causal for the block of rows t0 … t0+R−1, else M), c = 1/√D.
//
// ---- softmax attention, tiled (flash attention's recomputation, on batched gemms) ---------
// Per query block, batched over BH:
//   S = c Q_t K_Lᵀ                                   [BH, R, L] scratch (gemm, alpha = c)
//   P = row softmax of S (0 where causal and j > i),
//   lse_i = log Σ_j exp(S_ij)                        (one body per row; lse saved)
//   Y_t = P V_L                                      (gemm)
// Backward, P recomputed as exp(S − lse):
//   Δ_i = dy_i·y_i  (= Σ_j dP_ij P_ij, since y_i = Σ_j P_ij v_j)
//   dP = dY_t V_Lᵀ,  dS = P ⊙ (dP − Δ)
//   dQ_t = c dS K_L,  dK_L += c dSᵀ Q_t,  dV_L += Pᵀ dY_t      (gemms; beta = 1 sums blocks)
// Scratch is O(BH·R·M); nothing [N, M] exists. The KV-cache step is the same with one row
// over the cache's filled rows.
//
// ---- sequence projection, x [BH,N,D], e [k,M] ---------------------------------------------
//   y_bh = E_N x_bh,  dx_bh = E_Nᵀ dy_bh          (gemms with E_N = e[:, 0:N] made dense)
//   de[:, 0:N] = Σ_bh dy_bh x_bhᵀ = dy' x'ᵀ       (one gemm over dy' [k, BH·D], x' [N, BH·D])
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "polyak/core/kernels_attention.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::kernels {

// Query rows per block of the tiled softmax.
constexpr int64_t kSoftmaxRows = 64;

// ---- bodies ---------------------------------------------------------------------------------

// Per row (bh, r) of a block's scores s [BH, R, L] (row r is query t0 + r): the probabilities
// in place, 0 past the `seen` keys (j ≤ t0 + r when causal, all L otherwise); lse [BH, N] at
// t0 + r when given (0 for a row that sees no key).
struct SoftmaxRows {
  float* s;
  float* lse;
  int64_t R, L, N, t0;
  bool causal;
  POLYAK_HD void operator()(int64_t row) const {
    const int64_t r = row % R, bh = row / R, seen = causal ? t0 + r + 1 : L;
    float* p = s + row * L;
    float mx = seen > 0 ? p[0] : 0.0f, sum = 0.0f;
    for (int64_t j = 1; j < seen; ++j) mx = ::fmaxf(mx, p[j]);
    for (int64_t j = 0; j < seen; ++j) {
      p[j] = ::expf(p[j] - mx);
      sum += p[j];
    }
    for (int64_t j = 0; j < seen; ++j) p[j] /= sum;
    for (int64_t j = seen; j < L; ++j) p[j] = 0.0f;
    if (lse) lse[bh * N + t0 + r] = seen > 0 ? mx + ::logf(sum) : 0.0f;
  }
};

// Per element (bh, r, j) of a block's scores s [BH, R, L]: P = exp(s − lse_i), 0 where masked.
struct RecomputeProbs {
  float* s;
  const float* lse;
  int64_t R, L, N, t0;
  bool causal;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t j = e % L, r = (e / L) % R, bh = e / (L * R);
    s[e] = (!causal || j <= t0 + r) ? ::expf(s[e] - lse[bh * N + t0 + r]) : 0.0f;
  }
};

// Per element (bh, r, j) of a block: dp = p ⊙ (dp − Δ_i), Δ [BH, N] at t0 + r.
struct SoftmaxGrad {
  float* dp;
  const float* p;
  const float* delta;
  int64_t R, L, N, t0;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t r = (e / L) % R, bh = e / (L * R);
    dp[e] = p[e] * (dp[e] - delta[bh * N + t0 + r]);
  }
};

// Per row: out = a_row · b_row over W columns, summed in order.
struct RowInner {
  const float* a;
  const float* b;
  float* out;
  int64_t W;
  POLYAK_HD void operator()(int64_t row) const {
    float s = 0.0f;
    for (int64_t c = 0; c < W; ++c) s += a[row * W + c] * b[row * W + c];
    out[row] = s;
  }
};

struct Zero {
  float* x;
  POLYAK_HD void operator()(int64_t e) const { x[e] = 0.0f; }
};

// Per element (bh, c) of a [BH, W] row: cache [BH, C, W] row `at` = x.
struct WriteRow {
  const float* x;
  float* cache;
  int64_t C, W, at;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t c = e % W, bh = e / W;
    cache[(bh * C + at) * W + c] = x[e];
  }
};

// out [rows, cols] = the first `cols` columns of x [rows, stride] (0 past x's `width`).
struct Columns {
  const float* x;
  float* out;
  int64_t stride, width, cols;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t c = e % cols, r = e / cols;
    out[e] = c < width ? x[r * stride + c] : 0.0f;
  }
};

// out [R, BH, W] = x [BH, R, W] (the batch moved inside each row).
struct BatchInside {
  const float* x;
  float* out;
  int64_t BH, R, W;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t c = e % W, bh = (e / W) % BH, r = e / (W * BH);
    out[e] = x[(bh * R + r) * W + c];
  }
};

// ---- drivers ----------------------------------------------------------------------------

template <class Exec>
struct SoftmaxAttention {
  static float scale(int64_t D) { return D > 0 ? 1.0f / std::sqrt(static_cast<float>(D)) : 1.0f; }

  // The shapes of one call, and the block of rows t0 … t0+R−1 with the L keys it sees.
  struct Tiles {
    int64_t BH, N, M, D, Dv;
    bool causal;
    int64_t rows(int64_t t0) const { return std::min(kSoftmaxRows, N - t0); }
    int64_t keys(int64_t t0) const { return causal ? t0 + rows(t0) : M; }
    int64_t scratch() const { return BH * std::min(kSoftmaxRows, N) * M; }
    // S = c Q_t K_Lᵀ into s [BH, R, L].
    GemmArgs scores(int64_t t0) const {
      const int64_t R = rows(t0), L = keys(t0);
      return GemmArgs{BH, R, L, D, false, true, N * D, M * D, R * L, scale(D), 0.0f};
    }
  };
  static Tiles tiles(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
    return Tiles{q.size(0) * q.size(1), q.size(2), k.size(2), q.size(3), v.size(3), causal};
  }
  static Tensor scratch(int64_t n, Device dev) {
    return Tensor::empty(Shape{std::max<int64_t>(n, 1)}, DType::f32, dev);
  }

  static void forward(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, Tensor& y,
                      Tensor& lse) {
    Exec ex(q.device());
    const Tiles t = tiles(q, k, v, causal);
    Tensor s = scratch(t.scratch(), q.device());
    for (int64_t t0 = 0; t0 < t.N; t0 += kSoftmaxRows) {
      const int64_t R = t.rows(t0), L = t.keys(t0);
      ex.gemm(floats(q) + t0 * t.D, floats(k), floats(s), t.scores(t0));
      ex.for_each(t.BH * R, SoftmaxRows{floats(s), floats(lse), R, L, t.N, t0, causal});
      ex.gemm(floats(s), floats(v), floats(y) + t0 * t.Dv,
              GemmArgs{t.BH, R, t.Dv, L, false, false, R * L, t.M * t.Dv, t.N * t.Dv});
    }
  }

  static void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& y,
                       const Tensor& lse, const Tensor& dy, bool causal, Tensor& dq, Tensor& dk,
                       Tensor& dv) {
    const Device dev = q.device();
    Exec ex(dev);
    const Tiles t = tiles(q, k, v, causal);
    const int64_t BH = t.BH, N = t.N, M = t.M, D = t.D, Dv = t.Dv;
    const float c = scale(D);
    Tensor delta = scratch(BH * N, dev);
    ex.for_each(BH * N, RowInner{floats(dy), floats(y), floats(delta), Dv});
    ex.for_each(dk.numel(), Zero{floats(dk)});
    ex.for_each(dv.numel(), Zero{floats(dv)});
    Tensor p = scratch(t.scratch(), dev), ds = scratch(t.scratch(), dev);
    for (int64_t t0 = 0; t0 < N; t0 += kSoftmaxRows) {
      const int64_t R = t.rows(t0), L = t.keys(t0);
      const float* dyt = floats(dy) + t0 * Dv;
      const float* qt = floats(q) + t0 * D;
      ex.gemm(qt, floats(k), floats(p), t.scores(t0));
      ex.for_each(BH * R * L, RecomputeProbs{floats(p), floats(lse), R, L, N, t0, causal});
      ex.gemm(dyt, floats(v), floats(ds),
              GemmArgs{BH, R, L, Dv, false, true, N * Dv, M * Dv, R * L});
      ex.for_each(BH * R * L, SoftmaxGrad{floats(ds), floats(p), floats(delta), R, L, N, t0});
      ex.gemm(floats(p), dyt, floats(dv),
              GemmArgs{BH, L, Dv, R, true, false, R * L, N * Dv, M * Dv, 1.0f, 1.0f});
      ex.gemm(floats(ds), floats(k), floats(dq) + t0 * D,
              GemmArgs{BH, R, D, L, false, false, R * L, M * D, N * D, c, 0.0f});
      ex.gemm(floats(ds), qt, floats(dk),
              GemmArgs{BH, L, D, R, true, false, R * L, N * D, M * D, c, 1.0f});
    }
  }

  // The cache's row `length` ← k, v; then one query row over the length + 1 filled rows.
  static void step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& k_cache,
                   Tensor& v_cache, int64_t length, Tensor& y) {
    const Device dev = q.device();
    Exec ex(dev);
    const int64_t BH = q.size(0) * q.size(1), D = q.size(2), Dv = v.size(2);
    const int64_t C = k_cache.size(2), L = length + 1;
    ex.for_each(BH * D, WriteRow{floats(k), floats(k_cache), C, D, length});
    ex.for_each(BH * Dv, WriteRow{floats(v), floats(v_cache), C, Dv, length});
    Tensor s = scratch(BH * L, dev);
    ex.gemm(floats(q), floats(k_cache), floats(s),
            GemmArgs{BH, 1, L, D, false, true, D, C * D, L, scale(D), 0.0f});
    ex.for_each(BH, SoftmaxRows{floats(s), nullptr, 1, L, 1, 0, false});
    ex.gemm(floats(s), floats(v_cache), floats(y),
            GemmArgs{BH, 1, Dv, L, false, false, L, C * Dv, Dv});
  }

  // ---- the sequence projection ----------------------------------------------------------

  // E_N = e[:, 0:N], dense [k, N].
  static Tensor leading_columns(Exec& ex, const Tensor& e, int64_t N) {
    const int64_t k = e.size(0), M = e.size(1);
    Tensor en = scratch(k * N, e.device());
    ex.for_each(k * N, Columns{floats(e), floats(en), M, N, N});
    return en;
  }

  static void projection(const Tensor& x, const Tensor& e, Tensor& y) {
    Exec ex(x.device());
    const int64_t BH = x.size(0) * x.size(1), N = x.size(2), D = x.size(3), k = e.size(0);
    const Tensor en = leading_columns(ex, e, N);
    ex.gemm(floats(en), floats(x), floats(y), GemmArgs{BH, k, D, N, false, false, 0, N * D, k * D});
  }

  static void projection_backward(const Tensor& x, const Tensor& e, const Tensor& dy, Tensor& dx,
                                  Tensor& de) {
    const Device dev = dy.device();
    Exec ex(dev);
    const int64_t BH = dy.size(0) * dy.size(1), k = dy.size(2), D = dy.size(3);
    const int64_t N = dx.defined() ? dx.size(2) : x.size(2);
    if (dx.defined()) {
      const Tensor en = leading_columns(ex, e, N);
      ex.gemm(floats(en), floats(dy), floats(dx),
              GemmArgs{BH, N, D, k, true, false, 0, k * D, N * D});
    }
    if (!de.defined()) return;
    const int64_t W = BH * D, M = de.size(1);
    Tensor dyb = scratch(k * W, dev), xb = scratch(N * W, dev), den = scratch(k * N, dev);
    ex.for_each(k * W, BatchInside{floats(dy), floats(dyb), BH, k, D});
    ex.for_each(N * W, BatchInside{floats(x), floats(xb), BH, N, D});
    ex.gemm(floats(dyb), floats(xb), floats(den), GemmArgs{1, k, N, W, false, true, 0, 0, 0});
    ex.for_each(k * M, Columns{floats(den), floats(de), N, N, M});
  }
};

}  // namespace polyak::kernels
