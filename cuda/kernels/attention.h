// The attention kernel group (core/kernels_attention.h) as kernel bodies and drivers
// (cuda/kernels/exec.h): compiled by nvcc for CUDA devices (cuda/attention.cu) and by the host
// compiler for the tests' fake device (tests/fake_device.h). Each body has its CPU
// reference in ops/.
//
// Dimension legend: B batch, H heads, N positions, M key positions, D query/key width, Dv value
// width, C the chunk, nC = ⌈N/C⌉ chunks, Np = nC·C the padded length, BH = B·H.
//
// ---- the chunked causal product (as fla's `chunk` kernels) ----------------------------------
// Every causal form is built from one primitive, per (b, h):
//   P(a, b, c)_i = Σ_{j≤i} W(i−j) (a_i·b_j) c_j        a, b [N, Da], c [N, Dc]
// (or its reverse, Σ_{j≥i} W(j−i) (a_i·b_j) c_j, the same on time-reversed inputs). W depends
// on i−j only; for a chunk of rows t0..t0+C−1 and r = i − t0 it splits into
//   intra:  Σ_{t0≤j≤i} W(i−j) (a_i·b_j) c_j      (A Bᵀ ⊙ mask) C, two batched gemms
//   inter:  σ(r) a_iᵀ S + ε(r) a_iᵀ E            one batched gemm per state
// with S (and for momentum E) the [Da, Dc] states before the chunk, carried over the chunks:
//   decay λ:     W(d) = λ^d;  σ(r) = λ^{r+1};  S' = λ^C S + Σ_j λ^{C−1−r_j} b_j c_jᵀ
//   momentum β:  W(d) = γ (1 − β^{d+1})/(1 − β) = γ Σ_{t≤d} β^t;  σ = 1;  ε(r) = γ Σ_{1≤t≤r+1} β^t
//                E' = β^C E + Σ_j β^{C−1−r_j} b_j c_jᵀ,  S' = S + ε(C−1) E + Σ_j W(C−1−r_j) b_j
//                c_jᵀ
// (momentum: eq. 12's E_i = β E_{i−1} + k_i v_iᵀ, s_i = s_{i−1} + γ E_i summed over a chunk).
// Every factor is a power of λ, β ≤ 1 with a non-negative exponent: nothing overflows.
//
// The sweep (y_i = o_i / den_i, docs/math.md §2–3) in terms of P, ω the per-key weights:
//   o = P_W(q, ω k, v),  den = P_U(q, k, 1) + ε
//   dq = P_W(do, v, ω k) + P_U(dden, 1, k)
//   dk = ω ⊙ P_W^rev(v, do, q) + P_U^rev(1, dden, q),   dv = P_W^rev(ω k, q, do)
// with do_i = dy_i / den_i, dden_i = −(dy_i·y_i)/den_i (no normaliser: do = dy, no dden).
// Scratch is O(BH·Np·(D + Dv + C)): the states live per chunk only inside one product.
#pragma once

#include <cmath>
#include <cstdint>

#include "polyak/core/kernels_attention.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::kernels {

// Rows per chunk. Chunk-sized gemms (C×C by C×Dv) are what the tensor cores like.
constexpr int64_t kChunk = 64;

// ---- the weights of one head -------------------------------------------------------------

// Σ_{t<n} β^t = (1 − β^n)/(1 − β), without cancelling for β near 1.
POLYAK_HD inline float geometric_sum(float beta, int64_t n) {
  if (n <= 0) return 0.0f;
  if (beta == 1.0f) return static_cast<float>(n);
  return -::expm1f(static_cast<float>(n) * ::logf(beta)) / (1.0f - beta);
}

POLYAK_HD inline float power(float x, int64_t n) {
  return ::powf(x, static_cast<float>(n));
}

// λ_h (or β_h) of head bh % H. Up to kInline heads travel inside the bodies themselves, so
// that a launch needs no copy from the host (and a step can be captured); more heads read an
// array uploaded to the device.
struct HeadDecays {
  static constexpr int64_t kInline = 32;
  float values[kInline];
  const float* device;  // [H] on the device when H > kInline, else null
  int64_t H;            // 0: λ = 1 for every head

