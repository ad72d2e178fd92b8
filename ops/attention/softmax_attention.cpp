// Softmax attention, the O(N²) baseline. docs/math.md §1; Vaswani et al. 2017, eq. 1.
//
// Dimension legend: B batch, H heads, N query positions, M key positions, D query/key
// width, Dv value width. q [B,H,N,D], k [B,H,M,D], v [B,H,M,Dv] → y [B,H,N,Dv]
// (causal: M = N). Per (b, h), with scale c = 1/√D:
//
//   S_ij = c · q_i·k_j                (−∞ where causal and j > i)     [N,M]
//   P_ij = exp(S_ij − max_j S_ij) / Σ_j exp(S_ij − max_j S_ij)        [N,M]  saved
//   y_i  = Σ_j P_ij v_j                                               [N,Dv]
//
// Backward. Given dy:
//   dv_j  = Σ_i P_ij dy_i                                   [B,H,M,Dv]
//   dP_ij = dy_i · v_j                                      [N,M]
//   dS_ij = P_ij (dP_ij − Σ_l dP_il P_il)     (softmax Jacobian, row by row)
//   dq_i  = c Σ_j dS_ij k_j                                 [B,H,N,D]
//   dk_j  = c Σ_i dS_ij q_i                                 [B,H,M,D]
// Masked entries have P_ij = 0, so they drop out of every sum. Per (b, h) the products run
// as GEMMs on blocks of query rows (causal blocks skip the keys no row of theirs sees).
// Saved for backward: q, k, v and P [B,H,N,M].
//
// The recurrent step (eq. 3) with a KV cache: append k, v to the cache; y = Σ_j p_j v_j,
// p_j = exp(q·k_j/√D − max) / Σ exp(…) over the filled rows. After i steps from an empty
// cache it equals row i of the causal op. No graph; the caches are written in place.
//
// On a device (cuda/kernels/softmax_attention.h) the same products run tiled, flash
// attention's way: the forward saves each row's log-sum-exp lse_i instead of P, and the
// backward recomputes P_ij = exp(c q_i·k_j − lse_i) block by block, with
// Σ_l dP_il P_il = dy_i·y_i. Saved: q, k, v, y and lse [B,H,N]; never [N, M].
#include "polyak/ops/attention/softmax_attention.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/kernels_attention.h"
#include "polyak/core/threads.h"
#include "polyak/ops/attention/attention_checks.h"
#include "polyak/ops/attention/eigen_maps.h"
#include "polyak/ops/attention/vec.h"

namespace polyak {
namespace {

using detail::AttentionDims;
using detail::axpy;
using detail::dot;
using detail::StepDims;

using detail::ConstMatrixMap;
using detail::Matrix;
using detail::MatrixMap;

// Rows per block: the GEMMs run on [rows, L] blocks, where L is the number of keys the
// block's last row sees (L = r1 when causal, so the masked upper triangle is skipped).
constexpr int64_t kRowBlock = 64;

inline int64_t keys_seen(bool causal, int64_t r1, int64_t M) {
  return causal ? r1 : M;
}

// One (b, h): P [N,M] and y [N,Dv] from q [N,D], k [M,D], v [M,Dv].
template <class T>
void softmax_forward_head(bool causal, T scale, ConstMatrixMap<T> q, ConstMatrixMap<T> k,
                          ConstMatrixMap<T> v, MatrixMap<T> P, MatrixMap<T> y) {
  const int64_t N = q.rows(), M = k.rows();
  for (int64_t r0 = 0; r0 < N; r0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, N - r0), L = keys_seen(causal, r0 + rows, M);
    auto Pb = P.block(r0, 0, rows, L);
    Pb.noalias() = scale * q.middleRows(r0, rows) * k.topRows(L).transpose();  // S
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t seen = causal ? r0 + r + 1 : M;  // row i sees keys j ≤ i
      auto row = P.row(r0 + r);
      auto live = row.head(seen).array();
      if (seen > 0) {
        live = (live - live.maxCoeff()).exp();
        live /= live.sum();
      }
      row.tail(M - seen).setZero();
    }
    y.middleRows(r0, rows).noalias() = Pb * v.topRows(L);
  }
}

