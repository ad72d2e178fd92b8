// Mega's kernels of the attention group (core/kernels_attention.h): the damped EMA scan forward
// and backward, its step, and the chunked attention with a relative position bias forward and
// backward, and its step. The CPU references are ops/attention/ema.cpp and
// ops/attention/mega_attention.cpp, whose headers derive every formula used here. Included by
// cuda/kernels/attention.h, whose helpers (floats, PadRows) it uses.
//
// Dimension legend: B batch, N positions, C channels, n EMA dimensions per channel, K the EMA
// segment, S = ⌈N/K⌉ segments; D query/key width, Dv value width, W window (chunk ≤ N),
// nC = ⌈N/W⌉ chunks, Np = nC·W, G = B·nC chunk blocks, L bias reach (rel_bias [2L − 1]).
//
// ---- the EMA ----------------------------------------------------------------------------------
// One body per (b, c) runs the recurrence of every dimension k over N in order (k outside,
// positions inside, as the CPU's y sums over k in order). The backward recomputes each
// segment's states from the forward's checkpoint into a K-float scratch of its own, then sweeps
// the segment in reverse; dg, dq, dw are summed per b, then over b in order by one body per
// (c, k). Nothing O(N·C·n) is kept. (Bodies per (b, c, k) would give n times the parallelism
// but need a reduction over k for y and dx.)
//
// ---- the attention ----------------------------------------------------------------------------
// q, k, v (and dy) are padded per batch row to Np rows of zeros, so that every chunk is a W×W
// block of one strided batched gemm: S = c Q Kᵀ, Y = P V; backward dP = dY Vᵀ, dV = Pᵀ dY,
// dQ = c dS K, dK = c dSᵀ Q. Bodies per score row add the bias, mask (j ≤ i when causal, and
// i, j inside the chunk) and activate; db is one body per offset, summed over the chunks and
// rows in order.
#pragma once

#include <cmath>
#include <cstdint>

#include "polyak/core/kernels_attention.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/attention.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::kernels {

// ---- bodies of the EMA ------------------------------------------------------------------------

// x [B,N,C]; g, q, w [C,n]; position i of the sweep is t = i, or N − 1 − i in reverse.
struct EmaView {
  const float* x;
  const float* g;
  const float* q;
  const float* w;
  int64_t N, C, n, K;
  bool reverse;
  POLYAK_HD int64_t at(int64_t b, int64_t i, int64_t c) const {
    return (b * N + (reverse ? N - 1 - i : i)) * C + c;
  }
  POLYAK_HD int64_t segments() const { return (N + K - 1) / K; }
};

// Per (b, c): y[b, :, c], and with ckpt [B,S,n,C] the state before every segment.
struct EmaForward {
  EmaView e;
  float* y;
  float* ckpt;
  POLYAK_HD void operator()(int64_t bc) const {
    const int64_t b = bc / e.C, c = bc % e.C, S = e.segments();
    for (int64_t i = 0; i < e.N; ++i) y[e.at(b, i, c)] = 0.0f;
    for (int64_t k = 0; k < e.n; ++k) {
      const float g = e.g[c * e.n + k], q = e.q[c * e.n + k], w = e.w[c * e.n + k];
      float h = 0.0f;
      for (int64_t i = 0; i < e.N; ++i) {
        if (ckpt && i % e.K == 0) ckpt[((b * S + i / e.K) * e.n + k) * e.C + c] = h;
        const int64_t t = e.at(b, i, c);
        h = ::fmaf(q, h, g * e.x[t]);
        y[t] += w * h;
      }
    }
  }
};