  POLYAK_HD float operator()(int64_t bh) const {
    if (H == 0) return 1.0f;
    const int64_t h = bh % H;
    return device ? device[h] : values[h];
  }
};

// W, σ, ε and the state transitions above for head bh % H.
struct ChunkWeights {
  HeadDecays decays;
  bool momentum;
  float gamma;

  POLYAK_HD float decay(int64_t bh) const { return decays(bh); }
  POLYAK_HD float intra(int64_t bh, int64_t d) const {
    return momentum ? gamma * geometric_sum(decay(bh), d + 1) : power(decay(bh), d);
  }
  POLYAK_HD float read_s(int64_t bh, int64_t r) const {
    return momentum ? 1.0f : power(decay(bh), r + 1);
  }
  POLYAK_HD float read_e(int64_t bh, int64_t r) const {
    const float beta = decay(bh);
    return gamma * beta * geometric_sum(beta, r + 1);
  }
  POLYAK_HD float key_e(int64_t bh, int64_t d) const { return power(decay(bh), d); }
  POLYAK_HD float keep_s(int64_t bh) const { return momentum ? 1.0f : power(decay(bh), kChunk); }
};

// ---- bodies of the chunked product -------------------------------------------------------

// dst [BH, Np, W] = src [BH, N, W] (time-reversed with `reverse`), rows scaled by row_w [N]
// (by original position) when given, zero past N; a null src reads ones.
struct PadRows {
  const float* src;
  const float* row_w;
  float* dst;
  int64_t N, Np, W;
  bool reverse;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t c = e % W, i = (e / W) % Np, bh = e / (W * Np);
    if (i >= N) {
      dst[e] = 0.0f;
      return;
    }
    const int64_t at = reverse ? N - 1 - i : i;
    float x = src ? src[(bh * N + at) * W + c] : 1.0f;
    if (row_w) x *= row_w[at];
    dst[e] = x;
  }
};

// out [BH, Np, W] = b with row j of each chunk scaled by W(C−1−r_j) (`momentum_e`: β^{C−1−r_j}):
// the keys' weights in the state at the chunk's end.
struct ScaleKeys {
  const float* b;
  float* out;
  ChunkWeights w;
  int64_t Np, W;
  bool momentum_e;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t i = (e / W) % Np, bh = e / (W * Np);
    const int64_t d = kChunk - 1 - i % kChunk;
    out[e] = b[e] * (momentum_e ? w.key_e(bh, d) : w.intra(bh, d));
  }
};

// P [BH·nC, C, C] ⊙= the causal mask W(i−j), 0 above the diagonal.
struct MaskChunk {
  float* p;
  ChunkWeights w;
  int64_t nC;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t j = e % kChunk, i = (e / kChunk) % kChunk, bh = e / (kChunk * kChunk * nC);
    p[e] = j <= i ? p[e] * w.intra(bh, i - j) : 0.0f;
  }
};

// Per (bh, x) of the [Da, Dc] states: replaces each chunk's increment ds[c] (de[c]) by the
// state before chunk c, in chunk order.
struct CarryStates {
  float* ds;
  float* de;  // momentum's decayed state, or null
  ChunkWeights w;
  int64_t nC, size;  // size = Da·Dc
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t bh = e / size, x = e % size;
    const float keep_s = w.keep_s(bh), e_into_s = de ? w.read_e(bh, kChunk - 1) : 0.0f;
    const float keep_e = power(w.decay(bh), kChunk);
    float s = 0.0f, m = 0.0f;
    for (int64_t c = 0; c < nC; ++c) {
      const int64_t at = (bh * nC + c) * size + x;
      const float inc_s = ds[at];
      ds[at] = s;
      s = keep_s * s + e_into_s * m + inc_s;
      if (de) {
        const float inc_e = de[at];
        de[at] = m;
        m = keep_e * m + inc_e;
      }
    }
  }
};

