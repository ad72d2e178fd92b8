// The nn kernel group (core/kernels_nn.h) as kernel bodies and drivers (cuda/kernels/exec.h):
// compiled by nvcc for CUDA devices (cuda/nn.cu) and by the host compiler for the tests'
// fake device (tests/fake_device.h). Each body has its CPU reference in ops/.
//
//   embedding            out[i, c] = weight[ids[i], c]     one body per (i, c); NaN for a bad id
//   embedding_backward   dweight[ids[i], c] += grad[i, c]  one body per column c, over i in
//                                                          order (deterministic, no atomics)
//   layer_norm, rms_norm     one body per row; dgamma, dbeta one body per column, over rows
//   softmax, log_softmax     one body per (outer, inner) line along C
//   cross_entropy            one body per row (lse, nll, weight), then one body summing the
//                            rows in order; backward one body per logit, one per row (dmask)
//   argmax                   one body per (outer, inner) line
// Sums run in float in a fixed order, except the loss's sum over rows (double, as the CPU's).
// Perf notes: the row bodies are one thread per row; a block per row (shared-memory
// reductions) and a two-pass column sum are the next steps.
#pragma once

#include <cmath>  // the float functions (::expf, ::logf, ::sqrtf, ::fmaxf) on both sides
#include <cstdint>
#include <limits>

#include "polyak/core/kernels_nn.h"
#include "polyak/core/logistic_mixture.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::kernels {

// ---- bodies ----------------------------------------------------------------------------

template <class Id>
struct EmbeddingForward {
  const float* weight;  // [V, C]
  const Id* ids;        // [n]
  float* out;           // [n, C]
  int64_t V, C;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t i = e / C, c = e % C;
    const int64_t id = static_cast<int64_t>(ids[i]);
    out[e] = id >= 0 && id < V ? weight[id * C + c] : std::numeric_limits<float>::quiet_NaN();
  }
};

template <class Id>
struct EmbeddingBackward {
  const float* grad;  // [n, C]
  const Id* ids;      // [n]
  float* dweight;     // [V, C], zeroed by the caller
  int64_t n, V, C;
  POLYAK_HD void operator()(int64_t c) const {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = static_cast<int64_t>(ids[i]);
      if (id >= 0 && id < V) dweight[id * C + c] += grad[i * C + c];  // a bad id has no row
    }
  }
};

// ---- layer_norm, rms_norm: x [R, C] ------------------------------------------------------

