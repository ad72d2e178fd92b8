// The shape kernel group of a device backend (core/backend.h, DeviceBackend::shape): permute,
// slice, concat, split/merge heads, reductions over any axis, broadcasting binary ops, maximum, the
// feature maps (elu + 1, FAVOR+). Entries left null are not provided; ops reach them through
// device_kernel(), which names the op and the device then. Every entry checks nothing that its op
// has checked: the op validates shapes, dtypes and devices on the host before it calls the kernel,
// allocates the outputs on the device and passes them in.
#pragma once

#include <cstdint>

#include "polyak/core/backend.h"

namespace polyak {

// The axes a broadcasting kernel walks (ops/elementwise.cpp coalesces them): `rank` row-major
// extents `dims` and, per operand, its element stride along each (0 where it repeats). rank ≤
// kMaxRank; the whole walk travels by value into the kernel.
struct StridedAxes {
  static constexpr int kMaxRank = 16;
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t stride[2][kMaxRank] = {};  // [0] a (or grad), [1] b
};

struct ShapeKernels {
  // The most axes a device permute takes (its shape travels by value into the kernel).
  static constexpr int kMaxRank = 8;

  // The copies move elements without reading them, so they take every 4- and 8-byte dtype
  // (f32 values and i32/i64 ids alike); the ops keep f64 off devices.
  //
  // out = x with axes reordered: out.shape[j] = x.shape[perm[j]], rank ≤ kMaxRank.
  void (*permute)(const Tensor& x, const int64_t* perm, Tensor& out) = nullptr;
  // For o < outer, j < len: dst[o·dst_row + dst_off + j] = src[o·src_row + src_off + j]; the
  // row blocks of slice, concat and split along any axis, and slice's backward into a zeroed dx.
  void (*copy_blocks)(const Tensor& src, int64_t src_row, int64_t src_off, Tensor& dst,
                      int64_t dst_row, int64_t dst_off, int64_t outer, int64_t len) = nullptr;

  // Reductions over one axis, x viewed as [outer, n, inner] around it (the all-element forms
  // are outer = inner = 1); f32.
  //
  // y[o, i] = scale · Σ_k x[o, k, i], summed in the order of k, in double.
  void (*sum_axis)(const Tensor& x, int64_t outer, int64_t n, int64_t inner, double scale,
                   Tensor& y) = nullptr;
  // dx[o, k, i] = scale · g[o, i] (sum's and mean's backward; overwrites dx).
  void (*expand_axis)(const Tensor& g, int64_t outer, int64_t n, int64_t inner, double scale,
                      Tensor& dx) = nullptr;
  // y[o, i] = x[o, k*, i] and arg[o, i] = k* (i64), k* the first arg-max along k (a NaN, if
  // any, is the maximum); n ≥ 1.
  void (*max_axis)(const Tensor& x, int64_t outer, int64_t n, int64_t inner, Tensor& y,
                   Tensor& arg) = nullptr;
  // dx[o, k, i] = g[o, i] where k = arg[o, i], else 0 (max's backward; overwrites dx).
  void (*max_axis_backward)(const Tensor& g, const Tensor& arg, int64_t outer, int64_t n,
                            int64_t inner, Tensor& dx) = nullptr;

  // Broadcasting (ops/elementwise.cpp), f32. out[i] = a[α(i)] op b[β(i)], i walking `axes` (out's
  // layout) and α, β the offsets along axes.stride[0], [1]: any NumPy broadcast.
  void (*broadcast_binary)(BinaryOp op, const Tensor& a, const Tensor& b, const StridedAxes& axes,
                           Tensor& out) = nullptr;
  // sum_to's reduction: out[j] = Σ grad over the `summed` axes at the j-th point of the `kept`
  // axes (row-major), both walks' strides in grad ([0]); summed in row-major order, in double.
  void (*sum_to)(const Tensor& grad, const StridedAxes& kept, const StridedAxes& summed,
                 Tensor& out) = nullptr;

  // The feature maps (ops/attention/feature_maps.cpp, favor.cpp), f32.
  // y = elu(x) + 1 = e^min(x,0) + max(x,0); dx = dy ⊙ e^min(x,0) (overwrites dx).
  void (*elu_feature_map)(const Tensor& x, Tensor& y) = nullptr;
  void (*elu_feature_map_backward)(const Tensor& x, const Tensor& dy, Tensor& dx) = nullptr;
  // The same from x [B, N, H·D] to y [B, H, N, D] (split into `heads`), and back for dx.
  void (*elu_feature_map_heads)(const Tensor& x, int64_t heads, Tensor& y) = nullptr;
  void (*elu_feature_map_heads_backward)(const Tensor& x, const Tensor& dy, int64_t heads,
                                         Tensor& dx) = nullptr;
  // FAVOR+: x viewed as [R, D] rows, omega [m, D] → y [R, m],
  //   y = exp(c·X Ωᵀ − c²‖x_r‖²/2 − ln(m)/2),  c = D^{−1/4};
  // the backward overwrites dx [R, D] = c (G Ω − c diag(G 1) X), G = dy ⊙ y.
  void (*favor_feature_map)(const Tensor& x, const Tensor& omega, Tensor& y) = nullptr;
  void (*favor_feature_map_backward)(const Tensor& x, const Tensor& omega, const Tensor& y,
                                     const Tensor& dy, Tensor& dx) = nullptr;
};

}  // namespace polyak
