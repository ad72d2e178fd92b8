// Softmax attention, the O(N²) baseline. MATH.md §1; Vaswani et al. 2017, eq. 1.
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
// Masked entries have P_ij = 0, so they drop out of every sum; the loops skip them.
// Saved for backward: q, k, v and P [B,H,N,M].
#include "ops/attention/softmax_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/autograd.h"
#include "core/threads.h"
#include "ops/attention/attention_checks.h"
#include "ops/attention/vec.h"

namespace polyak {
namespace {

using detail::AttentionDims;
using detail::axpy;
using detail::dot;

// Number of keys row i attends to.
inline int64_t row_length(bool causal, int64_t i, int64_t M) {
  return causal ? i + 1 : M;
}

template <class T>
void softmax_forward(const AttentionDims& d, bool causal, const T* q, const T* k, const T* v, T* y,
                     T* P) {
  const int64_t N = d.N, M = d.M, D = d.D, Dv = d.Dv;
  const T c = D > 0 ? T(1) / std::sqrt(static_cast<T>(D)) : T(1);
  parallel_for(d.B * d.H, N * M * (D + Dv) + 1, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      const T* kh = k + h * M * D;
      const T* vh = v + h * M * Dv;
      for (int64_t i = 0; i < N; ++i) {
        const T* qi = q + (h * N + i) * D;
        T* Pi = P + (h * N + i) * M;
        T* yi = y + (h * N + i) * Dv;
        const int64_t L = row_length(causal, i, M);
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < L; ++j) {
          Pi[j] = c * dot(D, qi, kh + j * D);
          mx = std::max(mx, Pi[j]);
        }
        T total = T(0);
        for (int64_t j = 0; j < L; ++j) {
          Pi[j] = std::exp(Pi[j] - mx);
          total += Pi[j];
        }
        const T inv = L > 0 ? T(1) / total : T(0);
        std::fill_n(yi, Dv, T(0));
        for (int64_t j = 0; j < L; ++j) {
          Pi[j] *= inv;
          axpy(Dv, Pi[j], vh + j * Dv, yi);
        }
        std::fill(Pi + L, Pi + M, T(0));
      }
    }
  });
}

// Writes (overwrites) dq [B,H,N,D], dk [B,H,M,D], dv [B,H,M,Dv].
template <class T>
void softmax_backward(const AttentionDims& d, bool causal, const T* q, const T* k, const T* v,
                      const T* P, const T* dy, T* dq, T* dk, T* dv) {
  const int64_t N = d.N, M = d.M, D = d.D, Dv = d.Dv;
  const T c = D > 0 ? T(1) / std::sqrt(static_cast<T>(D)) : T(1);
  parallel_for(d.B * d.H, 2 * N * M * (D + Dv) + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> dP(static_cast<size_t>(M));
    for (int64_t h = begin; h < end; ++h) {
      const T* kh = k + h * M * D;
      const T* vh = v + h * M * Dv;
      T* dkh = dk + h * M * D;
      T* dvh = dv + h * M * Dv;
      std::fill_n(dkh, M * D, T(0));
      std::fill_n(dvh, M * Dv, T(0));
      for (int64_t i = 0; i < N; ++i) {
        const T* qi = q + (h * N + i) * D;
        const T* Pi = P + (h * N + i) * M;
        const T* dyi = dy + (h * N + i) * Dv;
        T* dqi = dq + (h * N + i) * D;
        const int64_t L = row_length(causal, i, M);
        T rowsum = T(0);
        for (int64_t j = 0; j < L; ++j) {
          dP[static_cast<size_t>(j)] = dot(Dv, dyi, vh + j * Dv);
          rowsum += dP[static_cast<size_t>(j)] * Pi[j];
        }
        std::fill_n(dqi, D, T(0));
        for (int64_t j = 0; j < L; ++j) {
          const T dS = Pi[j] * (dP[static_cast<size_t>(j)] - rowsum);
          axpy(D, c * dS, kh + j * D, dqi);
          axpy(D, c * dS, qi, dkh + j * D);
          axpy(Dv, Pi[j], dyi, dvh + j * Dv);
        }
      }
    }
  });
}

}  // namespace

Tensor softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  constexpr const char* fn = "softmax_attention";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/causal);
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

}  // namespace polyak
