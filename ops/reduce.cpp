// Reductions over all elements or over one axis.
//
// With x viewed as [O, K, I] around the reduced axis (O the product of the leading
// extents, K the reduced extent, I the product of the trailing ones):
//   sum    y[o,i] = Σ_k x[o,k,i]          dx[o,k,i] = g[o,i]
//   mean   y[o,i] = Σ_k x[o,k,i] / K      dx[o,k,i] = g[o,i] / K
//   max    y[o,i] = x[o,k*,i]             dx[o,k,i] = g[o,i] · [k = k*]
//          k*[o,i] the first arg-max (the backward keeps only these indices, O·I of them)
//   argmax y[o,i] = k*[o,i]               (i64, no gradient; on a device, the nn kernels)
// The all-element forms are the same with O = I = 1. keepdim leaves an extent-1 axis in
// place of the reduced one; y and g then have [O, 1, I]'s shape, otherwise [O, I]'s.
//
// Full sums accumulate in double in fixed blocks, so the result does not depend on the
// number of threads. On a device, the shape kernels (cuda/kernels/shape.h) reduce each
// (o, i) in one ordered loop over k (sums in double) and keep k* on the device.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/backend.h"
#include "polyak/core/error.h"
#include "polyak/core/kernels_nn.h"
#include "polyak/core/kernels_shape.h"
#include "polyak/core/threads.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/reduce.h"

namespace polyak {
namespace {

bool needs_grad(const Tensor& t) {
  return GradMode::enabled() && t.requires_grad();
}

struct AxisView {
  int64_t outer, n, inner;
};

AxisView view_around(const Shape& s, int64_t axis) {
  return {s.numel(0, axis), s[axis], s.numel(axis + 1, s.rank())};
}

Shape reduced_shape(const Shape& s, int64_t axis, bool keepdim) {
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < s.rank(); ++i) {
    if (i != axis)
      dims.push_back(s[i]);
    else if (keepdim)
      dims.push_back(1);
  }
  return Shape(std::move(dims));
}

// Σ of n contiguous values in double, eight accumulators so that the loop vectorises.
template <class T>
double sum_contiguous(const T* x, int64_t n) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(x[i + k]);
  double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += static_cast<double>(x[i]);
  return s;
}

template <class T>
double sum_all_cpu(const T* x, int64_t n) {
  constexpr int64_t kBlock = 16384;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  if (blocks <= 1) return sum_contiguous(x, n);
  std::vector<double> partial(static_cast<size_t>(blocks));
  parallel_for(blocks, kBlock, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      partial[b] = sum_contiguous(x + b * kBlock, std::min(kBlock, n - b * kBlock));
  });
  double s = 0;
  for (double p : partial) s += p;
  return s;
}

// y[o,i] = scale · Σ_k x[o,k,i].
template <class T>
void sum_axis_cpu(const T* x, AxisView v, double scale, T* y) {
  if (v.inner == 1) {
    parallel_for(v.outer, v.n, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o)
        y[o] = static_cast<T>(scale * sum_contiguous(x + o * v.n, v.n));
    });
    return;
  }
  // Rows of I values are added in place (vectorised); threads split the outer index, or
  // the columns when there are few outer slices.
  const T s = static_cast<T>(scale);
  auto columns = [&](int64_t o, int64_t c0, int64_t c1) {
    const T* src = x + o * v.n * v.inner + c0;
    T* d = y + o * v.inner + c0;
    const int64_t w = c1 - c0;
    for (int64_t i = 0; i < w; ++i) d[i] = T(0);
    for (int64_t k = 0; k < v.n; ++k) {
      const T* row = src + k * v.inner;
      for (int64_t i = 0; i < w; ++i) d[i] += row[i];
    }
    if (s != T(1))
      for (int64_t i = 0; i < w; ++i) d[i] *= s;
  };
  if (v.outer >= 2 * num_threads()) {
    parallel_for(v.outer, v.n * v.inner, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) columns(o, 0, v.inner);
    });
  } else {
    for (int64_t o = 0; o < v.outer; ++o)
      parallel_for(v.inner, v.n, [&](int64_t c0, int64_t c1) { columns(o, c0, c1); });
  }
}