// One (b, h): writes (overwrites) dq [N,D], dk [M,D], dv [M,Dv]. dP is [kRowBlock, M]
// scratch.
template <class T>
void softmax_backward_head(bool causal, T scale, ConstMatrixMap<T> q, ConstMatrixMap<T> k,
                           ConstMatrixMap<T> v, ConstMatrixMap<T> P, ConstMatrixMap<T> dy,
                           MatrixMap<T> dq, MatrixMap<T> dk, MatrixMap<T> dv, Matrix<T>& dP) {
  const int64_t N = q.rows(), M = k.rows();
  dk.setZero();
  dv.setZero();
  for (int64_t r0 = 0; r0 < N; r0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, N - r0), L = keys_seen(causal, r0 + rows, M);
    const auto Pb = P.block(r0, 0, rows, L);
    const auto dyb = dy.middleRows(r0, rows);
    dv.topRows(L).noalias() += Pb.transpose() * dyb;
    auto dS = dP.topLeftCorner(rows, L);
    dS.noalias() = dyb * v.topRows(L).transpose();  // dP
    for (int64_t r = 0; r < rows; ++r) {
      const T rowsum = (dS.row(r).array() * Pb.row(r).array()).sum();
      dS.row(r).array() = Pb.row(r).array() * (dS.row(r).array() - rowsum);  // masked: P = 0
    }
    dq.middleRows(r0, rows).noalias() = scale * dS * k.topRows(L);
    dk.topRows(L).noalias() += scale * dS.transpose() * q.middleRows(r0, rows);
  }
}

template <class T>
T attention_scale(int64_t D) {
  return D > 0 ? T(1) / std::sqrt(static_cast<T>(D)) : T(1);
}

template <class T>
void softmax_forward(const AttentionDims& d, bool causal, const T* q, const T* k, const T* v, T* y,
                     T* P) {
  const int64_t N = d.N, M = d.M, D = d.D, Dv = d.Dv;
  parallel_for(d.B * d.H, N * M * (D + Dv) + 1, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      softmax_forward_head<T>(
          causal, attention_scale<T>(D), ConstMatrixMap<T>(q + h * N * D, N, D),
          ConstMatrixMap<T>(k + h * M * D, M, D), ConstMatrixMap<T>(v + h * M * Dv, M, Dv),
          MatrixMap<T>(P + h * N * M, N, M), MatrixMap<T>(y + h * N * Dv, N, Dv));
    }
  });
}

template <class T>
void softmax_backward(const AttentionDims& d, bool causal, const T* q, const T* k, const T* v,
                      const T* P, const T* dy, T* dq, T* dk, T* dv) {
  const int64_t N = d.N, M = d.M, D = d.D, Dv = d.Dv;
  parallel_for(d.B * d.H, 2 * N * M * (D + Dv) + 1, [&](int64_t begin, int64_t end) {
    Matrix<T> dP(std::min(kRowBlock, N), M);
    for (int64_t h = begin; h < end; ++h) {
      softmax_backward_head<T>(
          causal, attention_scale<T>(D), ConstMatrixMap<T>(q + h * N * D, N, D),
          ConstMatrixMap<T>(k + h * M * D, M, D), ConstMatrixMap<T>(v + h * M * Dv, M, Dv),
          ConstMatrixMap<T>(P + h * N * M, N, M), ConstMatrixMap<T>(dy + h * N * Dv, N, Dv),
          MatrixMap<T>(dq + h * N * D, N, D), MatrixMap<T>(dk + h * M * D, M, D),
          MatrixMap<T>(dv + h * M * Dv, M, Dv), dP);
    }
  });
}

// ---- the recurrent step ----------------------------------------------------------------

// Capacity of a KV cache created by the first step.
constexpr int64_t kInitialCacheCapacity = 64;