struct LayerNormForward {
  const float *x, *gamma, *beta;  // gamma, beta [C] or null
  float *y, *mean, *rstd;
  int64_t C;
  float eps;
  POLYAK_HD void operator()(int64_t r) const {
    const float* xr = x + r * C;
    float s = 0;
    for (int64_t c = 0; c < C; ++c) s += xr[c];
    const float mu = s / static_cast<float>(C);
    float v = 0;
    for (int64_t c = 0; c < C; ++c) v += (xr[c] - mu) * (xr[c] - mu);
    const float rs = 1.0f / ::sqrtf(v / static_cast<float>(C) + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (int64_t c = 0; c < C; ++c) {
      const float h = (xr[c] - mu) * rs;
      y[r * C + c] = (gamma ? h * gamma[c] : h) + (beta ? beta[c] : 0.0f);
    }
  }
};

// dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)), ĝ = dy ⊙ γ.
struct LayerNormBackwardRows {
  const float *x, *dy, *mean, *rstd, *gamma;
  float* dx;
  int64_t C;
  POLYAK_HD void operator()(int64_t r) const {
    const float *xr = x + r * C, *gr = dy + r * C;
    const float mu = mean[r], rs = rstd[r];
    float a = 0, b = 0;
    for (int64_t c = 0; c < C; ++c) {
      const float g = gamma ? gr[c] * gamma[c] : gr[c];
      a += g;
      b += g * (xr[c] - mu) * rs;
    }
    a /= static_cast<float>(C);
    b /= static_cast<float>(C);
    for (int64_t c = 0; c < C; ++c) {
      const float g = gamma ? gr[c] * gamma[c] : gr[c];
      dx[r * C + c] = rs * (g - a - (xr[c] - mu) * rs * b);
    }
  }
};

// dγ = Σ_rows dy ⊙ x̂, dβ = Σ_rows dy (either pointer null: not wanted).
struct LayerNormBackwardColumns {
  const float *x, *dy, *mean, *rstd;
  float *dgamma, *dbeta;
  int64_t R, C;
  POLYAK_HD void operator()(int64_t c) const {
    float g = 0, b = 0;
    for (int64_t r = 0; r < R; ++r) {
      const float d = dy[r * C + c];
      g += d * (x[r * C + c] - mean[r]) * rstd[r];
      b += d;
    }
    if (dgamma) dgamma[c] = g;
    if (dbeta) dbeta[c] = b;
  }
};

struct RmsNormForward {
  const float *x, *gamma;
  float *y, *rms;
  int64_t C;
  float eps;
  POLYAK_HD void operator()(int64_t r) const {
    const float* xr = x + r * C;
    float q = 0;
    for (int64_t c = 0; c < C; ++c) q += xr[c] * xr[c];
    const float rr = ::sqrtf(q / static_cast<float>(C)), s = 1.0f / (rr + eps);
    rms[r] = rr;
    for (int64_t c = 0; c < C; ++c) y[r * C + c] = gamma ? xr[c] * s * gamma[c] : xr[c] * s;
  }
};

// dx = s · ĝ − s² · (Σ ĝ ⊙ x)/(C·r) · x, s = 1/(r + eps); the second term is 0 at r = 0.
struct RmsNormBackwardRows {
  const float *x, *dy, *rms, *gamma;
  float* dx;
  int64_t C;
  float eps;
  POLYAK_HD void operator()(int64_t r) const {
    const float *xr = x + r * C, *gr = dy + r * C;
    const float s = 1.0f / (rms[r] + eps);
    const float k = rms[r] > 0.0f ? s * s / static_cast<float>(C) / rms[r] : 0.0f;
    float dot = 0;
    for (int64_t c = 0; c < C; ++c) dot += (gamma ? gr[c] * gamma[c] : gr[c]) * xr[c];
    for (int64_t c = 0; c < C; ++c)
      dx[r * C + c] = s * (gamma ? gr[c] * gamma[c] : gr[c]) - k * dot * xr[c];
  }
};

// dγ = Σ_rows dy ⊙ x · s.
struct RmsNormBackwardColumns {
  const float *x, *dy, *rms;
  float* dgamma;
  int64_t R, C;
  float eps;
  POLYAK_HD void operator()(int64_t c) const {
    float g = 0;
    for (int64_t r = 0; r < R; ++r) g += dy[r * C + c] * x[r * C + c] / (rms[r] + eps);
    dgamma[c] = g;
  }
};

// ---- softmax, log_softmax: [outer, C, inner], one body per line (o, i) --------------------

template <bool Log>
struct SoftmaxForward {
  const float* x;
  float* y;
  int64_t C, inner;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t base = e / inner * C * inner + e % inner;
    float m = x[base];
    for (int64_t c = 1; c < C; ++c) m = ::fmaxf(m, x[base + c * inner]);
    float sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += ::expf(x[base + c * inner] - m);
    const float shift = m + ::logf(sum), inv = 1.0f / sum;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t j = base + c * inner;
      y[j] = Log ? x[j] - shift : ::expf(x[j] - m) * inv;
    }
  }
};

// softmax: dx = y ⊙ (dy − Σ dy ⊙ y);  log_softmax: dx = dy − exp(y) · Σ dy.
template <bool Log>
struct SoftmaxBackward {
  const float *y, *dy;
  float* dx;
  int64_t C, inner;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t base = e / inner * C * inner + e % inner;
    float s = 0;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t j = base + c * inner;
      s += Log ? dy[j] : dy[j] * y[j];
    }
    for (int64_t c = 0; c < C; ++c) {
      const int64_t j = base + c * inner;
      dx[j] = Log ? dy[j] - ::expf(y[j]) * s : y[j] * (dy[j] - s);
    }
  }
};

