// The shape kernel group (core/kernels_shape.h) as kernel bodies and drivers
// (cuda/kernels/exec.h): compiled by nvcc for CUDA devices (cuda/shape.cu) and by the host
// compiler for the tests' fake device (tests/fake_device.h). Each body has its CPU
// reference in ops/.
//
//   permute            y[i] = x[offset of i's index under perm]   one body per element
//   copy_blocks        one body per element copied                 (both ops/shape_ops.cpp)
//   sum_axis           one body per (o, i): an ordered loop over k in double
//   expand_axis        one body per element of dx
//   max_axis           one body per (o, i): an ordered scan over k
//   max_axis_backward  one body per element of dx                  (all four ops/reduce.cpp)
//
// Broadcasting binary ops and sum_to are in broadcast.h, the feature maps in feature_maps.h.
//
// The copies are written on the element's bits (uint32_t or uint64_t), so that one body serves
// f32, i32 and i64.
#pragma once

#include <cstdint>

#include "polyak/core/kernels_shape.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/broadcast.h"
#include "polyak/cuda/kernels/exec.h"
#include "polyak/cuda/kernels/feature_maps.h"

namespace polyak::kernels {

// ---- bodies ----------------------------------------------------------------------------

template <class E>
struct PermuteBody {
  const E* x;
  E* y;
  int rank;
  int64_t dims[ShapeKernels::kMaxRank];    // y's extents
  int64_t stride[ShapeKernels::kMaxRank];  // x's stride along y's axis j
  POLYAK_HD void operator()(int64_t i) const {
    int64_t offset = 0, rest = i;
    for (int j = rank - 1; j >= 0; --j) {
      offset += (rest % dims[j]) * stride[j];
      rest /= dims[j];
    }
    y[i] = x[offset];
  }
};

template <class E>
struct CopyBlocksBody {
  const E* src;
  E* dst;
  int64_t src_row, src_off, dst_row, dst_off, len;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t o = e / len, j = e % len;
    dst[o * dst_row + dst_off + j] = src[o * src_row + src_off + j];
  }
};

// x, y, g, dx around the reduced axis: [outer, n, inner] and [outer, inner].
struct SumAxisBody {
  const float* x;
  float* y;
  int64_t n, inner;
  double scale;
  POLYAK_HD void operator()(int64_t j) const {
    const int64_t o = j / inner, i = j % inner;
    const float* src = x + o * n * inner + i;
    double s = 0;
    for (int64_t k = 0; k < n; ++k) s += static_cast<double>(src[k * inner]);
    y[j] = static_cast<float>(scale * s);
  }
};

struct ExpandAxisBody {
  const float* g;
  float* dx;
  int64_t n, inner;
  float scale;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t i = e % inner, o = e / (n * inner);
    dx[e] = scale * g[o * inner + i];
  }
};

struct MaxAxisBody {
  const float* x;
  float* y;
  int64_t* arg;
  int64_t n, inner;
  POLYAK_HD void operator()(int64_t j) const {
    const int64_t o = j / inner, i = j % inner;
    const float* src = x + o * n * inner + i;
    float best = src[0];
    int64_t k_star = 0;
    for (int64_t k = 1; k < n; ++k) {
      const float r = src[k * inner];
      // r beats best: greater, or NaN where best is not (ties keep the first).
      if (r > best || (r != r && best == best)) {
        best = r;
        k_star = k;
      }
    }
    y[j] = best;
    arg[j] = k_star;
  }
};

struct MaxAxisBackwardBody {
  const float* g;
  const int64_t* arg;
  float* dx;
  int64_t n, inner;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t i = e % inner, k = (e / inner) % n, o = e / (n * inner);
    const int64_t j = o * inner + i;
    dx[e] = arg[j] == k ? g[j] : 0.0f;
  }
};

// ---- drivers: the Tensor-level entries of the table -------------------------------------

template <class Exec>
struct ShapeOps {
  // f(E{}) with E the unsigned integer as wide as t's elements (4 or 8 bytes).
  template <class F>
  static void by_width(const Tensor& t, F&& f) {
    if (itemsize(t.dtype()) == 8)
      f(uint64_t{});
    else
      f(uint32_t{});
  }

