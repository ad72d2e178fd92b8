// Non-causal linear attention. docs/math.md §2; Katharopoulos et al. 2020, eq. 5–6.
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
// Per (b, h) every product is a GEMM (Eigen); the backward walks query rows in blocks.
#include "polyak/ops/attention/linear_attention.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/threads.h"
#include "polyak/ops/attention/attention_checks.h"
#include "polyak/ops/attention/causal_sweep.h"
#include "polyak/ops/attention/eigen_maps.h"

namespace polyak {
namespace {

using detail::AttentionDims;

using detail::ConstMatrixMap;
using detail::ConstVectorMap;
using detail::Matrix;
using detail::MatrixMap;
using detail::Vector;
using detail::VectorMap;

// Query rows per block in the backward: bounds its [rows, Dv] scratch.
constexpr int64_t kRowBlock = 256;

// Per (b, h): S = kᵀ v, z = kᵀ 1; y = (q S) ⊘ (q z + ε) row by row.
template <class T>
void linear_forward_head(ConstMatrixMap<T> q, ConstMatrixMap<T> k, ConstMatrixMap<T> v, T eps,
                         MatrixMap<T> y, VectorMap<T> den) {
  const Matrix<T> S = k.transpose() * v;
  const Vector<T> z = k.colwise().sum().transpose();
  den.noalias() = q * z;
  den.array() += eps;
  y.noalias() = q * S;
  y.array().colwise() /= den.array();
}

// Per (b, h): writes (overwrites) dq [N,D], dk [M,D], dv [M,Dv].
template <class T>
void linear_backward_head(ConstMatrixMap<T> q, ConstMatrixMap<T> k, ConstMatrixMap<T> v,
                          ConstVectorMap<T> den, ConstMatrixMap<T> dy, MatrixMap<T> dq,
                          MatrixMap<T> dk, MatrixMap<T> dv) {
  const int64_t N = q.rows();
  const Matrix<T> S = k.transpose() * v;
  const Vector<T> z = k.colwise().sum().transpose();
  Matrix<T> dS = Matrix<T>::Zero(S.rows(), S.cols());
  Vector<T> dz = Vector<T>::Zero(z.size());
  Matrix<T> o, dout;
  Vector<T> dden;
  for (int64_t r0 = 0; r0 < N; r0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, N - r0);
    const auto qb = q.middleRows(r0, rows);
    const auto denb = den.segment(r0, rows).array();
    o.noalias() = qb * S;                                     // o_i = Sᵀ q_i
    dout = dy.middleRows(r0, rows).array().colwise() / denb;  // do_i = dy_i / den_i
    dden = -(dout.array() * o.array()).rowwise().sum() / denb;
    dq.middleRows(r0, rows).noalias() = dout * S.transpose() + dden * z.transpose();
    dS.noalias() += qb.transpose() * dout;
    dz.noalias() += qb.transpose() * dden;
  }
  dk.noalias() = v * dS.transpose();
  dk.rowwise() += dz.transpose();
  dv.noalias() = k * dS;
}

template <class T>
void linear_forward(const AttentionDims& d, const T* q, const T* k, const T* v, T* y, T* den,
                    T eps) {
  const int64_t N = d.N, M = d.M, D = d.D, Dv = d.Dv;
  parallel_for(d.B * d.H, (N + M) * D * Dv + 1, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      linear_forward_head<T>(ConstMatrixMap<T>(q + h * N * D, N, D),
                             ConstMatrixMap<T>(k + h * M * D, M, D),
                             ConstMatrixMap<T>(v + h * M * Dv, M, Dv), eps,
                             MatrixMap<T>(y + h * N * Dv, N, Dv), VectorMap<T>(den + h * N, N));
    }
  });
}

template <class T>
void linear_backward(const AttentionDims& d, const T* q, const T* k, const T* v, const T* den,
                     const T* dy, T* dq, T* dk, T* dv) {
  const int64_t N = d.N, M = d.M, D = d.D, Dv = d.Dv;
  parallel_for(d.B * d.H, 3 * (N + M) * D * Dv + 1, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      linear_backward_head<T>(
          ConstMatrixMap<T>(q + h * N * D, N, D), ConstMatrixMap<T>(k + h * M * D, M, D),
          ConstMatrixMap<T>(v + h * M * Dv, M, Dv), ConstVectorMap<T>(den + h * N, N),
          ConstMatrixMap<T>(dy + h * N * Dv, N, Dv), MatrixMap<T>(dq + h * N * D, N, D),
          MatrixMap<T>(dk + h * M * D, M, D), MatrixMap<T>(dv + h * M * Dv, M, Dv));
    }
  });
}

}  // namespace

namespace detail {

// On a device the same formulas, with ω and μ folded in: S = (ω K)ᵀ V, z = Kᵀ μ, and the
// backward's dk = ω (V dSᵀ) + μ dz, dv = (ω K) dS (cuda/kernels/attention.h).
Tensor linear_attention_on_device(const char* fn, const char* node, const AttentionDims& d,
                                  const Tensor& q, const Tensor& k, const Tensor& v,
                                  const LinearAttentionArgs& args) {
  const auto kernel =
      device_kernel(fn, "q", q, &DeviceBackend::attention, &AttentionKernels::linear_attention);
  const Device dev = q.device();
  Tensor y = Tensor::empty({d.B, d.H, d.N, d.Dv}, DType::f32, dev);
  Tensor den = Tensor::empty({d.B, d.H, d.N}, DType::f32, dev);
  kernel(q, k, v, args, y, den);
  record(y, node, {q, k, v}, [q, k, v, y_saved = y.detach(), den, args, node](const Tensor& dy) {
    Tensor dq = Tensor::empty(q.shape(), DType::f32, dy.device());
    Tensor dk = Tensor::empty(k.shape(), DType::f32, dy.device());
    Tensor dv = Tensor::empty(v.shape(), DType::f32, dy.device());
    device_kernel(node, "gradient", dy, &DeviceBackend::attention,
                  &AttentionKernels::linear_attention_backward)(q, k, v, y_saved, den, dy, args, dq,
                                                                dk, dv);
    return std::vector<Tensor>{dq, dk, dv};
  });
  return y;
}

}  // namespace detail

Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, double eps) {
  constexpr const char* fn = "linear_attention";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/false,
                                                         /*on_device=*/true);
  detail::check_eps(fn, eps);
  if (!q.device().is_cpu()) {
    LinearAttentionArgs args;
    args.eps = static_cast<float>(eps);
    return detail::linear_attention_on_device(fn, "LinearAttentionBackward", d, q, k, v, args);
  }
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
