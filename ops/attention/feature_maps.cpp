// Feature maps for linear attention (docs/math.md §2; Katharopoulos et al. 2020, §3.2).
//
//   y = φ(x) = elu(x) + 1 = { x + 1   x > 0                      x, y [any shape]
//                           { eˣ      x ≤ 0          (> 0 everywhere)
//
//   dx = dy ⊙ φ'(x),  φ'(x) = { 1    x > 0                        dx [shape of x]
//                             { eˣ   x ≤ 0
//
// Both branches in one vectorisable expression: φ(x) = e^min(x,0) + max(x,0) and
// φ'(x) = e^min(x,0). The backward saves x only (saving y would tie the output to its own
// node). The loops are in feature_maps_isa.cpp, compiled once per ISA.
#include "polyak/ops/attention/feature_maps.h"

#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/ops/attention/feature_map_kernels.h"

namespace polyak {

Tensor elu_feature_map(const Tensor& x) {
  constexpr const char* fn = "elu_feature_map";
  check_defined(fn, "x", x);
  check_cpu(fn, "x", x);
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

}  // namespace polyak
