// The broadcasting binary ops' loops (ops/elementwise.cpp has the ops, their rules and the
// plan), compiled once per ISA: the same-shape, scalar and bias-row runs vectorise in the
// ISA's widest vectors.
#include <vector>

#include "polyak/core/threads.h"
#include "polyak/ops/binary_kernels.h"

namespace polyak::detail {
namespace POLYAK_ISA_NAMESPACE {
namespace {

// out[i] = f(a[i], b[i]) over n elements, with unit or zero strides.
template <class T, class F>
inline void binary_run(const T* a, int64_t ia, const T* b, int64_t ib, T* out, int64_t n, F f) {
  if (ia && ib) {
    for (int64_t j = 0; j < n; ++j) out[j] = f(a[j], b[j]);
  } else if (ia) {
    const T y = b[0];
    for (int64_t j = 0; j < n; ++j) out[j] = f(a[j], y);
  } else if (ib) {
    const T x = a[0];
    for (int64_t j = 0; j < n; ++j) out[j] = f(x, b[j]);
  } else {
    const T z = f(a[0], b[0]);
    for (int64_t j = 0; j < n; ++j) out[j] = z;
  }
}

template <class T, class F>
void binary_kernel(const BroadcastPlan& p, const T* a, const T* b, T* out, int64_t numel, F f) {
  if (numel == 0) return;
  const int64_t rank = static_cast<int64_t>(p.dims.size());
  if (rank == 0) {
    out[0] = f(a[0], b[0]);
    return;
  }
  const int64_t n = p.dims.back(), ia = p.sa.back(), ib = p.sb.back();
  if (rank == 1) {
    parallel_for(n, 1, [&](int64_t begin, int64_t end) {
      binary_run(a + begin * ia, ia, b + begin * ib, ib, out + begin, end - begin, f);
    });
    return;
  }
  // Rows of the innermost axis; an odometer over the outer axes tracks a's and b's offsets.
  const int64_t rows = numel / n, outer = rank - 1;
  parallel_for(rows, n, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> idx(static_cast<size_t>(outer));
    int64_t oa = 0, ob = 0, rem = begin;
    for (int64_t k = outer - 1; k >= 0; --k) {
      idx[k] = rem % p.dims[k];
      rem /= p.dims[k];
      oa += idx[k] * p.sa[k];
      ob += idx[k] * p.sb[k];
    }
    for (int64_t r = begin; r < end; ++r) {
      binary_run(a + oa, ia, b + ob, ib, out + r * n, n, f);
      for (int64_t k = outer - 1; k >= 0; --k) {
        oa += p.sa[k];
        ob += p.sb[k];
        if (++idx[k] < p.dims[k]) break;
        oa -= p.sa[k] * p.dims[k];
        ob -= p.sb[k] * p.dims[k];
        idx[k] = 0;
      }
    }
  });
}

}  // namespace
}  // namespace POLYAK_ISA_NAMESPACE

template <class T>
void binary_apply(POLYAK_KERNEL_ISA_TAG, BinaryOp op, const BroadcastPlan& p, const T* a,
                  const T* b, T* out, int64_t numel) {
  using namespace POLYAK_ISA_NAMESPACE;
  switch (op) {
    case BinaryOp::add:
      return binary_kernel(p, a, b, out, numel, [](T x, T y) { return x + y; });
    case BinaryOp::sub:
      return binary_kernel(p, a, b, out, numel, [](T x, T y) { return x - y; });
    case BinaryOp::mul:
      return binary_kernel(p, a, b, out, numel, [](T x, T y) { return x * y; });
    case BinaryOp::div:
      return binary_kernel(p, a, b, out, numel, [](T x, T y) { return x / y; });
  }
}

template void binary_apply<float>(POLYAK_KERNEL_ISA_TAG, BinaryOp, const BroadcastPlan&,
                                  const float*, const float*, float*, int64_t);
template void binary_apply<double>(POLYAK_KERNEL_ISA_TAG, BinaryOp, const BroadcastPlan&,
                                   const double*, const double*, double*, int64_t);

}  // namespace polyak::detail