// ---- logistic_mixture_nll: params [R, 3K] -----------------------------------------------

// Pixel r: its nll and, with `g`, its parameters' gradient (core/logistic_mixture.h).
template <class Id>
struct LogisticMixturePixels {
  const float* params;
  const Id* targets;
  const float* g;  // null: the forward
  float* nll;      // the forward's output
  float* dparams;  // the backward's output
  int64_t K;
  POLYAK_HD void operator()(int64_t r) const {
    const int64_t x = static_cast<int64_t>(targets[r]);
    const float* p = params + r * 3 * K;
    if (x < 0 || x >= mixture::kLevels) {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      if (g)
        for (int64_t i = 0; i < 3 * K; ++i) dparams[r * 3 * K + i] = nan;
      else
        nll[r] = nan;
      return;
    }
    float scratch[mixture::kMaxComponents];
    if (g)
      mixture::pixel_nll<float>(p, K, x, g[r], dparams + r * 3 * K, scratch);
    else
      nll[r] = mixture::pixel_nll<float>(p, K, x, 1.0f, nullptr, scratch);
  }
};

// ---- cross_entropy: logits [R, V] --------------------------------------------------------

// Row r: its weight, and lse, nll when its target is a class. W is the mask's element type
// (mask null: the weight is 1[t ≠ ignore_index]).
template <class Id, class W>
struct CrossEntropyRows {
  const float* x;
  const Id* targets;
  const W* mask;
  float *weight, *lse, *nll;
  int64_t V, ignore_index;
  POLYAK_HD void operator()(int64_t r) const {
    const int64_t t = static_cast<int64_t>(targets[r]);
    const float w = mask ? static_cast<float>(mask[r]) : (t != ignore_index ? 1.0f : 0.0f);
    weight[r] = w;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    if (t < 0 || t >= V) {  // no class: fine when the row does not count
      lse[r] = 0;
      nll[r] = w == 0.0f ? 0.0f : nan;
      return;
    }
    const float* xr = x + r * V;
    float m = xr[0];
    for (int64_t v = 1; v < V; ++v) m = ::fmaxf(m, xr[v]);
    float sum = 0;
    for (int64_t v = 0; v < V; ++v) sum += ::expf(xr[v] - m);
    lse[r] = m + ::logf(sum);
    const bool valid_weight = w >= 0.0f && w <= std::numeric_limits<float>::max();
    nll[r] = valid_weight ? lse[r] - xr[t] : nan;
  }
};

// One body: W = Σ weight, loss = Σ weight·nll / W, in the order of the rows, in double.
struct CrossEntropyTotal {
  const float *weight, *nll;
  float *stats, *loss;  // stats [2] = (W, loss)
  int64_t R;
  POLYAK_HD void operator()(int64_t) const {
    double total = 0, weighted = 0;
    for (int64_t r = 0; r < R; ++r) {
      total += weight[r];
      weighted += static_cast<double>(weight[r]) * nll[r];
    }
    // W = 0: the loss is 0, unless a bad row made the sum NaN (W < 0 needs a bad weight).
    const float l = total > 0 ? static_cast<float>(weighted / total)
                              : (weighted == weighted ? 0.0f : static_cast<float>(weighted));
    stats[0] = static_cast<float>(total);
    stats[1] = l;
    loss[0] = l;
  }
};

