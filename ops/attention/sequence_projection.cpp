// Linformer's projection along the sequence axis (docs/math.md §7; Wang et al. 2020, eq. 7).
//
// Dimension legend: B batch, H heads, N positions, D width, k projected length, M columns
// of e (N ≤ M). With E_N = e[:, 0:N] [k,N] (a strided view, no copy):
//
//   y_bh = E_N x_bh                                          [B,H,k,D]
//
// Backward:
//   dx_bh      = E_Nᵀ dy_bh                                  [B,H,N,D]
//   de[:, 0:N] = Σ_{b,h} dy_bh x_bhᵀ,   de[:, N:M] = 0        [k,M]
// Every product is an Eigen GEMM per (b, h). The forward and dx run (b, h) pairs in
// parallel; de is cut by its rows, each task summing every (b, h) into its own rows, so
// no partial sums need adding afterwards.
// Saved for backward: e when x needs a gradient, x when e does.
// On a device (cuda/kernels/softmax_attention.h): batched gemms on a dense copy of E_N, and
// de as one gemm over the (b, h) pairs laid side by side, dy' [k, BH·D] · x'ᵀ [BH·D, N].
#include "polyak/ops/attention/sequence_projection.h"

#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/kernels_attention.h"
#include "polyak/core/threads.h"
#include "polyak/ops/attention/eigen_maps.h"

namespace polyak {
namespace {

using detail::ConstMatrixMap;
using detail::Matrix;
using detail::MatrixMap;

// The first N columns of e [k, M]: rows M apart.
template <class T>
using ConstColumnsMap = Eigen::Map<const Matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ColumnsMap = Eigen::Map<Matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

struct ProjectionDims {
  int64_t BH = 0, N = 0, D = 0, k = 0, M = 0;
};

template <class T>
void projection_forward(const ProjectionDims& d, const T* x, const T* e, T* y) {
  const ConstColumnsMap<T> E(e, d.k, d.N, Eigen::OuterStride<>(d.M));
  parallel_for(d.BH, 2 * d.k * d.N * d.D + 1, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h)
      MatrixMap<T>(y + h * d.k * d.D, d.k, d.D).noalias() =
          E * ConstMatrixMap<T>(x + h * d.N * d.D, d.N, d.D);
  });
}

// Writes (overwrites) dx [BH,N,D].
template <class T>
void projection_dx(const ProjectionDims& d, const T* e, const T* dy, T* dx) {
  const ConstColumnsMap<T> E(e, d.k, d.N, Eigen::OuterStride<>(d.M));
  parallel_for(d.BH, 2 * d.k * d.N * d.D + 1, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h)
      MatrixMap<T>(dx + h * d.N * d.D, d.N, d.D).noalias() =
          E.transpose() * ConstMatrixMap<T>(dy + h * d.k * d.D, d.k, d.D);
  });
}

// Writes (overwrites) de [k,M].
template <class T>
void projection_de(const ProjectionDims& d, const T* x, const T* dy, T* de) {
  parallel_for(d.k, 2 * d.BH * d.N * d.D + d.M, [&](int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    ColumnsMap<T> dE(de + r0 * d.M, rows, d.N, Eigen::OuterStride<>(d.M));
    dE.setZero();
    for (int64_t h = 0; h < d.BH; ++h)
      dE.noalias() += ConstMatrixMap<T>(dy + (h * d.k + r0) * d.D, rows, d.D) *
                      ConstMatrixMap<T>(x + h * d.N * d.D, d.N, d.D).transpose();
    for (int64_t r = r0; r < r1; ++r) std::fill(de + r * d.M + d.N, de + (r + 1) * d.M, T(0));
  });
}

}  // namespace

Tensor sequence_projection(const Tensor& x, const Tensor& e) {
  constexpr const char* fn = "sequence_projection";
  check_defined(fn, "x", x);
  check_defined(fn, "e", e);
  check_rank(fn, "x", x, 4, "[B,H,N,D]");
  check_rank(fn, "e", e, 2, "[k,M]");
  check_same_dtype(fn, "x", x, "e", e);
  check_same_device(fn, "x", x, "e", e);
  const int64_t B = x.size(0), H = x.size(1), N = x.size(2), D = x.size(3);
  const int64_t k = e.size(0), M = e.size(1);
  POLYAK_CHECK(k > 0, fn, ": e has shape ", e.shape(),
               ", expected [k,M] with k ≥ 1 projected positions");
  POLYAK_CHECK(N <= M, fn, ": x has shape ", x.shape(), " with N = ", N,
               " positions, expected N ≤ M = ", M, " (the columns of e ", e.shape(), ")");

  const ProjectionDims d{B * H, N, D, k, M};
  const DType dtype = x.dtype();
  // dx needs e, de needs x: keep only what a requested gradient reads.
  const Tensor x_saved = e.requires_grad() ? x : Tensor();
  const Tensor e_saved = x.requires_grad() ? e : Tensor();
  if (!x.device().is_cpu()) {
    const Device dev = x.device();
    Tensor y = Tensor::empty({B, H, k, D}, DType::f32, dev);
    device_kernel(fn, "x", x, &DeviceBackend::attention, &AttentionKernels::sequence_projection)(
        x, e, y);
    record(y, "SequenceProjectionBackward", {x, e},
           [x_saved, e_saved, x_shape = x.shape(), e_shape = e.shape()](const Tensor& dy) {
             Tensor dx =
                 e_saved.defined() ? Tensor::empty(x_shape, DType::f32, dy.device()) : Tensor();
             Tensor de =
                 x_saved.defined() ? Tensor::empty(e_shape, DType::f32, dy.device()) : Tensor();
             device_kernel("SequenceProjectionBackward", "gradient", dy, &DeviceBackend::attention,
                           &AttentionKernels::sequence_projection_backward)(x_saved, e_saved, dy,
                                                                            dx, de);
             return std::vector<Tensor>{dx, de};
           });
    return y;
  }
  Tensor y = Tensor::empty({B, H, k, D}, dtype);
  dispatch(dtype,
           [&]<class T>() { projection_forward<T>(d, x.data<T>(), e.data<T>(), y.data<T>()); });

  record(y, "SequenceProjectionBackward", {x, e},
         [x_saved, e_saved, d, dtype, x_shape = x.shape(),
          e_shape = e.shape()](const Tensor& dy) -> std::vector<Tensor> {
           Tensor dx, de;
           dispatch(dtype, [&]<class T>() {
             if (e_saved.defined()) {
               dx = Tensor::empty(x_shape, dtype);
               projection_dx<T>(d, e_saved.data<T>(), dy.data<T>(), dx.data<T>());
             }
             if (x_saved.defined()) {
               de = Tensor::empty(e_shape, dtype);
               projection_de<T>(d, x_saved.data<T>(), dy.data<T>(), de.data<T>());
             }
           });
           return {dx, de};
         });
  return y;
}

}  // namespace polyak
