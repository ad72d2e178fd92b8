// layer_norm and rms_norm over the last axis (width C), fused forward and backward.
//
// Legend: R rows (all leading axes folded), C the normalised width; gamma, beta [C].
//
// layer_norm (Ba et al. 2016):
//   μ = mean(x),  rstd = 1/√(mean((x − μ)²) + eps),  x̂ = (x − μ)·rstd,  y = γ ⊙ x̂ + β
//   with ĝ = dy ⊙ γ:
//   dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂))                [R, C]
//   dγ = Σ_rows dy ⊙ x̂                                        [C]
//   dβ = Σ_rows dy                                            [C]
//   (x̂ depends on x through μ and rstd: ∂μ/∂x = 1/C, ∂rstd/∂x = −rstd³·(x − μ)/C; the two
//   mean terms are those paths.) The node keeps x, γ and μ, rstd per row.
//
// rms_norm (TransNormer's SRMSNorm, docs/math.md §5; eps outside the root):
//   r = √(mean(x²)),  s = 1/(r + eps),  y = γ ⊙ x · s
//   with ĝ = dy ⊙ γ:   ∂s/∂x = −s² · x/(C·r)
//   dx = s · ĝ − s² · (Σ ĝ ⊙ x)/(C·r) · x                        [R, C]
//   dγ = Σ_rows dy ⊙ x · s                                    [C]
//   The node keeps x, γ and r per row.
//
// dx is one pass per row; dγ, dβ are summed per chunk of rows (one chunk per thread) and
// the chunks added at the end, so the result does not depend on scheduling.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/threads.h"
#include "polyak/ops/nn_ops.h"

namespace polyak {
namespace {

template <class T>
using Vec = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstVec = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

void check_affine(const char* fn, const char* arg, const Tensor& p, const Tensor& x) {
  if (!p.defined()) return;
  const int64_t C = x.size(-1);
  POLYAK_CHECK(p.dim() == 1 && p.size(0) == C, fn, ": ", arg, " has shape ", p.shape(),
               ", expected [C] = [", C, "] matching the last axis of x ", x.shape());
  check_same_dtype(fn, "x", x, arg, p);
  check_cpu(fn, arg, p);
}

void check_input(const char* fn, const Tensor& x, double eps) {
  check_defined(fn, "x", x);
  check_cpu(fn, "x", x);
  POLYAK_CHECK(x.dim() >= 1, fn, ": x has shape ", x.shape(), ", expected rank ≥ 1 [..., C]");
  POLYAK_CHECK(eps >= 0 && std::isfinite(eps), fn, ": eps is ", eps, ", expected eps ≥ 0");
}

// Runs body(row_begin, row_end, chunk) over `chunks` contiguous chunks of rows in parallel.
void for_row_chunks(int64_t rows, int64_t chunks, int64_t cost_per_row,
                    const std::function<void(int64_t, int64_t, int64_t)>& body) {
  parallel_for(chunks, cost_per_row * rows / std::max<int64_t>(chunks, 1),
               [&](int64_t begin, int64_t end) {
                 for (int64_t c = begin; c < end; ++c)
                   body(rows * c / chunks, rows * (c + 1) / chunks, c);
               });
}

// Sums the per-chunk partials [chunks, C] into out [C].
template <class T>
void sum_chunks(const std::vector<T>& partial, int64_t chunks, int64_t C, T* out) {
  std::fill(out, out + C, T(0));
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t j = 0; j < C; ++j) out[j] += partial[static_cast<size_t>(c * C + j)];
}

}  // namespace