// dx[o,k,i] = scale · g[o,i].
template <class T>
void expand_axis_cpu(const T* g, AxisView v, double scale, T* dx) {
  const T s = static_cast<T>(scale);
  const int64_t n = v.n, inner = v.inner;
  parallel_for(v.outer * n, inner, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* src = g + (r / n) * inner;
      T* dst = dx + r * inner;
      for (int64_t i = 0; i < inner; ++i) dst[i] = s * src[i];
    }
  });
}

// Σ (or mean) over everything.
Tensor reduce_all(const char* fn, const char* node, const Tensor& x, bool average) {
  check_defined(fn, "x", x);
  check_floating(fn, "x", x);
  const int64_t n = x.numel();
  const double scale = average ? 1.0 / static_cast<double>(n) : 1.0;
  Tensor y = Tensor::empty(Shape{}, x.dtype(), x.device());
  if (!x.device().is_cpu()) {
    device_kernels(fn, "x", x).sum_all(x, y);
    if (average) {
      NoGradGuard no_grad;
      y = mul(y, scale);
    }
  } else {
    dispatch(x.dtype(), [&]<class T>() {
      y.data<T>()[0] = static_cast<T>(scale * sum_all_cpu(x.data<T>(), n));
    });
  }
  if (needs_grad(x)) {
    record(y, node, {x}, [shape = x.shape(), scale](const Tensor& g) -> std::vector<Tensor> {
      if (!g.device().is_cpu())
        return {add(Tensor::zeros(shape, g.dtype(), g.device()), scale == 1.0 ? g : mul(g, scale))};
      return {Tensor::full(shape, scale * g.item(), g.dtype())};
    });
  }
  return y;
}

// Σ (or mean) over one axis.
Tensor reduce_axis(const char* fn, const char* node, const Tensor& x, int64_t axis, bool keepdim,
                   bool average) {
  check_defined(fn, "x", x);
  check_floating(fn, "x", x);
  axis = normalize_axis(fn, axis, x.dim());
  const AxisView v = view_around(x.shape(), axis);
  const double scale = average ? 1.0 / static_cast<double>(v.n) : 1.0;
  Tensor y = Tensor::empty(reduced_shape(x.shape(), axis, keepdim), x.dtype(), x.device());
  if (!x.device().is_cpu()) {
    device_kernel(fn, "x", x, &DeviceBackend::shape, &ShapeKernels::sum_axis)(x, v.outer, v.n,
                                                                              v.inner, scale, y);
  } else if (v.n == 0) {
    y.zero_();
    if (average) y.fill_(NAN);
  } else {
    dispatch(x.dtype(), [&]<class T>() { sum_axis_cpu(x.data<T>(), v, scale, y.data<T>()); });
  }
  if (needs_grad(x)) {
    const char* backward = average ? "mean (backward)" : "sum (backward)";
    record(y, node, {x},
           [backward, shape = x.shape(), v, scale](const Tensor& g) -> std::vector<Tensor> {
             if (!g.device().is_cpu()) {
               Tensor dx = Tensor::empty(shape, g.dtype(), g.device());
               device_kernel(backward, "gradient", g, &DeviceBackend::shape,
                             &ShapeKernels::expand_axis)(g, v.outer, v.n, v.inner, scale, dx);
               return {dx};
             }
             Tensor dx = Tensor::empty(shape, g.dtype());
             dispatch(g.dtype(),
                      [&]<class T>() { expand_axis_cpu(g.data<T>(), v, scale, dx.data<T>()); });
             return {dx};
           });
  }
  return y;
}

