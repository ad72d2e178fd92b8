// Performer's FAVOR+ feature map and its orthogonal random features (docs/math.md §7;
// Choromanski et al. 2021, Lemma 1: positive random features; §2.4: orthogonal ones).
//
// Dimension legend: R rows (every leading axis of x folded), D width, m features.
// With c = D^{−1/4}, x' = c x and Ω [m, D]:
//
//   U = X Ωᵀ                                   [R,m]   one GEMM
//   y_rj = exp(c U_rj − c²‖x_r‖²/2 − ln(m)/2)  [R,m]   one fused pass (1/√m inside the exp)
//
// Backward. ∂y_rj/∂x_r = y_rj · c (ω_j − c x_r), so with G = c (dy ⊙ y)   [R,m]:
//   dx_r = Σ_j G_rj ω_j − c (Σ_j G_rj) x_r   →   dX = G Ω − c diag(G 1) X   [R,D]
// Ω is not differentiated (see favor.h). Saved for backward: x, Ω and y (the output,
// without its graph: no copy). A device runs the shape group's kernels
// (cuda/kernels/feature_maps.h): the two GEMMs and the same f32 passes.
//
// orthogonal_random_features: per block, G_b [D,D] standard normal; G_b = Q R (Householder,
// f64); Q ← Q diag(sign R_ii), which makes Q Haar-distributed on O(D); the block's rows are
// Q's columns (orthonormal), row r scaled by ‖n_r‖ for n_r ~ N(0, I_D) independent: a
// uniform direction times a χ_D length is an N(0, I_D) row.
#include "polyak/ops/attention/favor.h"

#include <Eigen/Core>
#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/kernels_shape.h"
#include "polyak/core/threads.h"
#include "polyak/ops/attention/eigen_maps.h"
#include "polyak/ops/gemm_kernel.h"

namespace polyak {
namespace {

using detail::ConstMatrixMap;
using detail::Matrix;
using detail::MatrixMap;

// Rows per task: one GEMM of [kRowBlock, D] × [D, m] and its elementwise pass.
constexpr int64_t kRowBlock = 128;

struct FavorDims {
  int64_t R = 0, D = 0, m = 0;
  int64_t blocks() const { return (R + kRowBlock - 1) / kRowBlock; }
};

// c [rows, n] = a [rows, k] · op(b), b stored [n, k] when trans_b, else [k, n]. f32 runs
// polyak's packed sgemm, as matmul does; f64 runs Eigen's.
template <class T>
void gemm_rows(const T* a, const T* b, bool trans_b, T* c, int64_t rows, int64_t n, int64_t k) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm(false, trans_b, rows, n, k, a, k, b, trans_b ? k : n, c, n, /*accumulate=*/false);
  } else {
    const ConstMatrixMap<T> A(a, rows, k);
    MatrixMap<T> C(c, rows, n);
    if (trans_b)
      C.noalias() = A * ConstMatrixMap<T>(b, n, k).transpose();
    else
      C.noalias() = A * ConstMatrixMap<T>(b, k, n);
  }
}

template <class T>
T input_scale(int64_t D) {  // c = D^{−1/4}
  return static_cast<T>(std::pow(static_cast<double>(D), -0.25));
}

template <class T>
void favor_forward(const FavorDims& d, const T* x, const T* omega, T* y) {
  const T c = input_scale<T>(d.D);
  const T log_sqrt_m = static_cast<T>(0.5 * std::log(static_cast<double>(d.m)));
  parallel_for(d.blocks(), kRowBlock * d.m * (2 * d.D + 8), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kRowBlock, rows = std::min(kRowBlock, d.R - r0);
      const ConstMatrixMap<T> X(x + r0 * d.D, rows, d.D);
      MatrixMap<T> Y(y + r0 * d.m, rows, d.m);
      gemm_rows(x + r0 * d.D, omega, /*trans_b=*/true, Y.data(), rows, d.m, d.D);  // X Ωᵀ
      for (int64_t r = 0; r < rows; ++r) {  // row by row: contiguous, vectorised exp
        const T shift = X.row(r).squaredNorm() * (c * c / 2) + log_sqrt_m;
        Y.row(r).array() = (Y.row(r).array() * c - shift).exp();
      }
    }
  });
}

// Writes (overwrites) dx [R,D].
template <class T>
void favor_backward(const FavorDims& d, const T* x, const T* omega, const T* y, const T* dy,
                    T* dx) {
  const T c = input_scale<T>(d.D);
  parallel_for(d.blocks(), kRowBlock * d.m * (2 * d.D + 4), [&](int64_t b0, int64_t b1) {
    Matrix<T> G;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kRowBlock, rows = std::min(kRowBlock, d.R - r0);
      const ConstMatrixMap<T> X(x + r0 * d.D, rows, d.D);
      const ConstMatrixMap<T> Y(y + r0 * d.m, rows, d.m);
      const ConstMatrixMap<T> dY(dy + r0 * d.m, rows, d.m);
      MatrixMap<T> dX(dx + r0 * d.D, rows, d.D);
      G = (dY.array() * Y.array() * c).matrix();
      gemm_rows(G.data(), omega, /*trans_b=*/false, dX.data(), rows, d.D, d.m);  // G Ω
      for (int64_t r = 0; r < rows; ++r) dX.row(r) -= (G.row(r).sum() * c) * X.row(r);
    }
  });
}

