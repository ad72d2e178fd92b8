// The random kernel group (core/kernels_random.h) as kernel bodies and drivers
// (cuda/kernels/exec.h): compiled by nvcc for CUDA devices (cuda/random.cu) and by the host
// compiler for the tests' fake device (tests/fake_device.h). Each body has its CPU
// reference in ops/.
//
//   dropout                 one body per Philox block: its eight elements   (ops/dropout_isa.cpp)
//   relu_dropout_backward   one body per element                            (ops/dropout_isa.cpp)
#pragma once

#include <cstdint>

#include "polyak/core/kernels_random.h"
#include "polyak/core/philox.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::kernels {

// ---- bodies ----------------------------------------------------------------------------

// Block b of the stream gives elements [8b, 8b + 8): the same draws, in the same order, as
// the CPU's mask loop, and the same arithmetic (relu's select, one multiply, one add), so the
// values match the CPU's bit for bit.
struct DropoutBlock {
  const float* x;
  const float* addend;  // null: none
  float* out;
  int64_t n;
  uint64_t seed, first;
  const uint64_t* base;  // null: none (DropoutDraw)
  int32_t threshold;
  float scale;
  bool relu;
  POLYAK_HD void operator()(int64_t b) const {
    uint32_t w[4];
    philox_block(seed, (base ? *base : 0) + first + static_cast<uint64_t>(b), w);
    const int64_t i0 = 8 * b;
    const int64_t count = n - i0 < 8 ? n - i0 : 8;
    for (int64_t j = 0; j < count; ++j) {
      const uint32_t word = w[j / 2];
      const int32_t h = static_cast<int32_t>(j % 2 == 0 ? word & 0xFFFFu : word >> 16);
      float v = x[i0 + j];
      if (relu) v = v < 0.0f ? 0.0f : v;  // relu's select: NaN stays NaN
      v *= h >= threshold ? scale : 0.0f;
      if (addend) v += addend[i0 + j];
      out[i0 + j] = v;
    }
  }
};

struct ReluDropoutBackward {
  const float* y;
  const float* g;
  float* dx;
  float scale;
  POLYAK_HD void operator()(int64_t i) const {
    const float kept = g[i] * scale;
    dx[i] = y[i] > 0.0f ? kept : 0.0f;
  }
};

// ---- drivers: the Tensor-level entries of the table -------------------------------------

template <class Exec>
struct Random {
  static void dropout(const Tensor& x, const Tensor& addend, DropoutDraw d, bool relu,
                      Tensor& out) {
    Exec ex(x.device());
    const int64_t n = x.numel();
    ex.for_each(
        (n + 7) / 8,
        DropoutBlock{static_cast<const float*>(x.raw_data()),
                     addend.defined() ? static_cast<const float*>(addend.raw_data()) : nullptr,
                     static_cast<float*>(out.raw_data()), n, d.seed, d.first, d.base,
                     static_cast<int32_t>(d.threshold), d.scale, relu});
  }

  static void relu_dropout_backward(const Tensor& y, const Tensor& g, float scale, Tensor& dx) {
    Exec ex(y.device());
    ex.for_each(y.numel(), ReluDropoutBackward{static_cast<const float*>(y.raw_data()),
                                               static_cast<const float*>(g.raw_data()),
                                               static_cast<float*>(dx.raw_data()), scale});
  }
};

template <class Exec>
RandomKernels random_kernels() {
  RandomKernels k;
  k.dropout = &Random<Exec>::dropout;
  k.relu_dropout_backward = &Random<Exec>::relu_dropout_backward;
  return k;
}

}  // namespace polyak::kernels