// out [BH, N, W] (=, or += with `accumulate`) the intra part plus σ(r)·os + ε(r)·oe, read at
// the padded row of each original row (time-reversed with `reverse`), scaled by row_w [N].
struct CombineRows {
  const float* o;
  const float* os;
  const float* oe;  // or null
  const float* row_w;
  float* out;
  ChunkWeights w;
  int64_t N, Np, W;
  bool reverse, accumulate;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t c = e % W, i = (e / W) % N, bh = e / (W * N);
    const int64_t ip = reverse ? N - 1 - i : i, r = ip % kChunk;
    const int64_t at = (bh * Np + ip) * W + c;
    float x = o[at] + w.read_s(bh, r) * os[at];
    if (oe) x += w.read_e(bh, r) * oe[at];
    if (row_w) x *= row_w[i];
    out[e] = accumulate ? out[e] + x : x;
  }
};

// ---- bodies of the normaliser --------------------------------------------------------------

// y [rows, W] = o / (den_raw + ε) (in place).
struct DivideRows {
  float* y;
  const float* den;
  float eps;
  int64_t W;
  POLYAK_HD void operator()(int64_t e) const { y[e] = y[e] / (den[e / W] + eps); }
};

struct AddScalar {
  float* x;
  float value;
  POLYAK_HD void operator()(int64_t e) const { x[e] += value; }
};

// Per row i: do_i = dy_i / den_i, dden_i = −(dy_i·y_i) / den_i.
struct NormaliserGrad {
  const float* dy;
  const float* y;
  const float* den;
  float* dout;
  float* dden;
  int64_t W;
  POLYAK_HD void operator()(int64_t row) const {
    const float inv = 1.0f / den[row];
    float s = 0.0f;
    for (int64_t c = 0; c < W; ++c) {
      const int64_t at = row * W + c;
      s += dy[at] * y[at];
      dout[at] = dy[at] * inv;
    }
    dden[row] = -s * inv;
  }
};

// ---- bodies of the non-causal form -------------------------------------------------------

// out [BH, M, W] = x rows scaled by w [B, M] (b = bh / H), or copied without w.
struct ScaleKeyRows {
  const float* x;
  const float* w;
  float* out;
  int64_t H, M, W;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t j = (e / W) % M, b = e / (W * M * H);
    out[e] = w ? w[b * M + j] * x[e] : x[e];
  }
};

// Per (bh, d): z[bh, d] = Σ_j μ_bj x[bh, j, d] (μ = 1 without a mask), in the order of j.
struct MaskedColumnSum {
  const float* x;
  const float* mask;
  float* z;
  int64_t H, M, D;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t d = e % D, bh = e / D, b = bh / H;
    float s = 0.0f;
    for (int64_t j = 0; j < M; ++j) s += (mask ? mask[b * M + j] : 1.0f) * x[(bh * M + j) * D + d];
    z[e] = s;
  }
};

// Per row (bh, i): den = q_i·z_bh + ε.
struct RowDot {
  const float* q;
  const float* z;
  float* den;
  int64_t N, D;
  float eps;
  POLYAK_HD void operator()(int64_t row) const {
    const int64_t bh = row / N;
    float s = 0.0f;
    for (int64_t d = 0; d < D; ++d) s += q[row * D + d] * z[bh * D + d];
    den[row] = s + eps;
  }
};

// dq [BH, N, D] += dden_i z_bh.
struct AddOuter {
  float* dq;
  const float* dden;
  const float* z;
  int64_t N, D;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t row = e / D, bh = row / N;
    dq[e] += dden[row] * z[bh * D + e % D];
  }
};

// dk [BH, M, D] = ω_bj dk + μ_bj dz_bh (1 without weights or mask).
struct KeyGrad {
  float* dk;
  const float* dz;
  const float* w;
  const float* mask;
  int64_t H, M, D;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t j = (e / D) % M, bh = e / (D * M), at = (bh / H) * M + j;
    dk[e] = (w ? w[at] : 1.0f) * dk[e] + (mask ? mask[at] : 1.0f) * dz[bh * D + e % D];
  }
};

// ---- bodies of the recurrent step ----------------------------------------------------------

