// Broadcasting on a device (the shape group, core/kernels_shape.h): any NumPy broadcast of a
// binary op, and its backward's reduction sum_to, as kernel bodies and drivers
// (cuda/kernels/exec.h). CPU reference: ops/elementwise.cpp.
//
//   broadcast_binary  out[i] = a[α(i)] op b[β(i)]      one body per element of out
//   sum_to            out[j] = Σ_t grad[κ(j) + σ(t)]    one body per element of out: an
//                                                       ordered loop over the summed axes
//
// α, β, κ, σ are the offsets of a row-major index along the strides of a StridedAxes; the op
// coalesces adjacent axes that broadcast alike, so a walk has few axes.
#pragma once

#include <cstdint>

#include "polyak/core/kernels_shape.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::kernels {

// ---- bodies ----------------------------------------------------------------------------

POLYAK_HD inline float binary_value(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::add:
      return a + b;
    case BinaryOp::sub:
      return a - b;
    case BinaryOp::mul:
      return a * b;
    default:
      return a / b;
  }
}

struct BroadcastBinaryBody {
  const float* a;
  const float* b;
  float* out;
  BinaryOp op;
  StridedAxes axes;
  POLYAK_HD void operator()(int64_t i) const {
    int64_t oa = 0, ob = 0, rest = i;
    for (int k = axes.rank - 1; k >= 0; --k) {
      const int64_t at = rest % axes.dims[k];
      rest /= axes.dims[k];
      oa += at * axes.stride[0][k];
      ob += at * axes.stride[1][k];
    }
    out[i] = binary_value(op, a[oa], b[ob]);
  }
};

struct SumToBody {
  const float* grad;
  float* out;
  StridedAxes kept, summed;
  int64_t count;  // the number of summed elements per output: Π summed.dims
  POLYAK_HD void operator()(int64_t j) const {
    int64_t base = 0, rest = j;
    for (int k = kept.rank - 1; k >= 0; --k) {
      base += (rest % kept.dims[k]) * kept.stride[0][k];
      rest /= kept.dims[k];
    }
    // An odometer over the summed axes, the last fastest.
    int64_t at[StridedAxes::kMaxRank] = {};
    int64_t offset = base;
    double s = 0;
    for (int64_t t = 0; t < count; ++t) {
      s += static_cast<double>(grad[offset]);
      for (int k = summed.rank - 1; k >= 0; --k) {
        offset += summed.stride[0][k];
        if (++at[k] < summed.dims[k]) break;
        offset -= summed.stride[0][k] * summed.dims[k];
        at[k] = 0;
      }
    }
    out[j] = static_cast<float>(s);
  }
};

// ---- drivers: the Tensor-level entries of the table -------------------------------------

template <class Exec>
struct BroadcastOps {
  static void broadcast_binary(BinaryOp op, const Tensor& a, const Tensor& b,
                               const StridedAxes& axes, Tensor& out) {
    Exec(a.device())
        .for_each(out.numel(), BroadcastBinaryBody{static_cast<const float*>(a.raw_data()),
                                                   static_cast<const float*>(b.raw_data()),
                                                   static_cast<float*>(out.raw_data()), op, axes});
  }

  static void sum_to(const Tensor& grad, const StridedAxes& kept, const StridedAxes& summed,
                     Tensor& out) {
    int64_t count = 1;
    for (int k = 0; k < summed.rank; ++k) count *= summed.dims[k];
    Exec(grad.device())
        .for_each(out.numel(), SumToBody{static_cast<const float*>(grad.raw_data()),
                                         static_cast<float*>(out.raw_data()), kept, summed, count});
  }
};

}  // namespace polyak::kernels
