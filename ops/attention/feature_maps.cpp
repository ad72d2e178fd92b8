// Feature maps for linear attention (docs/math.md §2; Katharopoulos et al. 2020, §3.2).
//
//   y = φ(x) = elu(x) + 1 = { x + 1   x > 0                      x, y [any shape]
//                           { eˣ      x ≤ 0          (> 0 everywhere)
//
//   dx = dy ⊙ φ'(x),  φ'(x) = { 1    x > 0                        dx [shape of x]
//                             { eˣ   x ≤ 0
//
// elu_feature_map_heads(x, H) = elu_feature_map(split_heads(x, H)) in one pass, x
// [B, N, H·D] → y [B, H, N, D], and its backward merge_heads(dy ⊙ φ'(split_heads(x))) in one
// pass: the projections' output maps straight into the heads' layout, where a split and a
// map would each read and write the whole tensor.
//
// Both branches in one vectorisable expression: φ(x) = e^min(x,0) + max(x,0) and
// φ'(x) = e^min(x,0). The backward saves x only (saving y would tie the output to its own
// node). The loops are in feature_maps_isa.cpp, compiled once per ISA; a device runs the shape
// group's kernels (cuda/kernels/feature_maps.h), forward and backward.
#include "polyak/ops/attention/feature_maps.h"

#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/kernels_shape.h"
#include "polyak/ops/attention/feature_map_kernels.h"

namespace polyak {

Tensor elu_feature_map(const Tensor& x) {
  constexpr const char* fn = "elu_feature_map";
  check_defined(fn, "x", x);
  if (!x.device().is_cpu()) {
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    device_kernel(fn, "x", x, &DeviceBackend::shape, &ShapeKernels::elu_feature_map)(x, y);
    record(y, "EluFeatureMapBackward", {x}, [x](const Tensor& dy) -> std::vector<Tensor> {
      Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
      device_kernel("elu_feature_map (backward)", "gradient", dy, &DeviceBackend::shape,
                    &ShapeKernels::elu_feature_map_backward)(x, dy, dx);
      return {dx};
    });
    return y;
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    with_active_isa([&](auto isa) {
      detail::elu_feature_map_forward<T>(isa, x.data<T>(), y.data<T>(), x.numel());
    });
  });

  record(y, "EluFeatureMapBackward", {x}, [x](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    dispatch(x.dtype(), [&]<class T>() {
      with_active_isa([&](auto isa) {
        detail::elu_feature_map_backward<T>(isa, x.data<T>(), dy.data<T>(), dx.data<T>(),
                                            x.numel());
      });
    });
    return {dx};
  });
  return y;
}

Tensor elu_feature_map_heads(const Tensor& x, int64_t heads) {
  constexpr const char* fn = "elu_feature_map_heads";
  check_defined(fn, "x", x);
  check_rank(fn, "x", x, 3, "[B, N, H·D]");
  POLYAK_CHECK(heads >= 1, fn, ": heads = ", heads, ", expected ≥ 1");
  const int64_t B = x.size(0), N = x.size(1), W = x.size(2);
  POLYAK_CHECK(W % heads == 0, fn, ": x has shape ", x.shape(), " whose width ", W,
               " is not divisible by heads = ", heads, ", expected [B, N, H·D]");
  const int64_t H = heads, D = W / heads;
  if (!x.device().is_cpu()) {
    Tensor y = Tensor::empty({B, H, N, D}, x.dtype(), x.device());
    device_kernel(fn, "x", x, &DeviceBackend::shape, &ShapeKernels::elu_feature_map_heads)(x, H, y);
    record(y, "EluFeatureMapHeadsBackward", {x},
           [x = x.detach(), H](const Tensor& dy) -> std::vector<Tensor> {
             Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
             device_kernel("elu_feature_map_heads (backward)", "gradient", dy,
                           &DeviceBackend::shape,
                           &ShapeKernels::elu_feature_map_heads_backward)(x, dy, H, dx);
             return {dx};
           });
    return y;
  }
  Tensor y = Tensor::empty({B, H, N, D}, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    with_active_isa([&](auto isa) {
      detail::elu_feature_map_heads_forward<T>(isa, x.data<T>(), y.data<T>(), B, N, H, D);
    });
  });

  record(y, "EluFeatureMapHeadsBackward", {x},
         [x = x.detach(), B, N, H, D](const Tensor& dy) -> std::vector<Tensor> {
           Tensor dx = Tensor::empty(x.shape(), x.dtype());
           dispatch(x.dtype(), [&]<class T>() {
             with_active_isa([&](auto isa) {
               detail::elu_feature_map_heads_backward<T>(isa, x.data<T>(), dy.data<T>(),
                                                         dx.data<T>(), B, N, H, D);
             });
           });
           return {dx};
         });
  return y;
}

}  // namespace polyak