// Per (bh, r, col) of the [D, Dv] states: a = λ_h a + c k_r v_col; with b: b += g a.
struct StepStates {
  float* a;
  float* b;
  const float* k;
  const float* v;
  HeadDecays decays;
  int64_t D, Dv;
  float c, g;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t col = e % Dv, r = (e / Dv) % D, bh = e / (D * Dv);
    const float lambda = decays(bh);
    a[e] = lambda * a[e] + c * k[bh * D + r] * v[bh * Dv + col];
    if (b) b[e] += g * a[e];
  }
};

// Per bh: z += k; den = q·z + ε (1 without z).
struct StepNormaliser {
  float* z;
  const float* q;
  const float* k;
  float* den;
  int64_t D;
  float eps;
  POLYAK_HD void operator()(int64_t bh) const {
    if (!z) {
      den[bh] = 1.0f;
      return;
    }
    float s = 0.0f;
    for (int64_t d = 0; d < D; ++d) {
      const int64_t at = bh * D + d;
      z[at] += k[at];
      s += q[at] * z[at];
    }
    den[bh] = s + eps;
  }
};

// Per (bh, col): y = Σ_r q_r x[r, col] / den.
struct StepRead {
  const float* q;
  const float* x;
  const float* den;
  float* y;
  int64_t D, Dv;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t col = e % Dv, bh = e / Dv;
    float s = 0.0f;
    for (int64_t r = 0; r < D; ++r) s += q[bh * D + r] * x[(bh * D + r) * Dv + col];
    y[e] = s / den[bh];
  }
};

// ---- drivers ------------------------------------------------------------------------------

inline float* floats(Tensor& t) {
  return static_cast<float*>(t.raw_data());
}
inline const float* floats(const Tensor& t) {
  return static_cast<const float*>(t.raw_data());
}
inline const float* floats_or_null(const Tensor& t) {
  return t.defined() ? floats(t) : nullptr;
}

// A host vector on `device` (undefined when empty).
inline Tensor upload(const std::vector<float>& values, Device device) {
  if (values.empty()) return Tensor();
  return Tensor::from(values, Shape{static_cast<int64_t>(values.size())}).to(device);
}

// The decays of one head each (empty: λ = 1) for the bodies: inline up to kInline heads,
// else uploaded into `kept`, which must outlive the launches.
inline HeadDecays head_decays(const std::vector<float>& decays, Device device, Tensor& kept) {
  HeadDecays d{};
  d.H = static_cast<int64_t>(decays.size());
  if (d.H > HeadDecays::kInline) {
    kept = upload(decays, device);
    d.device = floats(kept);
  } else {
    for (int64_t h = 0; h < d.H; ++h) d.values[h] = decays[static_cast<size_t>(h)];
  }
  return d;
}

// One operand of the product: [BH, N, width] rows (null: ones), each scaled by row_w [N].
struct Rows {
  const float* data;
  int64_t width;
  const float* row_w;
};

template <class Exec>
struct ChunkedProduct {
  Exec& ex;
  Device device;
  int64_t BH, N;

  Tensor scratch(int64_t n) const { return Tensor::empty(Shape{n}, DType::f32, device); }

  Tensor pad(const Rows& x, bool reverse) const {
    const int64_t Np = padded();
    Tensor t = scratch(BH * Np * x.width);
    ex.for_each(t.numel(), PadRows{x.data, x.row_w, floats(t), N, Np, x.width, reverse});
    return t;
  }
  int64_t chunks() const { return (N + kChunk - 1) / kChunk; }
  int64_t padded() const { return chunks() * kChunk; }