// Per (b, c): dx[b, :, c] and the partial sums dg, dq, dw [B,C,n] of batch row b. hs [B·C, K]
// is scratch, one segment's states per body.
struct EmaBackward {
  EmaView e;
  const float* ckpt;
  const float* dy;
  float* hs;
  float* dx;
  float* dg;
  float* dq;
  float* dw;
  POLYAK_HD void operator()(int64_t bc) const {
    const int64_t b = bc / e.C, c = bc % e.C, S = e.segments();
    float* h_seg = hs + bc * e.K;
    for (int64_t i = 0; i < e.N; ++i) dx[e.at(b, i, c)] = 0.0f;
    for (int64_t k = 0; k < e.n; ++k) {
      const float g = e.g[c * e.n + k], q = e.q[c * e.n + k], w = e.w[c * e.n + k];
      float a = 0.0f, sg = 0.0f, sq = 0.0f, sw = 0.0f;
      for (int64_t s = S - 1; s >= 0; --s) {
        const int64_t i0 = s * e.K, steps = e.N - i0 < e.K ? e.N - i0 : e.K;
        const float h_start = ckpt[((b * S + s) * e.n + k) * e.C + c];
        float h = h_start;
        for (int64_t r = 0; r < steps; ++r) {
          h = ::fmaf(q, h, g * e.x[e.at(b, i0 + r, c)]);
          h_seg[r] = h;
        }
        for (int64_t r = steps - 1; r >= 0; --r) {
          const int64_t t = e.at(b, i0 + r, c);
          a = ::fmaf(q, a, w * dy[t]);
          dx[t] += g * a;
          sg += a * e.x[t];
          sq += a * (r > 0 ? h_seg[r - 1] : h_start);  // h_{t−1}
          sw += h_seg[r] * dy[t];
        }
      }
      const int64_t at = bc * e.n + k;
      dg[at] = sg;
      dq[at] = sq;
      dw[at] = sw;
    }
  }
};

// out[e] = Σ_b partial[b·size + e] in the order of b: the sums over batch rows.
struct SumLeading {
  const float* partial;
  float* out;
  int64_t B, size;
  POLYAK_HD void operator()(int64_t e) const {
    float s = 0.0f;
    for (int64_t b = 0; b < B; ++b) s += partial[b * size + e];
    out[e] = s;
  }
};

// Per (b, c): h[b, c, :] ← g ⊙ x + q ⊙ h; y[b, c] = Σ_k w_k h_k.
struct EmaStep {
  const float* x;
  const float* g;
  const float* q;
  const float* w;
  float* h;
  float* y;
  int64_t C, n;
  POLYAK_HD void operator()(int64_t bc) const {
    const int64_t c = bc % C;
    float acc = 0.0f;
    for (int64_t k = 0; k < n; ++k) {
      float& hk = h[bc * n + k];
      hk = ::fmaf(q[c * n + k], hk, g[c * n + k] * x[bc]);
      acc += w[c * n + k] * hk;
    }
    y[bc] = acc;
  }
};

// ---- bodies of the attention ------------------------------------------------------------------

// laplace(s) = ½(1 + erf((s − μ)/(σ√2))) and its derivative, μ = √½, σ = √(1/(4π)).
struct MegaLaplace {
  static constexpr float kMu = 0.70710678118654752440f;
  static constexpr float kSigma = 0.28209479177387814347f;
  POLYAK_HD static float f(float s) {
    // ½ erfc(−z) = ½(1 + erf(z)), without the cancellation of 1 + erf(z) for z ≪ 0
    return 0.5f * ::erfcf((kMu - s) * (1.0f / (kSigma * 1.41421356237309504880f)));
  }
  POLYAK_HD static float df(float s) {
    const float z = (s - kMu) * (1.0f / kSigma);
    return ::expf(-0.5f * z * z) * (1.0f / (kSigma * 2.50662827463100050242f));
  }
};

// p[0, n) = softmax(s[0, n)) or laplace(s); p may be s.
POLYAK_HD inline void mega_activate(bool laplace, const float* s, float* p, int64_t n) {
  if (laplace) {
    for (int64_t j = 0; j < n; ++j) p[j] = MegaLaplace::f(s[j]);
    return;
  }
  if (n <= 0) return;
  float mx = s[0];
  for (int64_t j = 1; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
  float total = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = ::expf(s[j] - mx);
    total += p[j];
  }
  const float inv = 1.0f / total;
  for (int64_t j = 0; j < n; ++j) p[j] *= inv;
}

// The keys row (g, i) of the padded [G, W, W] blocks sees: j < seen.
struct MegaRows {
  int64_t N, W, nC;
  bool causal;
  POLYAK_HD int64_t seen(int64_t row) const {
    const int64_t chunk = (row / W) % nC, i = row % W;
    const int64_t len = N - chunk * W < W ? N - chunk * W : W;
    if (i >= len) return 0;
    return causal ? i + 1 : len;
  }
};