// dx_rv = g · w_r / W · (exp(x_rv − lse_r) − 1[v = t_r]); NaN on a counted row without a class.
template <class Id>
struct CrossEntropyBackwardLogits {
  const float *x, *weight, *lse, *stats, *g;
  const Id* targets;
  float* dx;
  int64_t V;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t r = e / V, v = e % V;
    const float w = weight[r];
    if (w == 0.0f) {
      dx[e] = 0;
      return;
    }
    const int64_t t = static_cast<int64_t>(targets[r]);
    if (t < 0 || t >= V) {
      dx[e] = std::numeric_limits<float>::quiet_NaN();
      return;
    }
    const float k = stats[0] > 0.0f ? g[0] / stats[0] * w : 0.0f;
    dx[e] = ::expf(x[e] - lse[r]) * k - (v == t ? k : 0.0f);
  }
};

// dmask_r = g · (nll_r − loss) / W where t_r is a class, 0 elsewhere.
template <class Id>
struct CrossEntropyBackwardMask {
  const float *nll, *stats, *g;
  const Id* targets;
  float* dmask;
  int64_t V;
  POLYAK_HD void operator()(int64_t r) const {
    const int64_t t = static_cast<int64_t>(targets[r]);
    const float scale = stats[0] > 0.0f ? g[0] / stats[0] : 0.0f;
    dmask[r] = t >= 0 && t < V ? scale * (nll[r] - stats[1]) : 0.0f;
  }
};

// ---- argmax: [outer, n, inner] → [outer, inner] -----------------------------------------

struct Argmax {
  const float* x;
  int64_t* out;
  int64_t n, inner;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t base = e / inner * n * inner + e % inner;
    float best = x[base];
    int64_t k_best = 0;
    for (int64_t k = 1; k < n; ++k) {
      const float v = x[base + k * inner];
      if (v > best || (v != v && best == best)) {  // NaN beats a number; ties keep the first
        best = v;
        k_best = k;
      }
    }
    out[e] = k_best;
  }
};

// ---- drivers: the Tensor-level entries of the table -------------------------------------