  // out [BH, N, c.width] (=, or += with `accumulate`) P_W(a, b, c), or its reverse; each
  // output row scaled by out_w [N] when given.
  void run(const ChunkWeights& w, const Rows& a, const Rows& b, const Rows& c, bool reverse,
           float* out, const float* out_w, bool accumulate) const {
    const int64_t nC = chunks(), Np = padded(), G = BH * nC, C = kChunk;
    const int64_t Da = a.width, Dc = c.width;
    const Tensor ap = pad(a, reverse), bp = pad(b, reverse), cp = pad(c, reverse);

    // intra: (A Bᵀ ⊙ mask) C per chunk
    Tensor p = scratch(G * C * C);
    ex.gemm(floats(ap), floats(bp), floats(p),
            GemmArgs{G, C, C, Da, false, true, C * Da, C * Da, C * C});
    ex.for_each(p.numel(), MaskChunk{floats(p), w, nC});
    Tensor o = scratch(BH * Np * Dc);
    ex.gemm(floats(p), floats(cp), floats(o),
            GemmArgs{G, C, Dc, C, false, false, C * C, C * Dc, C * Dc});

    // the states before each chunk, and inter: σ A S (+ ε A E)
    auto states = [&](bool momentum_e) {
      Tensor keys = scratch(bp.numel());
      ex.for_each(keys.numel(), ScaleKeys{floats(bp), floats(keys), w, Np, Da, momentum_e});
      Tensor s = scratch(G * Da * Dc);
      ex.gemm(floats(keys), floats(cp), floats(s),
              GemmArgs{G, Da, Dc, C, true, false, C * Da, C * Dc, Da * Dc});
      return s;
    };
    Tensor s = states(false);
    Tensor m = w.momentum ? states(true) : Tensor();
    ex.for_each(BH * Da * Dc,
                CarryStates{floats(s), w.momentum ? floats(m) : nullptr, w, nC, Da * Dc});
    auto read = [&](const Tensor& state) {
      Tensor r = scratch(BH * Np * Dc);
      ex.gemm(floats(ap), floats(state), floats(r),
              GemmArgs{G, C, Dc, Da, false, false, C * Da, Da * Dc, C * Dc});
      return r;
    };
    const Tensor os = read(s);
    const Tensor oe = w.momentum ? read(m) : Tensor();
    ex.for_each(BH * N * Dc, CombineRows{floats(o), floats(os), floats_or_null(oe), out_w, out, w,
                                         N, Np, Dc, reverse, accumulate});
  }
};

template <class Exec>
struct Attention {
  // W and U of the sweep (core/kernels_attention.h).
  static ChunkWeights numerator(const CausalSweepArgs& args, const HeadDecays& decays) {
    return ChunkWeights{decays, args.momentum, args.gamma};
  }
  static ChunkWeights normaliser(const CausalSweepArgs& args, const HeadDecays& decays) {
    return ChunkWeights{args.momentum ? HeadDecays{} : decays, false, 1.0f};
  }

  static void causal_sweep(const Tensor& q, const Tensor& k, const Tensor& v,
                           const CausalSweepArgs& args, Tensor& y, Tensor& den) {
    const Device dev = q.device();
    Exec ex(dev);
    const int64_t H = q.size(1), BH = q.size(0) * H, N = q.size(2), D = q.size(3), Dv = v.size(3);
    Tensor kept;
    const HeadDecays decays = head_decays(args.decays, dev, kept);
    const Tensor weights = upload(args.weights, dev);
    const ChunkedProduct<Exec> product{ex, dev, BH, N};
    const float* omega = floats_or_null(weights);
    product.run(numerator(args, decays), Rows{floats(q), D, nullptr}, Rows{floats(k), D, omega},
                Rows{floats(v), Dv, nullptr}, false, floats(y), nullptr, false);
    if (!args.normalize) return;
    product.run(normaliser(args, decays), Rows{floats(q), D, nullptr}, Rows{floats(k), D, nullptr},
                Rows{nullptr, 1, nullptr}, false, floats(den), nullptr, false);
    ex.for_each(y.numel(), DivideRows{floats(y), floats(den), args.eps, Dv});
    ex.for_each(den.numel(), AddScalar{floats(den), args.eps});
  }