// Per score row (g, i) of s [G, W, W]: s += the bias, masked entries zeroed; p = the row's
// weights (p may be s: softmax in place).
struct MegaScoreRows {
  float* s;
  float* p;
  const float* bias;
  MegaRows rows;
  int64_t L;
  bool laplace;
  POLYAK_HD void operator()(int64_t row) const {
    const int64_t W = rows.W, i = row % W, seen = rows.seen(row);
    float* sr = s + row * W;
    float* pr = p + row * W;
    const float* b = bias + (L - 1 - i);  // rel_bias[j − i + L − 1]
    for (int64_t j = 0; j < seen; ++j) sr[j] += b[j];
    for (int64_t j = seen; j < W; ++j) sr[j] = 0.0f;
    mega_activate(laplace, sr, pr, seen);
    for (int64_t j = seen; j < W; ++j) pr[j] = 0.0f;
  }
};

// Per score row: ds holds dP on entry and dS on exit. softmax: dS = P (dP − Σ_l dP_l P_l) with
// P = saved; laplace: dS = f′(S) dP and p receives P = f(S), S = saved; masked entries 0.
struct MegaScoreGrad {
  const float* saved;
  float* ds;
  float* p;
  MegaRows rows;
  bool laplace;
  POLYAK_HD void operator()(int64_t row) const {
    const int64_t W = rows.W, seen = rows.seen(row);
    const float* sv = saved + row * W;
    float* d = ds + row * W;
    if (laplace) {
      float* pr = p + row * W;
      for (int64_t j = 0; j < seen; ++j) {
        pr[j] = MegaLaplace::f(sv[j]);
        d[j] *= MegaLaplace::df(sv[j]);
      }
      for (int64_t j = seen; j < W; ++j) pr[j] = d[j] = 0.0f;
      return;
    }
    float rowsum = 0.0f;
    for (int64_t j = 0; j < seen; ++j) rowsum += d[j] * sv[j];
    for (int64_t j = 0; j < seen; ++j) d[j] = sv[j] * (d[j] - rowsum);
    for (int64_t j = seen; j < W; ++j) d[j] = 0.0f;
  }
};

// Per offset o = e − (L − 1): db[e] = Σ_{g, i} dS[g, i, i + o], in the order of g and i.
struct MegaBiasGrad {
  const float* ds;
  float* db;
  int64_t G, W, L;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t o = e - (L - 1);
    float s = 0.0f;
    for (int64_t g = 0; g < G; ++g)
      for (int64_t i = 0; i < W; ++i) {
        const int64_t j = i + o;
        if (j >= 0 && j < W) s += ds[(g * W + i) * W + j];
      }
    db[e] = s;
  }
};

// dst [B, N, width] = the first N rows of src [B, Np, width].
struct UnpadRows {
  const float* src;
  float* dst;
  int64_t N, Np, width;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t c = e % width, i = (e / width) % N, b = e / (width * N);
    dst[e] = src[(b * Np + i) * width + c];
  }
};

// The step, per (b, j ≤ row): p[b, j] = c q_b·k_j + rel_bias[j − row + L − 1].
struct MegaStepScores {
  const float* q;
  const float* kc;
  const float* bias;
  float* p;
  int64_t cap, D, R, L;  // R = row + 1 keys
  float scale;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t j = e % R, b = e / R;
    const float* qb = q + b * D;
    const float* kj = kc + (b * cap + j) * D;
    float s = 0.0f;
    for (int64_t d = 0; d < D; ++d) s += qb[d] * kj[d];
    p[e] = scale * s + bias[j + (L - R)];
  }
};

struct MegaStepActivate {
  float* p;
  int64_t R;
  bool laplace;
  POLYAK_HD void operator()(int64_t b) const { mega_activate(laplace, p + b * R, p + b * R, R); }
};

// Per (b, col): y = Σ_j p_j v_j[col], in the order of j.
struct MegaStepMix {
  const float* p;
  const float* vc;
  float* y;
  int64_t cap, Dv, R;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t col = e % Dv, b = e / Dv;
    float s = 0.0f;
    for (int64_t j = 0; j < R; ++j) s += p[b * R + j] * vc[(b * cap + j) * Dv + col];
    y[e] = s;
  }
};

