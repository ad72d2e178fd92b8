// The elu + 1 feature map's loops (feature_maps.cpp has the op and its formulas), compiled
// once per ISA: Eigen's packet exp then runs in the ISA's widest vectors.
//
//   y = e^min(x,0) + max(x,0),   dx = dy ⊙ e^min(x,0)
#include "polyak/ops/eigen_isa.h"
// (first: it renames Eigen for this compilation)
#include "polyak/core/threads.h"
#include "polyak/ops/attention/feature_map_kernels.h"

namespace polyak::detail {
namespace POLYAK_ISA_NAMESPACE {
namespace {

// Work per element for parallel_for.
constexpr int64_t kCostPerElement = 4;

template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

}  // namespace
}  // namespace POLYAK_ISA_NAMESPACE

template <class T>
void elu_feature_map_forward(POLYAK_KERNEL_ISA_TAG, const T* x, T* y, int64_t n) {
  using namespace POLYAK_ISA_NAMESPACE;
  parallel_for(n, kCostPerElement, [&](int64_t begin, int64_t end) {
    ConstArrayMap<T> xs(x + begin, end - begin);
    ArrayMap<T>(y + begin, end - begin) = xs.min(T(0)).exp() + xs.max(T(0));
  });
}

template <class T>
void elu_feature_map_backward(POLYAK_KERNEL_ISA_TAG, const T* x, const T* dy, T* dx, int64_t n) {
  using namespace POLYAK_ISA_NAMESPACE;
  parallel_for(n, kCostPerElement, [&](int64_t begin, int64_t end) {
    ConstArrayMap<T> xs(x + begin, end - begin);
    ConstArrayMap<T> dys(dy + begin, end - begin);
    ArrayMap<T>(dx + begin, end - begin) = dys * xs.min(T(0)).exp();
  });
}

#define POLYAK_INSTANTIATE(T)                                                             \
  template void elu_feature_map_forward<T>(POLYAK_KERNEL_ISA_TAG, const T*, T*, int64_t); \
  template void elu_feature_map_backward<T>(POLYAK_KERNEL_ISA_TAG, const T*, const T*, T*, int64_t);
POLYAK_INSTANTIATE(float)
POLYAK_INSTANTIATE(double)
#undef POLYAK_INSTANTIATE

}  // namespace polyak::detail
