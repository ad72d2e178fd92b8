// softmax and log_softmax along one axis, fused (one kernel for max, exp, sum, scale).
//
// x viewed as [outer, C, inner] with C the softmax axis (inner = 1 for the last axis).
//   softmax:      y = exp(x − max) / Σ_c exp(x − max)
//                 dx = y ⊙ (dy − Σ_c dy ⊙ y)                     [outer, C, inner]
//   log_softmax:  y = x − max − log Σ_c exp(x − max)
//                 dx = dy − exp(y) · Σ_c dy                       [outer, C, inner]
// (∂y_i/∂x_j = y_i(δ_ij − y_j) for softmax and δ_ij − softmax_j for log_softmax.)
// Both backward passes need only the output y, so that is all the node keeps. On a device
// (f32) the same formulas run as the backend's nn kernels, one body per line along C.
#include <Eigen/Core>
#include <cmath>

#include "polyak/core/autograd.h"
#include "polyak/core/kernels_nn.h"
#include "polyak/core/threads.h"
#include "polyak/ops/nn_ops.h"

namespace polyak {
namespace {

template <class T>
using Vec = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstVec = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using Slab = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
template <class T>
using ConstSlab =
    Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

struct Layout {
  int64_t outer, C, inner;
};

Layout layout_of(const Shape& shape, int64_t axis) {
  return {shape.numel(0, axis), shape[axis], shape.numel(axis + 1, shape.rank())};
}

template <class T, bool Log>
void forward_kernel(const T* x, T* y, Layout s) {
  const int64_t slab = s.C * s.inner;
  parallel_for(s.outer, slab * 8, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      if (s.inner == 1) {
        ConstVec<T> xr(x + o * s.C, s.C);
        Vec<T> yr(y + o * s.C, s.C);
        const T m = xr.maxCoeff();
        yr = (xr - m).exp();
        const T sum = yr.sum();
        if constexpr (Log)
          yr = xr - (m + std::log(sum));
        else
          yr *= T(1) / sum;
      } else {
        ConstSlab<T> X(x + o * slab, s.C, s.inner);
        Slab<T> Y(y + o * slab, s.C, s.inner);
        Eigen::Array<T, 1, Eigen::Dynamic> m = X.colwise().maxCoeff();
        Y = (X.rowwise() - m).exp();
        Eigen::Array<T, 1, Eigen::Dynamic> sum = Y.colwise().sum();
        if constexpr (Log)
          Y = X.rowwise() - (m + sum.log());
        else
          Y.rowwise() /= sum;
      }
    }
  });
}

template <class T, bool Log>
void backward_kernel(const T* y, const T* dy, T* dx, Layout s) {
  const int64_t slab = s.C * s.inner;
  parallel_for(s.outer, slab * 6, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      if (s.inner == 1) {
        ConstVec<T> yr(y + o * s.C, s.C), gr(dy + o * s.C, s.C);
        Vec<T> dxr(dx + o * s.C, s.C);
        if constexpr (Log)
          dxr = gr - yr.exp() * gr.sum();
        else
          dxr = yr * (gr - (gr * yr).sum());
      } else {
        ConstSlab<T> Y(y + o * slab, s.C, s.inner), G(dy + o * slab, s.C, s.inner);
        Slab<T> DX(dx + o * slab, s.C, s.inner);
        if constexpr (Log) {
          Eigen::Array<T, 1, Eigen::Dynamic> gsum = G.colwise().sum();
          DX = G - Y.exp().rowwise() * gsum;
        } else {
          Eigen::Array<T, 1, Eigen::Dynamic> dot = (G * Y).colwise().sum();
          DX = Y * (G.rowwise() - dot);
        }
      }
    }
  });
}

template <bool Log>
Tensor softmax_on_device(const char* fn, const Tensor& x, Layout s) {
  const auto kernel = device_kernel(fn, "x", x, &DeviceBackend::nn, &NnKernels::softmax);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() > 0) kernel(x, s.outer, s.C, s.inner, Log, out);
  record(out, Log ? "LogSoftmaxBackward" : "SoftmaxBackward", {x},
         [fn, y = out.detach(), s](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
           if (y.numel() > 0)
             device_kernel(fn, "gradient", g, &DeviceBackend::nn, &NnKernels::softmax_backward)(
                 y, g, s.outer, s.C, s.inner, Log, dx);
           return {dx};
         });
  return out;
}

template <bool Log>
Tensor softmax_impl(const char* fn, const Tensor& x, int64_t axis) {
  check_defined(fn, "x", x);
  POLYAK_CHECK(x.dim() >= 1, fn, ": x has shape ", x.shape(), ", expected rank ≥ 1");
  const Layout s = layout_of(x.shape(), normalize_axis(fn, axis, x.dim()));
  if (!x.device().is_cpu()) return softmax_on_device<Log>(fn, x, s);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  if (x.numel() > 0)
    dispatch(x.dtype(), [&]<class T>() { forward_kernel<T, Log>(x.data<T>(), out.data<T>(), s); });

  Tensor y = out.detach();  // the node keeps the output without its graph
  record(out, Log ? "LogSoftmaxBackward" : "SoftmaxBackward", {x},
         [y, s](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = Tensor::empty(y.shape(), y.dtype());
           if (y.numel() > 0)
             dispatch(y.dtype(), [&]<class T>() {
               backward_kernel<T, Log>(y.data<T>(), g.data<T>(), dx.data<T>(), s);
             });
           return {dx};
         });
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis) {
  return softmax_impl<false>("softmax", x, axis);
}

Tensor log_softmax(const Tensor& x, int64_t axis) {
  return softmax_impl<true>("log_softmax", x, axis);
}

}  // namespace polyak