// ---- drivers ----------------------------------------------------------------------------------

template <class Exec>
struct Mega {
  static EmaView view(const Tensor& x, const Tensor& g, const Tensor& q, const Tensor& w,
                      const EmaArgs& args) {
    return EmaView{floats(x), floats(g), floats(q),    floats(w),   x.size(1),
                   x.size(2), g.size(1), args.segment, args.reverse};
  }

  static void ema(const Tensor& x, const Tensor& g, const Tensor& q, const Tensor& w,
                  const EmaArgs& args, Tensor& y, Tensor& ckpt) {
    Exec ex(x.device());
    float* saved = ckpt.defined() ? floats(ckpt) : nullptr;
    ex.for_each(x.size(0) * x.size(2), EmaForward{view(x, g, q, w, args), floats(y), saved});
  }

  static void ema_backward(const Tensor& x, const Tensor& g, const Tensor& q, const Tensor& w,
                           const Tensor& ckpt, const Tensor& dy, const EmaArgs& args, Tensor& dx,
                           Tensor& dg, Tensor& dq, Tensor& dw) {
    const Device dev = x.device();
    Exec ex(dev);
    const int64_t B = x.size(0), C = x.size(2), n = g.size(1), size = C * n;
    Tensor hs = Tensor::empty(Shape{B * C * args.segment}, DType::f32, dev);
    Tensor partial = Tensor::empty(Shape{3, B, C, n}, DType::f32, dev);
    float* pg = floats(partial);
    float* pq = pg + B * size;
    float* pw = pq + B * size;
    ex.for_each(B * C, EmaBackward{view(x, g, q, w, args), floats(ckpt), floats(dy), floats(hs),
                                   floats(dx), pg, pq, pw});
    ex.for_each(size, SumLeading{pg, floats(dg), B, size});
    ex.for_each(size, SumLeading{pq, floats(dq), B, size});
    ex.for_each(size, SumLeading{pw, floats(dw), B, size});
  }

  static void ema_step(const Tensor& x, Tensor& h, const Tensor& g, const Tensor& q,
                       const Tensor& w, Tensor& y) {
    Exec ex(x.device());
    ex.for_each(x.numel(), EmaStep{floats(x), floats(g), floats(q), floats(w), floats(h), floats(y),
                                   x.size(1), g.size(1)});
  }

  // ---- the attention ------------------------------------------------------------------------

  struct Blocks {
    int64_t B, N, W, nC, Np, G;
    Blocks(int64_t B_, int64_t N_, int64_t W_)
        : B(B_), N(N_), W(W_), nC((N_ + W_ - 1) / W_), Np(nC * W_), G(B_ * nC) {}
    int64_t size(int64_t width) const { return G * W * width; }
    GemmArgs args(int64_t m, int64_t n, int64_t k, bool ta, bool tb, int64_t as, int64_t bs,
                  int64_t os, float alpha = 1.0f) const {
      GemmArgs a{G, m, n, k, ta, tb, as * W, bs * W, os * W};
      a.alpha = alpha;
      return a;
    }
  };

  static float scale(const MegaAttentionArgs& args, int64_t D) {
    if (args.laplace) return 1.0f / static_cast<float>(args.L);
    return D > 0 ? 1.0f / ::sqrtf(static_cast<float>(D)) : 1.0f;
  }

  // [B, N, width] rows padded to [B, Np, width] (the tensor itself when N = Np).
  static Tensor pad(Exec& ex, const Blocks& k, const Tensor& t) {
    if (k.Np == k.N) return t;
    const int64_t width = t.size(2);
    Tensor out = Tensor::empty(Shape{k.B, k.Np, width}, DType::f32, t.device());
    ex.for_each(out.numel(), PadRows{floats(t), nullptr, floats(out), k.N, k.Np, width, false});
    return out;
  }
  // A padded output for `t`: t itself when N = Np, else scratch to unpad() into t.
  static Tensor padded_out(const Blocks& k, Tensor& t) {
    if (k.Np == k.N) return t;
    return Tensor::empty(Shape{k.B, k.Np, t.size(2)}, DType::f32, t.device());
  }
  static void unpad(Exec& ex, const Blocks& k, const Tensor& from, Tensor& t) {
    if (k.Np == k.N) return;
    ex.for_each(t.numel(), UnpadRows{floats(from), floats(t), k.N, k.Np, t.size(2)});
  }