  static void permute(const Tensor& x, const int64_t* perm, Tensor& out) {
    Exec ex(x.device());
    const Shape& xs = x.shape();
    const int rank = static_cast<int>(xs.rank());
    int64_t in_stride[ShapeKernels::kMaxRank];
    int64_t s = 1;
    for (int a = rank - 1; a >= 0; --a) {
      in_stride[a] = s;
      s *= xs[a];
    }
    by_width(x, [&](auto e) {
      using E = decltype(e);
      PermuteBody<E> body{
          static_cast<const E*>(x.raw_data()), static_cast<E*>(out.raw_data()), rank, {}, {}};
      for (int j = 0; j < rank; ++j) {
        body.dims[j] = xs[perm[j]];
        body.stride[j] = in_stride[perm[j]];
      }
      ex.for_each(x.numel(), body);
    });
  }

  static void copy_blocks(const Tensor& src, int64_t src_row, int64_t src_off, Tensor& dst,
                          int64_t dst_row, int64_t dst_off, int64_t outer, int64_t len) {
    if (len == 0) return;
    Exec ex(src.device());
    by_width(src, [&](auto e) {
      using E = decltype(e);
      ex.for_each(outer * len, CopyBlocksBody<E>{static_cast<const E*>(src.raw_data()),
                                                 static_cast<E*>(dst.raw_data()), src_row, src_off,
                                                 dst_row, dst_off, len});
    });
  }

  static void sum_axis(const Tensor& x, int64_t outer, int64_t n, int64_t inner, double scale,
                       Tensor& y) {
    Exec(x.device())
        .for_each(outer * inner, SumAxisBody{static_cast<const float*>(x.raw_data()),
                                             static_cast<float*>(y.raw_data()), n, inner, scale});
  }

  static void expand_axis(const Tensor& g, int64_t outer, int64_t n, int64_t inner, double scale,
                          Tensor& dx) {
    Exec(g.device())
        .for_each(outer * n * inner, ExpandAxisBody{static_cast<const float*>(g.raw_data()),
                                                    static_cast<float*>(dx.raw_data()), n, inner,
                                                    static_cast<float>(scale)});
  }

  static void max_axis(const Tensor& x, int64_t outer, int64_t n, int64_t inner, Tensor& y,
                       Tensor& arg) {
    Exec(x.device())
        .for_each(outer * inner, MaxAxisBody{static_cast<const float*>(x.raw_data()),
                                             static_cast<float*>(y.raw_data()),
                                             static_cast<int64_t*>(arg.raw_data()), n, inner});
  }

  static void max_axis_backward(const Tensor& g, const Tensor& arg, int64_t outer, int64_t n,
                                int64_t inner, Tensor& dx) {
    Exec(g.device())
        .for_each(outer * n * inner,
                  MaxAxisBackwardBody{static_cast<const float*>(g.raw_data()),
                                      static_cast<const int64_t*>(arg.raw_data()),
                                      static_cast<float*>(dx.raw_data()), n, inner});
  }
};

template <class Exec>
ShapeKernels shape_kernels() {
  ShapeKernels k;
  k.permute = &ShapeOps<Exec>::permute;
  k.copy_blocks = &ShapeOps<Exec>::copy_blocks;
  k.sum_axis = &ShapeOps<Exec>::sum_axis;
  k.expand_axis = &ShapeOps<Exec>::expand_axis;
  k.max_axis = &ShapeOps<Exec>::max_axis;
  k.max_axis_backward = &ShapeOps<Exec>::max_axis_backward;
  k.broadcast_binary = &BroadcastOps<Exec>::broadcast_binary;
  k.sum_to = &BroadcastOps<Exec>::sum_to;
  k.elu_feature_map = &FeatureMapOps<Exec>::elu_feature_map;
  k.elu_feature_map_backward = &FeatureMapOps<Exec>::elu_feature_map_backward;
  k.elu_feature_map_heads = &FeatureMapOps<Exec>::elu_feature_map_heads;
  k.elu_feature_map_heads_backward = &FeatureMapOps<Exec>::elu_feature_map_heads_backward;
  k.favor_feature_map = &FeatureMapOps<Exec>::favor_feature_map;
  k.favor_feature_map_backward = &FeatureMapOps<Exec>::favor_feature_map_backward;
  return k;
}

}  // namespace polyak::kernels