// One step per (b, h) over the `length` filled rows of the caches (the new row included).
template <class T>
void softmax_step(const StepDims& d, int64_t C, int64_t length, const T* q, const T* kc,
                  const T* vc, T* y) {
  const int64_t D = d.D, Dv = d.Dv;
  const T scale = D > 0 ? T(1) / std::sqrt(static_cast<T>(D)) : T(1);
  parallel_for(d.B * d.H, length * (D + Dv) + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> p(static_cast<size_t>(length));
    for (int64_t h = begin; h < end; ++h) {
      const T* qh = q + h * D;
      const T* kh = kc + h * C * D;
      const T* vh = vc + h * C * Dv;
      T* yh = y + h * Dv;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < length; ++j) {
        p[static_cast<size_t>(j)] = scale * dot(D, qh, kh + j * D);
        mx = std::max(mx, p[static_cast<size_t>(j)]);
      }
      T total = T(0);
      for (int64_t j = 0; j < length; ++j) {
        p[static_cast<size_t>(j)] = std::exp(p[static_cast<size_t>(j)] - mx);
        total += p[static_cast<size_t>(j)];
      }
      std::fill_n(yh, Dv, T(0));
      for (int64_t j = 0; j < length; ++j)
        axpy(Dv, p[static_cast<size_t>(j)] / total, vh + j * Dv, yh);
    }
  });
}

Tensor softmax_attention_on_device(const char* fn, const AttentionDims& d, const Tensor& q,
                                   const Tensor& k, const Tensor& v, bool causal) {
  const auto kernel =
      device_kernel(fn, "q", q, &DeviceBackend::attention, &AttentionKernels::softmax_attention);
  const Device dev = q.device();
  Tensor y = Tensor::empty({d.B, d.H, d.N, d.Dv}, DType::f32, dev);
  Tensor lse = Tensor::empty({d.B, d.H, d.N}, DType::f32, dev);
  kernel(q, k, v, causal, y, lse);
  const char* node = causal ? "CausalSoftmaxAttentionBackward" : "SoftmaxAttentionBackward";
  record(y, node, {q, k, v}, [q, k, v, y_saved = y.detach(), lse, causal, node](const Tensor& dy) {
    Tensor dq = Tensor::empty(q.shape(), DType::f32, dy.device());
    Tensor dk = Tensor::empty(k.shape(), DType::f32, dy.device());
    Tensor dv = Tensor::empty(v.shape(), DType::f32, dy.device());
    device_kernel(node, "gradient", dy, &DeviceBackend::attention,
                  &AttentionKernels::softmax_attention_backward)(q, k, v, y_saved, lse, dy, causal,
                                                                 dq, dk, dv);
    return std::vector<Tensor>{dq, dk, dv};
  });
  return y;
}

}  // namespace

Tensor softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  constexpr const char* fn = "softmax_attention";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/causal,
                                                         /*on_device=*/true);
  if (!q.device().is_cpu()) return softmax_attention_on_device(fn, d, q, k, v, causal);
  const DType dtype = q.dtype();
  Tensor y = Tensor::empty({d.B, d.H, d.N, d.Dv}, dtype);
  Tensor P = Tensor::empty({d.B, d.H, d.N, d.M}, dtype);
  dispatch(dtype, [&]<class T>() {
    softmax_forward<T>(d, causal, q.data<T>(), k.data<T>(), v.data<T>(), y.data<T>(), P.data<T>());
  });

  record(y, causal ? "CausalSoftmaxAttentionBackward" : "SoftmaxAttentionBackward", {q, k, v},
         [q, k, v, P, d, causal](const Tensor& dy) -> std::vector<Tensor> {
           const DType dt = q.dtype();
           Tensor dq = Tensor::empty(q.shape(), dt);
           Tensor dk = Tensor::empty(k.shape(), dt);
           Tensor dv = Tensor::empty(v.shape(), dt);
           dispatch(dt, [&]<class T>() {
             softmax_backward<T>(d, causal, q.data<T>(), k.data<T>(), v.data<T>(), P.data<T>(),
                                 dy.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>());
           });
           return {dq, dk, dv};
         });
  return y;
}