  static void mega_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& rel_bias, const MegaAttentionArgs& args, Tensor& y,
                             Tensor& saved) {
    const Device dev = q.device();
    Exec ex(dev);
    const int64_t D = q.size(2), Dv = v.size(2);
    const Blocks bl(q.size(0), q.size(1), args.W);
    const Tensor qp = pad(ex, bl, q), kp = pad(ex, bl, k), vp = pad(ex, bl, v);
    const int64_t W = bl.W;
    ex.gemm(floats(qp), floats(kp), floats(saved),
            bl.args(W, W, D, false, true, D, D, W, scale(args, D)));
    Tensor p = args.laplace ? Tensor::empty(Shape{bl.size(W)}, DType::f32, dev) : saved;
    ex.for_each(bl.G * W,
                MegaScoreRows{floats(saved), floats(p), floats(rel_bias),
                              MegaRows{bl.N, W, bl.nC, args.causal}, args.L, args.laplace});
    Tensor yp = padded_out(bl, y);
    ex.gemm(floats(p), floats(vp), floats(yp), bl.args(W, Dv, W, false, false, W, Dv, Dv));
    unpad(ex, bl, yp, y);
  }

  static void mega_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                      const Tensor& saved, const Tensor& dy,
                                      const MegaAttentionArgs& args, Tensor& dq, Tensor& dk,
                                      Tensor& dv, Tensor& db) {
    const Device dev = q.device();
    Exec ex(dev);
    const int64_t D = q.size(2), Dv = v.size(2);
    const Blocks bl(q.size(0), q.size(1), args.W);
    const int64_t W = bl.W;
    const float c = scale(args, D);
    const Tensor qp = pad(ex, bl, q), kp = pad(ex, bl, k), vp = pad(ex, bl, v);
    const Tensor dyp = pad(ex, bl, dy);
    Tensor ds = Tensor::empty(Shape{bl.size(W)}, DType::f32, dev);
    ex.gemm(floats(dyp), floats(vp), floats(ds), bl.args(W, W, Dv, false, true, Dv, Dv, W));  // dP
    Tensor p = args.laplace ? Tensor::empty(Shape{bl.size(W)}, DType::f32, dev) : saved;
    ex.for_each(bl.G * W, MegaScoreGrad{floats(saved), floats(ds), floats(p),
                                        MegaRows{bl.N, W, bl.nC, args.causal}, args.laplace});
    Tensor dvp = padded_out(bl, dv), dqp = padded_out(bl, dq), dkp = padded_out(bl, dk);
    ex.gemm(floats(p), floats(dyp), floats(dvp), bl.args(W, Dv, W, true, false, W, Dv, Dv));
    ex.gemm(floats(ds), floats(kp), floats(dqp), bl.args(W, D, W, false, false, W, D, D, c));
    ex.gemm(floats(ds), floats(qp), floats(dkp), bl.args(W, D, W, true, false, W, D, D, c));
    unpad(ex, bl, dvp, dv);
    unpad(ex, bl, dqp, dq);
    unpad(ex, bl, dkp, dk);
    ex.for_each(db.numel(), MegaBiasGrad{floats(ds), floats(db), bl.G, W, args.L});
  }

  static void mega_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                  int64_t row, const Tensor& rel_bias,
                                  const MegaAttentionArgs& args, Tensor& y) {
    const Device dev = q.device();
    Exec ex(dev);
    const int64_t B = q.size(0), D = q.size(1), Dv = v_cache.size(2), cap = k_cache.size(1);
    const int64_t R = row + 1;
    Tensor p = Tensor::empty(Shape{B, R}, DType::f32, dev);
    ex.for_each(B * R, MegaStepScores{floats(q), floats(k_cache), floats(rel_bias), floats(p), cap,
                                      D, R, args.L, scale(args, D)});
    ex.for_each(B, MegaStepActivate{floats(p), R, args.laplace});
    ex.for_each(B * Dv, MegaStepMix{floats(p), floats(v_cache), floats(y), cap, Dv, R});
  }
};

}  // namespace polyak::kernels
