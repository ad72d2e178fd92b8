// The random kernel group of a device backend (core/backend.h, DeviceBackend::random): dropout,
// relu_dropout, dropout_add and the gate of relu_dropout_linear, drawing from the same
// counter-based Philox stream as the CPU (the same masks for the same seed). Entries left null are
// not provided; ops reach them through device_kernel(), which names the op and the device then.
// Every entry checks nothing that its op has checked: the op validates shapes, dtypes and devices
// on the host before it calls the kernel, allocates the outputs on the device and passes them in.
#pragma once

#include <cstdint>

#include "polyak/core/backend.h"

namespace polyak {

// Which 16-bit draws a dropout keeps (ops/dropout.cpp): element i takes half i mod 2 (low
// first) of word (i / 2) mod 4 of Philox block first + i / 8 of the stream of `seed`, and is
// kept when that half is ≥ threshold (< 2¹⁶). Kept elements are multiplied by scale. Inside a
// graph (core/graph.h) the stream starts at block *base + first instead: base is the device
// word that each replay refreshes with the generator's offset.
struct DropoutDraw {
  uint64_t seed = 0;
  uint64_t first = 0;
  const uint64_t* base = nullptr;
  uint32_t threshold = 0;
  float scale = 1;
};

struct RandomKernels {
  // out[i] = f(x[i]) · scale where draw i is kept, else 0, plus addend[i] when `addend` is
  // defined (dropout_add; same shape as x); f is relu when `relu` (relu_dropout), else the
  // identity. dropout's backward is the same call on the gradient. out may alias x.
  void (*dropout)(const Tensor& x, const Tensor& addend, DropoutDraw draw, bool relu,
                  Tensor& out) = nullptr;
  // dx[i] = g[i] · scale where y[i] > 0, else 0 (relu_dropout's backward from its output).
  void (*relu_dropout_backward)(const Tensor& y, const Tensor& g, float scale,
                                Tensor& dx) = nullptr;
};

}  // namespace polyak