// ---- layer_norm ------------------------------------------------------------------------

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
  check_input("layer_norm", x, eps);
  check_affine("layer_norm", "gamma", gamma, x);
  check_affine("layer_norm", "beta", beta, x);
  const int64_t C = x.size(-1), R = x.shape().numel(0, x.dim() - 1);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  Tensor mean = Tensor::empty(Shape{R}, x.dtype());
  Tensor rstd = Tensor::empty(Shape{R}, x.dtype());
  if (C > 0)
    dispatch(x.dtype(), [&]<class T>() {
      const T* px = x.data<T>();
      const T* pg = gamma.defined() ? gamma.data<T>() : nullptr;
      const T* pb = beta.defined() ? beta.data<T>() : nullptr;
      T *py = out.data<T>(), *pm = mean.data<T>(), *ps = rstd.data<T>();
      parallel_for(R, 6 * C, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          ConstVec<T> xr(px + r * C, C);
          Vec<T> yr(py + r * C, C);
          const T mu = xr.mean();
          const T rs = T(1) / std::sqrt((xr - mu).square().mean() + static_cast<T>(eps));
          pm[r] = mu;
          ps[r] = rs;
          if (pg && pb)
            yr = (xr - mu) * rs * ConstVec<T>(pg, C) + ConstVec<T>(pb, C);
          else if (pg)
            yr = (xr - mu) * rs * ConstVec<T>(pg, C);
          else if (pb)
            yr = (xr - mu) * rs + ConstVec<T>(pb, C);
          else
            yr = (xr - mu) * rs;
        }
      });
    });

  const bool need_x = x.requires_grad();
  const bool need_g = gamma.defined() && gamma.requires_grad();
  const bool need_b = beta.defined() && beta.requires_grad();
  std::vector<Tensor> inputs = {x};
  if (gamma.defined()) inputs.push_back(gamma);
  if (beta.defined()) inputs.push_back(beta);
  record(out, "LayerNormBackward", inputs,
         [xs = x.detach(), gs = gamma.defined() ? gamma.detach() : Tensor(), mean, rstd,
          has_beta = beta.defined(), need_x, need_g, need_b, R,
          C](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = need_x ? Tensor::empty(xs.shape(), xs.dtype()) : Tensor();
           Tensor dgamma = need_g ? Tensor::empty(Shape{C}, xs.dtype()) : Tensor();
           Tensor dbeta = need_b ? Tensor::empty(Shape{C}, xs.dtype()) : Tensor();
           dispatch(xs.dtype(), [&]<class T>() {
             const T *px = xs.data<T>(), *pdy = g.data<T>();
             const T *pm = mean.data<T>(), *ps = rstd.data<T>();
             const T* pg = gs.defined() ? gs.data<T>() : nullptr;
             T* pdx = need_x ? dx.data<T>() : nullptr;
             const int64_t chunks = (need_g || need_b) ? std::min<int64_t>(R, num_threads()) : R;
             std::vector<T> part_g(need_g ? static_cast<size_t>(chunks * C) : 0, T(0));
             std::vector<T> part_b(need_b ? static_cast<size_t>(chunks * C) : 0, T(0));
             const T inv_c = T(1) / static_cast<T>(std::max<int64_t>(C, 1));
             for_row_chunks(R, chunks, 10 * C, [&](int64_t begin, int64_t end, int64_t chunk) {
               for (int64_t r = begin; r < end; ++r) {
                 ConstVec<T> xr(px + r * C, C), gr(pdy + r * C, C);
                 auto xhat = (xr - pm[r]) * ps[r];
                 if (need_g) Vec<T>(part_g.data() + chunk * C, C) += gr * xhat;
                 if (need_b) Vec<T>(part_b.data() + chunk * C, C) += gr;
                 if (!need_x) continue;
                 Vec<T> dxr(pdx + r * C, C);
                 if (pg) {
                   auto ghat = gr * ConstVec<T>(pg, C);
                   const T a = ghat.sum() * inv_c, b = (ghat * xhat).sum() * inv_c;
                   dxr = ps[r] * (ghat - a - xhat * b);
                 } else {
                   const T a = gr.sum() * inv_c, b = (gr * xhat).sum() * inv_c;
                   dxr = ps[r] * (gr - a - xhat * b);
                 }
               }
             });
             if (need_g) sum_chunks(part_g, chunks, C, dgamma.data<T>());
             if (need_b) sum_chunks(part_b, chunks, C, dbeta.data<T>());
           });
           std::vector<Tensor> grads = {dx};
           if (gs.defined()) grads.push_back(dgamma);
           if (has_beta) grads.push_back(dbeta);
           return grads;
         });
  return out;
}