  static void causal_sweep_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& y, const Tensor& den, const Tensor& dy,
                                    const CausalSweepArgs& args, Tensor& dq, Tensor& dk,
                                    Tensor& dv) {
    const Device dev = q.device();
    Exec ex(dev);
    const int64_t H = q.size(1), BH = q.size(0) * H, N = q.size(2), D = q.size(3), Dv = v.size(3);
    Tensor kept;
    const HeadDecays decays = head_decays(args.decays, dev, kept);
    const Tensor weights = upload(args.weights, dev);
    const ChunkedProduct<Exec> product{ex, dev, BH, N};
    const ChunkWeights w = numerator(args, decays);
    const float* omega = floats_or_null(weights);

    const float* dout = floats(dy);
    Tensor dout_t, dden;
    if (args.normalize) {
      dout_t = Tensor::empty(dy.shape(), DType::f32, dev);
      dden = Tensor::empty(den.shape(), DType::f32, dev);
      ex.for_each(BH * N, NormaliserGrad{floats(dy), floats(y), floats(den), floats(dout_t),
                                         floats(dden), Dv});
      dout = floats(dout_t);
    }
    const Rows qr{floats(q), D, nullptr}, kr{floats(k), D, nullptr}, vr{floats(v), Dv, nullptr};
    const Rows wk{floats(k), D, omega}, dor{dout, Dv, nullptr};
    product.run(w, dor, vr, wk, false, floats(dq), nullptr, false);
    product.run(w, vr, dor, qr, true, floats(dk), omega, false);
    product.run(w, wk, qr, dor, true, floats(dv), nullptr, false);
    if (!args.normalize) return;
    const ChunkWeights u = normaliser(args, decays);
    const Rows ones{nullptr, 1, nullptr}, ddr{floats(dden), 1, nullptr};
    product.run(u, ddr, ones, kr, false, floats(dq), nullptr, true);
    product.run(u, ones, ddr, qr, true, floats(dk), nullptr, true);
  }

  // ---- non-causal: S = (ω K)ᵀ V and z = Kᵀ μ per (b, h), then GEMMs over all rows --------

  struct LinearState {
    Tensor weights, mask, kw, s, z;
  };
  static LinearState linear_state(Exec& ex, const Tensor& k, const Tensor& v,
                                  const LinearAttentionArgs& args) {
    const Device dev = k.device();
    const int64_t H = k.size(1), BH = k.size(0) * H, M = k.size(2), D = k.size(3), Dv = v.size(3);
    LinearState st;
    st.weights = upload(args.weights, dev);
    st.mask = upload(args.key_mask, dev);
    st.kw = Tensor::empty(k.shape(), DType::f32, dev);
    ex.for_each(k.numel(),
                ScaleKeyRows{floats(k), floats_or_null(st.weights), floats(st.kw), H, M, D});
    st.s = Tensor::empty(Shape{BH, D, Dv}, DType::f32, dev);
    ex.gemm(floats(st.kw), floats(v), floats(st.s),
            GemmArgs{BH, D, Dv, M, true, false, M * D, M * Dv, D * Dv});
    st.z = Tensor::empty(Shape{BH, D}, DType::f32, dev);
    ex.for_each(BH * D, MaskedColumnSum{floats(k), floats_or_null(st.mask), floats(st.z), H, M, D});
    return st;
  }

  static void linear_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                               const LinearAttentionArgs& args, Tensor& y, Tensor& den) {
    Exec ex(q.device());
    const int64_t BH = q.size(0) * q.size(1), N = q.size(2), D = q.size(3), Dv = v.size(3);
    const LinearState st = linear_state(ex, k, v, args);
    ex.gemm(floats(q), floats(st.s), floats(y),
            GemmArgs{BH, N, Dv, D, false, false, N * D, D * Dv, N * Dv});
    ex.for_each(BH * N, RowDot{floats(q), floats(st.z), floats(den), N, D, args.eps});
    ex.for_each(y.numel(), DivideRows{floats(y), floats(den), 0.0f, Dv});
  }

  // dq = do Sᵀ + dden zᵀ;  dS = Qᵀ do, dz = Qᵀ dden;  dk = ω (V dSᵀ) + μ dz;  dv = (ω K) dS.
  static void linear_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const Tensor& y, const Tensor& den, const Tensor& dy,
                                        const LinearAttentionArgs& args, Tensor& dq, Tensor& dk,
                                        Tensor& dv) {
    const Device dev = q.device();
    Exec ex(dev);
    const int64_t H = q.size(1), BH = q.size(0) * H, N = q.size(2), M = k.size(2), D = q.size(3),
                  Dv = v.size(3);
    const LinearState st = linear_state(ex, k, v, args);
    Tensor dout = Tensor::empty(dy.shape(), DType::f32, dev);
    Tensor dden = Tensor::empty(den.shape(), DType::f32, dev);
    ex.for_each(BH * N,
                NormaliserGrad{floats(dy), floats(y), floats(den), floats(dout), floats(dden), Dv});
    ex.gemm(floats(dout), floats(st.s), floats(dq),
            GemmArgs{BH, N, D, Dv, false, true, N * Dv, D * Dv, N * D});
    ex.for_each(dq.numel(), AddOuter{floats(dq), floats(dden), floats(st.z), N, D});
    Tensor ds = Tensor::empty(Shape{BH, D, Dv}, DType::f32, dev);
    ex.gemm(floats(q), floats(dout), floats(ds),
            GemmArgs{BH, D, Dv, N, true, false, N * D, N * Dv, D * Dv});
    Tensor dz = Tensor::empty(Shape{BH, D}, DType::f32, dev);
    ex.gemm(floats(q), floats(dden), floats(dz), GemmArgs{BH, D, 1, N, true, false, N * D, N, D});
    ex.gemm(floats(v), floats(ds), floats(dk),
            GemmArgs{BH, M, D, Dv, false, true, M * Dv, D * Dv, M * D});
    ex.for_each(dk.numel(), KeyGrad{floats(dk), floats(dz), floats_or_null(st.weights),
                                    floats_or_null(st.mask), H, M, D});
    ex.gemm(floats(st.kw), floats(ds), floats(dv),
            GemmArgs{BH, M, Dv, D, false, false, M * D, D * Dv, M * Dv});
  }

  // ---- the recurrent step ----------------------------------------------------------------

  static void sweep_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& a, Tensor& b,
                         Tensor& z, const SweepStepArgs& args, Tensor& y) {
    const Device dev = q.device();
    Exec ex(dev);
    const int64_t H = q.size(1), BH = q.size(0) * H, D = q.size(2), Dv = v.size(2);
    Tensor kept;
    const HeadDecays decays = head_decays(args.decays, dev, kept);
    float* bp = b.defined() ? floats(b) : nullptr;
    ex.for_each(a.numel(),
                StepStates{floats(a), bp, floats(k), floats(v), decays, D, Dv, args.c, args.g});
    Tensor den = Tensor::empty(Shape{BH}, DType::f32, dev);
    ex.for_each(BH, StepNormaliser{z.defined() ? floats(z) : nullptr, floats(q), floats(k),
                                   floats(den), D, args.eps});
    ex.for_each(BH * Dv, StepRead{floats(q), bp ? bp : floats(a), floats(den), floats(y), D, Dv});
  }
};

}  // namespace polyak::kernels

