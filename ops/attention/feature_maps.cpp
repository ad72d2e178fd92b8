// Feature maps for linear attention (MATH.md §2; Katharopoulos et al. 2020, §3.2).
//
//   y = φ(x) = elu(x) + 1 = { x + 1   x > 0                      x, y [any shape]
//                           { eˣ      x ≤ 0          (> 0 everywhere)
//
//   dx = dy ⊙ φ'(x),  φ'(x) = { 1    x > 0                        dx [shape of x]
//                             { eˣ   x ≤ 0
//
// Both branches in one vectorisable expression: φ(x) = e^min(x,0) + max(x,0) and
// φ'(x) = e^min(x,0). The backward saves x only (saving y would tie the output to its own
// node).
#include "polyak/ops/attention/feature_maps.h"

#include <Eigen/Core>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/threads.h"

namespace polyak {
namespace {

// Work per element for parallel_for; Eigen's packet exp keeps the loops vectorised.
constexpr int64_t kCostPerElement = 4;

template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

template <class T>
void elu_feature_map_forward(const T* x, T* y, int64_t n) {
  parallel_for(n, kCostPerElement, [&](int64_t begin, int64_t end) {
    ConstArrayMap<T> xs(x + begin, end - begin);
    ArrayMap<T>(y + begin, end - begin) = xs.min(T(0)).exp() + xs.max(T(0));
  });
}

template <class T>
void elu_feature_map_backward(const T* x, const T* dy, T* dx, int64_t n) {
  parallel_for(n, kCostPerElement, [&](int64_t begin, int64_t end) {
    ConstArrayMap<T> xs(x + begin, end - begin);
    ConstArrayMap<T> dys(dy + begin, end - begin);
    ArrayMap<T>(dx + begin, end - begin) = dys * xs.min(T(0)).exp();
  });
}

}  // namespace

Tensor elu_feature_map(const Tensor& x) {
  constexpr const char* fn = "elu_feature_map";
  check_defined(fn, "x", x);
  check_cpu(fn, "x", x);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(),
           [&]<class T>() { elu_feature_map_forward<T>(x.data<T>(), y.data<T>(), x.numel()); });

  record(y, "EluFeatureMapBackward", {x}, [x](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    dispatch(x.dtype(), [&]<class T>() {
      elu_feature_map_backward<T>(x.data<T>(), dy.data<T>(), dx.data<T>(), x.numel());
    });
    return {dx};
  });
  return y;
}

}  // namespace polyak
