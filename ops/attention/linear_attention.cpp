// Non-causal linear attention. MATH.md §2; Katharopoulos et al. 2020, eq. 5–6.
// (The causal forms live in causal_linear_attention.cpp.)
//
// Dimension legend: B batch, H heads, N query positions, M key positions, D query/key
// width, Dv value width. q [B,H,N,D], k [B,H,M,D], v [B,H,M,Dv] → y [B,H,N,Dv].
// Per (b, h):
//
//   S = Σ_j k_j v_jᵀ                  [D,Dv]
//   z = Σ_j k_j                       [D]
//   o_i = Sᵀ q_i                      [Dv]
//   den_i = q_iᵀ z + ε                []      saved: O(N)
//   y_i = o_i / den_i                 [Dv]
//
// Backward. Given dy_i:
//   do_i   = dy_i / den_i,   dden_i = −(dy_i · o_i) / den_i²
//   dq_i = S do_i + dden_i z                               [B,H,N,D]
//   dS   = Σ_i q_i do_iᵀ   [D,Dv],   dz = Σ_i dden_i q_i   [D]
//   dk_j = dS v_j + dz                                     [B,H,M,D]
//   dv_j = dSᵀ k_j                                         [B,H,M,Dv]
// Saved for backward: q, k, v and den; S and z are rebuilt (O(M·D·Dv), as the forward).
#include "ops/attention/linear_attention.h"

#include <algorithm>
#include <cmath>
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

// S = Σ_j k_j v_jᵀ, z = Σ_j k_j over M positions (overwrites S [D·Dv], z [D]).
template <class T>
void build_state(const T* k, const T* v, int64_t M, int64_t D, int64_t Dv, T* S, T* z) {
  std::fill_n(S, D * Dv, T(0));
  std::fill_n(z, D, T(0));
  for (int64_t j = 0; j < M; ++j) {
    const T* kj = k + j * D;
    const T* vj = v + j * Dv;
    for (int64_t a = 0; a < D; ++a) axpy(Dv, kj[a], vj, S + a * Dv);
    axpy(D, T(1), kj, z);
  }
}

// o = Sᵀ q   (overwrites o [Dv])
template <class T>
void state_times(const T* S, const T* q, int64_t D, int64_t Dv, T* o) {
  std::fill_n(o, Dv, T(0));
  for (int64_t a = 0; a < D; ++a) axpy(Dv, q[a], S + a * Dv, o);
}

template <class T>
void linear_forward(const AttentionDims& d, const T* q, const T* k, const T* v, T* y, T* den,
                    T eps) {
  const int64_t N = d.N, M = d.M, D = d.D, Dv = d.Dv;
  parallel_for(d.B * d.H, (N + M) * D * Dv + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> S(static_cast<size_t>(D * Dv)), z(static_cast<size_t>(D));
    for (int64_t h = begin; h < end; ++h) {
      build_state(k + h * M * D, v + h * M * Dv, M, D, Dv, S.data(), z.data());
      for (int64_t i = 0; i < N; ++i) {
        const T* qi = q + (h * N + i) * D;
        T* yi = y + (h * N + i) * Dv;
        state_times(S.data(), qi, D, Dv, yi);
        const T di = dot(D, qi, z.data()) + eps;
        den[h * N + i] = di;
        detail::scale(Dv, T(1) / di, yi);
      }
    }
  });
}

// Writes (overwrites) dq [B,H,N,D], dk [B,H,M,D], dv [B,H,M,Dv].
template <class T>
void linear_backward(const AttentionDims& d, const T* q, const T* k, const T* v, const T* den,
                     const T* dy, T* dq, T* dk, T* dv) {
  const int64_t N = d.N, M = d.M, D = d.D, Dv = d.Dv;
  parallel_for(d.B * d.H, 2 * (N + M) * D * Dv + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> S(static_cast<size_t>(D * Dv)), z(static_cast<size_t>(D));
    std::vector<T> dS(static_cast<size_t>(D * Dv)), dz(static_cast<size_t>(D));
    std::vector<T> o(static_cast<size_t>(Dv)), g(static_cast<size_t>(Dv));
    for (int64_t h = begin; h < end; ++h) {
      build_state(k + h * M * D, v + h * M * Dv, M, D, Dv, S.data(), z.data());
      std::fill(dS.begin(), dS.end(), T(0));
      std::fill(dz.begin(), dz.end(), T(0));
      for (int64_t i = 0; i < N; ++i) {
        const T* qi = q + (h * N + i) * D;
        const T* dyi = dy + (h * N + i) * Dv;
        T* dqi = dq + (h * N + i) * D;
        state_times(S.data(), qi, D, Dv, o.data());
        const T inv = T(1) / den[h * N + i];
        for (int64_t c = 0; c < Dv; ++c) g[static_cast<size_t>(c)] = dyi[c] * inv;  // do_i
        const T ddi = -dot(Dv, dyi, o.data()) * inv * inv;
        for (int64_t a = 0; a < D; ++a) {
          dqi[a] = dot(Dv, S.data() + a * Dv, g.data()) + ddi * z[static_cast<size_t>(a)];
          axpy(Dv, qi[a], g.data(), dS.data() + a * Dv);  // dS += q_i do_iᵀ
        }
        axpy(D, ddi, qi, dz.data());
      }
      for (int64_t j = 0; j < M; ++j) {
        const T* kj = k + (h * M + j) * D;
        const T* vj = v + (h * M + j) * Dv;
        T* dkj = dk + (h * M + j) * D;
        T* dvj = dv + (h * M + j) * Dv;
        std::fill_n(dvj, Dv, T(0));
        for (int64_t a = 0; a < D; ++a) {
          const T* dSa = dS.data() + a * Dv;
          dkj[a] = dot(Dv, dSa, vj) + dz[static_cast<size_t>(a)];  // dk_j = dS v_j + dz
          axpy(Dv, kj[a], dSa, dvj);                               // dv_j = dSᵀ k_j
        }
      }
    }
  });
}

}  // namespace

Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, double eps) {
  constexpr const char* fn = "linear_attention";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/false);
  POLYAK_CHECK(std::isfinite(eps) && eps >= 0, fn, ": eps is ", eps,
               ", expected a finite value >= 0");
  const DType dtype = q.dtype();
  Tensor y = Tensor::empty({d.B, d.H, d.N, d.Dv}, dtype);
  Tensor den = Tensor::empty({d.B, d.H, d.N}, dtype);
  dispatch(dtype, [&]<class T>() {
    linear_forward<T>(d, q.data<T>(), k.data<T>(), v.data<T>(), y.data<T>(), den.data<T>(),
                      static_cast<T>(eps));
  });

  record(y, "LinearAttentionBackward", {q, k, v},
         [q, k, v, den, d](const Tensor& dy) -> std::vector<Tensor> {
           const DType dt = q.dtype();
           Tensor dq = Tensor::empty(q.shape(), dt);
           Tensor dk = Tensor::empty(k.shape(), dt);
           Tensor dv = Tensor::empty(v.shape(), dt);
           dispatch(dt, [&]<class T>() {
             linear_backward<T>(d, q.data<T>(), k.data<T>(), v.data<T>(), den.data<T>(),
                                dy.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>());
           });
           return {dq, dk, dv};
         });
  return y;
}

}  // namespace polyak