Tensor softmax_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& k_cache,
                              Tensor& v_cache, int64_t& length) {
  constexpr const char* fn = "softmax_attention_step";
  const StepDims d = detail::check_step_inputs(fn, q, k, v, /*on_device=*/true);
  const DType dtype = q.dtype();
  const Device dev = q.device();
  const auto device_step = dev.is_cpu() ? nullptr
                                        : device_kernel(fn, "q", q, &DeviceBackend::attention,
                                                        &AttentionKernels::softmax_attention_step);
  POLYAK_CHECK(k_cache.defined() == v_cache.defined(), fn, ": k_cache is ",
               k_cache.defined() ? "defined" : "undefined", " but v_cache is ",
               v_cache.defined() ? "defined" : "undefined", ", expected both or neither");
  if (!k_cache.defined()) {
    POLYAK_CHECK(length == 0, fn, ": length is ", length,
                 " with undefined caches, expected 0 (an empty cache)");
    k_cache = Tensor::zeros({d.B, d.H, kInitialCacheCapacity, d.D}, dtype, dev);
    v_cache = Tensor::zeros({d.B, d.H, kInitialCacheCapacity, d.Dv}, dtype, dev);
  }
  check_rank(fn, "k_cache", k_cache, 4, "[B,H,C,D]");
  check_rank(fn, "v_cache", v_cache, 4, "[B,H,C,Dv]");
  const int64_t C = k_cache.size(2);
  const Shape k_expected{d.B, d.H, C, d.D}, v_expected{d.B, d.H, C, d.Dv};
  POLYAK_CHECK(k_cache.shape() == k_expected, fn, ": k_cache has shape ", k_cache.shape(),
               ", expected [B,H,C,D] = ", k_expected, " matching q ", q.shape());
  POLYAK_CHECK(v_cache.shape() == v_expected, fn, ": v_cache has shape ", v_cache.shape(),
               ", expected [B,H,C,Dv] = ", v_expected, " matching k_cache in C and v in Dv");
  POLYAK_CHECK(k_cache.dtype() == dtype, fn, ": k_cache has dtype ", k_cache.dtype(), ", expected ",
               dtype, " (q's dtype)");
  POLYAK_CHECK(v_cache.dtype() == dtype, fn, ": v_cache has dtype ", v_cache.dtype(), ", expected ",
               dtype, " (q's dtype)");
  for (const Tensor* cache : {&k_cache, &v_cache})
    POLYAK_CHECK(cache->device() == dev, fn, ": ", cache == &k_cache ? "k_cache" : "v_cache",
                 " is on ", cache->device(), " but q is on ", dev, ", expected one device");
  POLYAK_CHECK(length >= 0 && length <= C, fn, ": length is ", length, ", expected in [0, ", C,
               "] (the cache capacity)");
  POLYAK_CHECK(!k_cache.shares_storage(v_cache), fn,
               ": k_cache and v_cache share storage, expected two distinct caches");

  detail::grow_when_full(k_cache, v_cache, length, kInitialCacheCapacity);
  const int64_t cap = k_cache.size(2);
  if (!dev.is_cpu()) {
    Tensor y = Tensor::empty({d.B, d.H, d.Dv}, DType::f32, dev);
    device_step(q, k, v, k_cache, v_cache, length, y);
    ++length;
    return y;
  }
  Tensor y = Tensor::empty({d.B, d.H, d.Dv}, dtype);
  dispatch(dtype, [&]<class T>() {
    T* kc = k_cache.data<T>();
    T* vc = v_cache.data<T>();
    const T* kp = k.data<T>();
    const T* vp = v.data<T>();
    for (int64_t h = 0; h < d.B * d.H; ++h) {
      std::copy_n(kp + h * d.D, d.D, kc + (h * cap + length) * d.D);
      std::copy_n(vp + h * d.Dv, d.Dv, vc + (h * cap + length) * d.Dv);
    }
    softmax_step<T>(d, cap, length + 1, q.data<T>(), kc, vc, y.data<T>());
  });
  ++length;
  return y;
}

}  // namespace polyak