// x, omega on a device (validated): the shape group's kernels, forward and backward.
Tensor favor_on_device(const Tensor& x, const Tensor& omega, const Shape& out_shape) {
  constexpr const char* fn = "favor_feature_map";
  const auto kernel =
      device_kernel(fn, "x", x, &DeviceBackend::shape, &ShapeKernels::favor_feature_map);
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  kernel(x, omega, y);
  record(y, "FavorFeatureMapBackward", {x},
         [x, omega, y_saved = y.detach()](const Tensor& dy) -> std::vector<Tensor> {
           Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
           device_kernel("favor_feature_map (backward)", "gradient", dy, &DeviceBackend::shape,
                         &ShapeKernels::favor_feature_map_backward)(x, omega, y_saved, dy, dx);
           return {dx};
         });
  return y;
}

}  // namespace

Tensor favor_feature_map(const Tensor& x, const Tensor& omega) {
  constexpr const char* fn = "favor_feature_map";
  check_defined(fn, "x", x);
  check_defined(fn, "omega", omega);
  check_rank(fn, "omega", omega, 2, "[m, D]");
  check_same_dtype(fn, "x", x, "omega", omega);
  check_same_device(fn, "x", x, "omega", omega);
  const int64_t m = omega.size(0), D = omega.size(1);
  POLYAK_CHECK(m > 0 && D > 0, fn, ": omega has shape ", omega.shape(),
               ", expected [m, D] with m ≥ 1 random features and D ≥ 1");
  POLYAK_CHECK(x.dim() >= 1 && x.size(-1) == D, fn, ": x has shape ", x.shape(),
               ", expected [..., D] with D = ", D, " matching omega ", omega.shape());
  POLYAK_CHECK(!omega.requires_grad(), fn,
               ": omega requires grad, expected a buffer: the random features are redrawn, "
               "not trained, and get no gradient");

  const FavorDims d{x.numel() / D, D, m};
  Shape out_shape = x.shape();
  out_shape[-1] = m;
  if (!x.device().is_cpu()) return favor_on_device(x, omega, out_shape);
  Tensor y = Tensor::empty(out_shape, x.dtype());
  dispatch(x.dtype(),
           [&]<class T>() { favor_forward<T>(d, x.data<T>(), omega.data<T>(), y.data<T>()); });

  Tensor y_saved = y.detach();  // the node keeps the output without its graph
  record(y, "FavorFeatureMapBackward", {x},
         [x, omega, y_saved, d](const Tensor& dy) -> std::vector<Tensor> {
           Tensor dx = Tensor::empty(x.shape(), x.dtype());
           dispatch(x.dtype(), [&]<class T>() {
             favor_backward<T>(d, x.data<T>(), omega.data<T>(), y_saved.data<T>(), dy.data<T>(),
                               dx.data<T>());
           });
           return {dx};
         });
  return y;
}

Tensor orthogonal_random_features(int64_t m, int64_t D, Generator& gen, DType dtype) {
  constexpr const char* fn = "orthogonal_random_features";
  POLYAK_CHECK(m > 0, fn, ": m = ", m, ", expected a positive number of random features");
  POLYAK_CHECK(D > 0, fn, ": D = ", D, ", expected a positive width");
  const int64_t blocks = (m + D - 1) / D;
  const std::vector<double> gauss = Tensor::randn({blocks, D, D}, gen, DType::f64).to_vector();
  const std::vector<double> lengths = Tensor::randn({m, D}, gen, DType::f64).to_vector();

  std::vector<double> omega(static_cast<size_t>(m * D));
  using MatrixXd = Eigen::MatrixXd;
  for (int64_t b = 0; b < blocks; ++b) {
    const MatrixXd G = ConstMatrixMap<double>(gauss.data() + b * D * D, D, D);
    const Eigen::HouseholderQR<MatrixXd> qr(G);
    MatrixXd Q = qr.householderQ();
    for (int64_t j = 0; j < D; ++j)
      if (qr.matrixQR()(j, j) < 0) Q.col(j) = -Q.col(j);
    for (int64_t i = 0; i < D && b * D + i < m; ++i) {
      const int64_t r = b * D + i;
      const double length = Eigen::Map<const Eigen::VectorXd>(lengths.data() + r * D, D).norm();
      Eigen::Map<Eigen::VectorXd>(omega.data() + r * D, D) = Q.col(i) * length;
    }
  }
  return Tensor::from(omega, {m, D}, dtype);
}

}  // namespace polyak
