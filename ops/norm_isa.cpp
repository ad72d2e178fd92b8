// layer_norm's and rms_norm's row loops (ops/norm.cpp has the ops, their formulas and
// their nodes), compiled once per ISA: Eigen's row expressions run in the ISA's widest
// vectors.
//
// dx is one pass per row; dγ, dβ are summed per chunk of rows (one chunk per thread) and
// the chunks added at the end, so the result does not depend on scheduling.
#include "polyak/ops/eigen_isa.h"
// (first: it renames Eigen for this compilation)
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "polyak/core/threads.h"
#include "polyak/ops/norm_kernels.h"

namespace polyak::detail {
namespace POLYAK_ISA_NAMESPACE {
namespace {

template <class T>
using Vec = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstVec = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

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
}  // namespace POLYAK_ISA_NAMESPACE

template <class T>
void layer_norm_forward(POLYAK_KERNEL_ISA_TAG, const T* px, const T* pg, const T* pb, T* py, T* pm,
                        T* ps, int64_t R, int64_t C, T eps) {
  using namespace POLYAK_ISA_NAMESPACE;
  parallel_for(R, 6 * C, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      ConstVec<T> xr(px + r * C, C);
      Vec<T> yr(py + r * C, C);
      const T mu = xr.mean();
      const T rs = T(1) / std::sqrt((xr - mu).square().mean() + eps);
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
}

template <class T>
void layer_norm_backward(POLYAK_KERNEL_ISA_TAG, const T* px, const T* pdy, const T* pm, const T* ps,
                         const T* pg, T* pdx, T* dgamma, T* dbeta, int64_t R, int64_t C) {
  using namespace POLYAK_ISA_NAMESPACE;
  const bool need_g = dgamma, need_b = dbeta;
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
      if (!pdx) continue;
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
  if (need_g) sum_chunks(part_g, chunks, C, dgamma);
  if (need_b) sum_chunks(part_b, chunks, C, dbeta);
}

template <class T>
void rms_norm_forward(POLYAK_KERNEL_ISA_TAG, const T* px, const T* pg, T* py, T* pr, int64_t R,
                      int64_t C, T eps) {
  using namespace POLYAK_ISA_NAMESPACE;
  parallel_for(R, 4 * C, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      ConstVec<T> xr(px + r * C, C);
      Vec<T> yr(py + r * C, C);
      pr[r] = std::sqrt(xr.square().mean());
      const T s = T(1) / (pr[r] + eps);
      if (pg)
        yr = xr * s * ConstVec<T>(pg, C);
      else
        yr = xr * s;
    }
  });
}

template <class T>
void rms_norm_backward(POLYAK_KERNEL_ISA_TAG, const T* px, const T* pdy, const T* pr, const T* pg,
                       T* pdx, T* dgamma, int64_t R, int64_t C, T eps) {
  using namespace POLYAK_ISA_NAMESPACE;
  const bool need_g = dgamma;
  const int64_t chunks = need_g ? std::min<int64_t>(R, num_threads()) : R;
  std::vector<T> part_g(need_g ? static_cast<size_t>(chunks * C) : 0, T(0));
  const T inv_c = T(1) / static_cast<T>(std::max<int64_t>(C, 1));
  for_row_chunks(R, chunks, 8 * C, [&](int64_t begin, int64_t end, int64_t chunk) {
    for (int64_t r = begin; r < end; ++r) {
      ConstVec<T> xr(px + r * C, C), gr(pdy + r * C, C);
      const T s = T(1) / (pr[r] + eps);
      if (need_g) Vec<T>(part_g.data() + chunk * C, C) += gr * xr * s;
      if (!pdx) continue;
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
  if (need_g) sum_chunks(part_g, chunks, C, dgamma);
}

#define POLYAK_INSTANTIATE(T)                                                                      \
  template void layer_norm_forward<T>(POLYAK_KERNEL_ISA_TAG, const T*, const T*, const T*, T*, T*, \
                                      T*, int64_t, int64_t, T);                                    \
  template void layer_norm_backward<T>(POLYAK_KERNEL_ISA_TAG, const T*, const T*, const T*,        \
                                       const T*, const T*, T*, T*, T*, int64_t, int64_t);          \
  template void rms_norm_forward<T>(POLYAK_KERNEL_ISA_TAG, const T*, const T*, T*, T*, int64_t,    \
                                    int64_t, T);                                                   \
  template void rms_norm_backward<T>(POLYAK_KERNEL_ISA_TAG, const T*, const T*, const T*,          \
                                     const T*, T*, T*, int64_t, int64_t, T);
POLYAK_INSTANTIATE(float)
POLYAK_INSTANTIATE(double)
#undef POLYAK_INSTANTIATE

}  // namespace polyak::detail