// ---- rms_norm --------------------------------------------------------------------------

Tensor rms_norm(const Tensor& x, const Tensor& gamma, double eps) {
  check_input("rms_norm", x, eps);
  check_affine("rms_norm", "gamma", gamma, x);
  const int64_t C = x.size(-1), R = x.shape().numel(0, x.dim() - 1);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  Tensor rms = Tensor::empty(Shape{R}, x.dtype());
  if (C > 0)
    dispatch(x.dtype(), [&]<class T>() {
      const T* px = x.data<T>();
      const T* pg = gamma.defined() ? gamma.data<T>() : nullptr;
      T *py = out.data<T>(), *pr = rms.data<T>();
      parallel_for(R, 4 * C, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          ConstVec<T> xr(px + r * C, C);
          Vec<T> yr(py + r * C, C);
          pr[r] = std::sqrt(xr.square().mean());
          const T s = T(1) / (pr[r] + static_cast<T>(eps));
          if (pg)
            yr = xr * s * ConstVec<T>(pg, C);
          else
            yr = xr * s;
        }
      });
    });

  const bool need_x = x.requires_grad();
  const bool need_g = gamma.defined() && gamma.requires_grad();
  std::vector<Tensor> inputs = {x};
  if (gamma.defined()) inputs.push_back(gamma);
  record(out, "RMSNormBackward", inputs,
         [xs = x.detach(), gs = gamma.defined() ? gamma.detach() : Tensor(), rms, eps, need_x,
          need_g, R, C](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = need_x ? Tensor::empty(xs.shape(), xs.dtype()) : Tensor();
           Tensor dgamma = need_g ? Tensor::empty(Shape{C}, xs.dtype()) : Tensor();
           dispatch(xs.dtype(), [&]<class T>() {
             const T *px = xs.data<T>(), *pdy = g.data<T>(), *pr = rms.data<T>();
             const T* pg = gs.defined() ? gs.data<T>() : nullptr;
             T* pdx = need_x ? dx.data<T>() : nullptr;
             const int64_t chunks = need_g ? std::min<int64_t>(R, num_threads()) : R;
             std::vector<T> part_g(need_g ? static_cast<size_t>(chunks * C) : 0, T(0));
             const T inv_c = T(1) / static_cast<T>(std::max<int64_t>(C, 1));
             for_row_chunks(R, chunks, 8 * C, [&](int64_t begin, int64_t end, int64_t chunk) {
               for (int64_t r = begin; r < end; ++r) {
                 ConstVec<T> xr(px + r * C, C), gr(pdy + r * C, C);
                 const T s = T(1) / (pr[r] + static_cast<T>(eps));
                 if (need_g) Vec<T>(part_g.data() + chunk * C, C) += gr * xr * s;
                 if (!need_x) continue;
                 Vec<T> dxr(pdx + r * C, C);
                 // At r = 0 the row is zero, so the second term vanishes with it.
                 const T k = pr[r] > T(0) ? s * s * inv_c / pr[r] : T(0);
                 if (pg) {
                   auto ghat = gr * ConstVec<T>(pg, C);
                   dxr = s * ghat - (k * (ghat * xr).sum()) * xr;
                 } else {
                   dxr = s * gr - (k * (gr * xr).sum()) * xr;
                 }
               }
             });
             if (need_g) sum_chunks(part_g, chunks, C, dgamma.data<T>());
           });
           std::vector<Tensor> grads = {dx};
           if (gs.defined()) grads.push_back(dgamma);
           return grads;
         });
  return out;
}

}  // namespace polyak