#include "polyak/cuda/kernels/mega.h"
// Softmax attention, its step and the sequence projection: their own header, on the helpers above.
#include "polyak/cuda/kernels/softmax_attention.h"

namespace polyak::kernels {

template <class Exec>
AttentionKernels attention_kernels() {
  AttentionKernels k;
  k.causal_sweep = &Attention<Exec>::causal_sweep;
  k.causal_sweep_backward = &Attention<Exec>::causal_sweep_backward;
  k.linear_attention = &Attention<Exec>::linear_attention;
  k.linear_attention_backward = &Attention<Exec>::linear_attention_backward;
  k.sweep_step = &Attention<Exec>::sweep_step;
  k.ema = &Mega<Exec>::ema;
  k.ema_backward = &Mega<Exec>::ema_backward;
  k.ema_step = &Mega<Exec>::ema_step;
  k.mega_attention = &Mega<Exec>::mega_attention;
  k.mega_attention_backward = &Mega<Exec>::mega_attention_backward;
  k.mega_attention_step = &Mega<Exec>::mega_attention_step;
  k.softmax_attention = &SoftmaxAttention<Exec>::forward;
  k.softmax_attention_backward = &SoftmaxAttention<Exec>::backward;
  k.softmax_attention_step = &SoftmaxAttention<Exec>::step;
  k.sequence_projection = &SoftmaxAttention<Exec>::projection;
  k.sequence_projection_backward = &SoftmaxAttention<Exec>::projection_backward;
  return k;
}

}  // namespace polyak::kernels