// c ? a : b on the bits: a blend the vectoriser accepts (with -ftrapping-math it does not
// if-convert a floating-point select).
template <class T>
inline T select(bool c, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const U m = U(0) - static_cast<U>(c);
  return std::bit_cast<T>((std::bit_cast<U>(a) & m) | (std::bit_cast<U>(b) & ~m));
}

// a beats b: greater, or NaN where b is not (NaN propagates; ties keep the first).
template <class T>
inline bool beats(T a, T b) {
  return (a > b) | ((a != a) & (b == b));  // no short-circuit: keeps the loop vectorisable
}

// The first index of the maximum of x[0, n), n ≥ 1: the maximum in eight vector lanes, then
// one scan for its first occurrence (a NaN, if any, is the maximum).
template <class T>
int64_t first_argmax(const T* x, int64_t n) {
  T lane[8];
  for (int j = 0; j < 8; ++j) lane[j] = x[0];
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; ++j) lane[j] = select(beats(x[k + j], lane[j]), x[k + j], lane[j]);
  T m = lane[0];
  for (int j = 1; j < 8; ++j) m = beats(lane[j], m) ? lane[j] : m;
  for (; k < n; ++k) m = beats(x[k], m) ? x[k] : m;
  if (m != m) {
    for (int64_t i = 0; i < n; ++i)
      if (x[i] != x[i]) return i;
  }
  for (int64_t i = 0; i < n; ++i)
    if (x[i] == m) return i;
  return 0;
}

// max of x on its device, viewed as [outer, n, inner] (n ≥ 1), into y of `y_shape`.
Tensor max_on_device(const Tensor& x, AxisView v, const Shape& y_shape) {
  const auto kernel = device_kernel("max", "x", x, &DeviceBackend::shape, &ShapeKernels::max_axis);
  Tensor y = Tensor::empty(y_shape, x.dtype(), x.device());
  Tensor arg = Tensor::empty(Shape{v.outer * v.inner}, DType::i64, x.device());
  kernel(x, v.outer, v.n, v.inner, y, arg);
  if (needs_grad(x)) {
    record(y, "MaxBackward", {x},
           [shape = x.shape(), v, arg](const Tensor& g) -> std::vector<Tensor> {
             Tensor dx = Tensor::empty(shape, g.dtype(), g.device());
             device_kernel("max (backward)", "gradient", g, &DeviceBackend::shape,
                           &ShapeKernels::max_axis_backward)(g, arg, v.outer, v.n, v.inner, dx);
             return {dx};
           });
  }
  return y;
}

}  // namespace

Tensor sum(const Tensor& x) {
  return reduce_all("sum", "SumBackward", x, false);
}
Tensor mean(const Tensor& x) {
  return reduce_all("mean", "MeanBackward", x, true);
}
Tensor sum(const Tensor& x, int64_t axis, bool keepdim) {
  return reduce_axis("sum", "SumBackward", x, axis, keepdim, false);
}
Tensor mean(const Tensor& x, int64_t axis, bool keepdim) {
  return reduce_axis("mean", "MeanBackward", x, axis, keepdim, true);
}

Tensor max(const Tensor& x) {
  check_defined("max", "x", x);
  check_floating("max", "x", x);
  POLYAK_CHECK(x.numel() > 0, "max: x has shape ", x.shape(), ", expected at least one element");
  if (!x.device().is_cpu()) return max_on_device(x, {1, x.numel(), 1}, Shape{});
  Tensor y = Tensor::empty(Shape{}, x.dtype());
  int64_t best = 0;
  dispatch(x.dtype(), [&]<class T>() {
    const T* p = x.data<T>();
    best = first_argmax(p, x.numel());
    y.data<T>()[0] = p[best];
  });
  if (needs_grad(x)) {
    record(y, "MaxBackward", {x},
           [shape = x.shape(), best](const Tensor& g) -> std::vector<Tensor> {
             Tensor dx = Tensor::zeros(shape, g.dtype());
             dispatch(g.dtype(), [&]<class T>() { dx.data<T>()[best] = g.data<T>()[0]; });
             return {dx};
           });
  }
  return y;
}