template <class T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}
template <class T>
T* out_or_null(Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

// f(Id{}) with Id the element type of an i32 or i64 tensor of ids.
template <class F>
void with_id_type(const Tensor& ids, const F& f) {
  if (ids.dtype() == DType::i64)
    f(int64_t{});
  else
    f(int32_t{});
}

template <class Exec>
struct Nn {
  static void embedding(const Tensor& weight, const Tensor& ids, Tensor& out) {
    Exec ex(weight.device());
    const int64_t n = ids.numel(), V = weight.size(0), C = weight.size(1);
    const auto* w = static_cast<const float*>(weight.raw_data());
    auto* y = static_cast<float*>(out.raw_data());
    if (ids.dtype() == DType::i64)
      ex.for_each(n * C, EmbeddingForward<int64_t>{w, static_cast<const int64_t*>(ids.raw_data()),
                                                   y, V, C});
    else
      ex.for_each(n * C, EmbeddingForward<int32_t>{w, static_cast<const int32_t*>(ids.raw_data()),
                                                   y, V, C});
  }

  static void embedding_backward(const Tensor& grad, const Tensor& ids, Tensor& dweight) {
    Exec ex(grad.device());
    const int64_t n = ids.numel(), V = dweight.size(0), C = dweight.size(1);
    const auto* g = static_cast<const float*>(grad.raw_data());
    auto* dw = static_cast<float*>(dweight.raw_data());
    with_id_type(ids, [&](auto id) {
      using Id = decltype(id);
      ex.for_each(C, EmbeddingBackward<Id>{g, static_cast<const Id*>(ids.raw_data()), dw, n, V, C});
    });
  }

  static void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps,
                         Tensor& y, Tensor& mean, Tensor& rstd) {
    Exec ex(x.device());
    const int64_t C = x.size(-1), R = C > 0 ? x.numel() / C : 0;
    ex.for_each(R, LayerNormForward{data_or_null<float>(x), data_or_null<float>(gamma),
                                    data_or_null<float>(beta), out_or_null<float>(y),
                                    out_or_null<float>(mean), out_or_null<float>(rstd), C,
                                    static_cast<float>(eps)});
  }

  static void layer_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& mean,
                                  const Tensor& rstd, const Tensor& gamma, Tensor& dx,
                                  Tensor& dgamma, Tensor& dbeta) {
    Exec ex(x.device());
    const int64_t C = x.size(-1), R = C > 0 ? x.numel() / C : 0;
    const float *px = data_or_null<float>(x), *pdy = data_or_null<float>(dy);
    const float *pm = data_or_null<float>(mean), *ps = data_or_null<float>(rstd);
    if (dx.defined())
      ex.for_each(R, LayerNormBackwardRows{px, pdy, pm, ps, data_or_null<float>(gamma),
                                           out_or_null<float>(dx), C});
    if (dgamma.defined() || dbeta.defined())
      ex.for_each(C, LayerNormBackwardColumns{px, pdy, pm, ps, out_or_null<float>(dgamma),
                                              out_or_null<float>(dbeta), R, C});
  }

  static void rms_norm(const Tensor& x, const Tensor& gamma, double eps, Tensor& y, Tensor& rms) {
    Exec ex(x.device());
    const int64_t C = x.size(-1), R = C > 0 ? x.numel() / C : 0;
    ex.for_each(
        R, RmsNormForward{data_or_null<float>(x), data_or_null<float>(gamma), out_or_null<float>(y),
                          out_or_null<float>(rms), C, static_cast<float>(eps)});
  }

  static void rms_norm_backward(const Tensor& x, const Tensor& dy, const Tensor& rms,
                                const Tensor& gamma, double eps, Tensor& dx, Tensor& dgamma) {
    Exec ex(x.device());
    const int64_t C = x.size(-1), R = C > 0 ? x.numel() / C : 0;
    const float *px = data_or_null<float>(x), *pdy = data_or_null<float>(dy);
    const float* pr = data_or_null<float>(rms);
    const float e = static_cast<float>(eps);
    if (dx.defined())
      ex.for_each(R, RmsNormBackwardRows{px, pdy, pr, data_or_null<float>(gamma),
                                         out_or_null<float>(dx), C, e});
    if (dgamma.defined())
      ex.for_each(C, RmsNormBackwardColumns{px, pdy, pr, out_or_null<float>(dgamma), R, C, e});
  }

  static void softmax(const Tensor& x, int64_t outer, int64_t C, int64_t inner, bool log,
                      Tensor& y) {
    Exec ex(x.device());
    const float* px = data_or_null<float>(x);
    float* py = out_or_null<float>(y);
    if (log)
      ex.for_each(outer * inner, SoftmaxForward<true>{px, py, C, inner});
    else
      ex.for_each(outer * inner, SoftmaxForward<false>{px, py, C, inner});
  }

  static void softmax_backward(const Tensor& y, const Tensor& dy, int64_t outer, int64_t C,
                               int64_t inner, bool log, Tensor& dx) {
    Exec ex(y.device());
    const float *py = data_or_null<float>(y), *pdy = data_or_null<float>(dy);
    float* pdx = out_or_null<float>(dx);
    if (log)
      ex.for_each(outer * inner, SoftmaxBackward<true>{py, pdy, pdx, C, inner});
    else
      ex.for_each(outer * inner, SoftmaxBackward<false>{py, pdy, pdx, C, inner});
  }

  static void cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& mask,
                            int64_t ignore_index, Tensor& weight, Tensor& lse, Tensor& nll,
                            Tensor& stats, Tensor& loss) {
    Exec ex(logits.device());
    const int64_t V = logits.size(-1), R = targets.numel();
    const float* x = data_or_null<float>(logits);
    float *pw = out_or_null<float>(weight), *pl = out_or_null<float>(lse);
    float* pn = out_or_null<float>(nll);
    with_id_type(targets, [&](auto id) {
      using Id = decltype(id);
      const Id* t = static_cast<const Id*>(targets.raw_data());
      const auto rows = [&](auto w) {
        using W = decltype(w);
        ex.for_each(
            R, CrossEntropyRows<Id, W>{x, t, data_or_null<W>(mask), pw, pl, pn, V, ignore_index});
      };
      if (!mask.defined() || mask.dtype() == DType::f32)
        rows(float{});
      else if (mask.dtype() == DType::i64)
        rows(int64_t{});
      else
        rows(int32_t{});
    });
    ex.for_each(1,
                CrossEntropyTotal{pw, pn, out_or_null<float>(stats), out_or_null<float>(loss), R});
  }

  static void cross_entropy_backward(const Tensor& logits, const Tensor& targets,
                                     const Tensor& weight, const Tensor& lse, const Tensor& nll,
                                     const Tensor& stats, const Tensor& g, Tensor& dlogits,
                                     Tensor& dmask) {
    Exec ex(logits.device());
    const int64_t V = logits.size(-1), R = targets.numel();
    const float *pstats = data_or_null<float>(stats), *pg = data_or_null<float>(g);
    with_id_type(targets, [&](auto id) {
      using Id = decltype(id);
      const Id* t = static_cast<const Id*>(targets.raw_data());
      if (dlogits.defined())
        ex.for_each(R * V, CrossEntropyBackwardLogits<Id>{data_or_null<float>(logits),
                                                          data_or_null<float>(weight),
                                                          data_or_null<float>(lse), pstats, pg, t,
                                                          out_or_null<float>(dlogits), V});
      if (dmask.defined())
        ex.for_each(R, CrossEntropyBackwardMask<Id>{data_or_null<float>(nll), pstats, pg, t,
                                                    out_or_null<float>(dmask), V});
    });
  }

  static void logistic_mixture_nll(const Tensor& params, const Tensor& targets, int64_t K,
                                   Tensor& nll) {
    Exec ex(params.device());
    with_id_type(targets, [&](auto id) {
      using Id = decltype(id);
      ex.for_each(targets.numel(),
                  LogisticMixturePixels<Id>{data_or_null<float>(params),
                                            static_cast<const Id*>(targets.raw_data()), nullptr,
                                            out_or_null<float>(nll), nullptr, K});
    });
  }

  static void logistic_mixture_nll_backward(const Tensor& params, const Tensor& targets,
                                            const Tensor& g, int64_t K, Tensor& dparams) {
    Exec ex(params.device());
    with_id_type(targets, [&](auto id) {
      using Id = decltype(id);
      ex.for_each(targets.numel(),
                  LogisticMixturePixels<Id>{
                      data_or_null<float>(params), static_cast<const Id*>(targets.raw_data()),
                      data_or_null<float>(g), nullptr, out_or_null<float>(dparams), K});
    });
  }

  static void argmax(const Tensor& x, int64_t outer, int64_t n, int64_t inner, Tensor& out) {
    Exec ex(x.device());
    ex.for_each(outer * inner, Argmax{data_or_null<float>(x), out_or_null<int64_t>(out), n, inner});
  }
};

template <class Exec>
NnKernels nn_kernels() {
  NnKernels k;
  k.embedding = &Nn<Exec>::embedding;
  k.embedding_backward = &Nn<Exec>::embedding_backward;
  k.layer_norm = &Nn<Exec>::layer_norm;
  k.layer_norm_backward = &Nn<Exec>::layer_norm_backward;
  k.rms_norm = &Nn<Exec>::rms_norm;
  k.rms_norm_backward = &Nn<Exec>::rms_norm_backward;
  k.softmax = &Nn<Exec>::softmax;
  k.softmax_backward = &Nn<Exec>::softmax_backward;
  k.cross_entropy = &Nn<Exec>::cross_entropy;
  k.cross_entropy_backward = &Nn<Exec>::cross_entropy_backward;
  k.logistic_mixture_nll = &Nn<Exec>::logistic_mixture_nll;
  k.logistic_mixture_nll_backward = &Nn<Exec>::logistic_mixture_nll_backward;
  k.argmax = &Nn<Exec>::argmax;
  return k;
}

}  // namespace polyak::kernels