Tensor max(const Tensor& x, int64_t axis, bool keepdim) {
  check_defined("max", "x", x);
  check_floating("max", "x", x);
  axis = normalize_axis("max", axis, x.dim());
  const AxisView v = view_around(x.shape(), axis);
  POLYAK_CHECK(v.n > 0, "max: x has shape ", x.shape(),
               ", expected at least one element along axis ", axis);
  if (!x.device().is_cpu()) return max_on_device(x, v, reduced_shape(x.shape(), axis, keepdim));
  Tensor y = Tensor::empty(reduced_shape(x.shape(), axis, keepdim), x.dtype());
  auto arg = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(v.outer * v.inner), 0);
  dispatch(x.dtype(), [&]<class T>() {
    const T* p = x.data<T>();
    T* out = y.data<T>();
    int64_t* k_star = arg->data();
    parallel_for(v.outer, v.n * v.inner, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        const T* src = p + o * v.n * v.inner;
        T* best = out + o * v.inner;
        int64_t* idx = k_star + o * v.inner;
        if (v.inner == 1) {
          idx[0] = first_argmax(src, v.n);
          best[0] = src[idx[0]];
          continue;
        }
        const int64_t n = v.n, inner = v.inner;
        std::memcpy(best, src, static_cast<size_t>(inner) * sizeof(T));
        for (int64_t k = 1; k < n; ++k) {
          const T* row = src + k * inner;
          for (int64_t i = 0; i < inner; ++i) {
            const T r = row[i], b = best[i];
            const bool w = beats(r, b);
            best[i] = w ? r : b;
            idx[i] = w ? k : idx[i];
          }
        }
      }
    });
  });
  if (needs_grad(x)) {
    record(y, "MaxBackward", {x},
           [shape = x.shape(), v, arg](const Tensor& g) -> std::vector<Tensor> {
             Tensor dx = Tensor::zeros(shape, g.dtype());
             dispatch(g.dtype(), [&]<class T>() {
               const T* pg = g.data<T>();
               T* pd = dx.data<T>();
               const int64_t* k_star = arg->data();
               for (int64_t o = 0; o < v.outer; ++o)
                 for (int64_t i = 0; i < v.inner; ++i) {
                   const int64_t j = o * v.inner + i;
                   pd[(o * v.n + k_star[j]) * v.inner + i] = pg[j];
                 }
             });
             return {dx};
           });
  }
  return y;
}

Tensor argmax(const Tensor& x, int64_t axis) {
  check_defined("argmax", "x", x);
  check_floating("argmax", "x", x);
  axis = normalize_axis("argmax", axis, x.dim());
  const AxisView v = view_around(x.shape(), axis);
  POLYAK_CHECK(v.n > 0, "argmax: x has shape ", x.shape(),
               ", expected at least one element along axis ", axis);
  Tensor out = Tensor::empty(reduced_shape(x.shape(), axis, false), DType::i64, x.device());
  if (!x.device().is_cpu()) {
    device_kernel("argmax", "x", x, &DeviceBackend::nn, &NnKernels::argmax)(x, v.outer, v.n,
                                                                            v.inner, out);
    return out;
  }
  dispatch(x.dtype(), [&]<class T>() {
    const T* p = x.data<T>();
    int64_t* idx = out.data<int64_t>();
    parallel_for(v.outer * v.inner, v.n, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) {
        const int64_t o = e / v.inner, i = e % v.inner;
        const T* src = p + o * v.n * v.inner + i;
        if (v.inner == 1) {
          idx[e] = first_argmax(src, v.n);
          continue;
        }
        T best = src[0];
        int64_t k_best = 0;
        for (int64_t k = 1; k < v.n; ++k)
          if (beats(src[k * v.inner], best)) {
            best = src[k * v.inner];
            k_best = k;
          }
        idx[e] = k_best;
      }
    });
  });
  return out;
}

}  // namespace polyak
