// The nn kernel group (core/kernels_nn.h) as kernel bodies and drivers (cuda/kernels/exec.h):
// compiled by nvcc for CUDA devices (cuda/nn.cu) and by the host compiler for the tests'
// fake device (tests/fake_device.h). Each body has its CPU reference in ops/.
//
//   embedding   out[i, c] = weight[ids[i], c]       one body per (i, c); NaN for a bad id
#pragma once

#include <cstdint>
#include <limits>

#include "polyak/core/kernels_nn.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::kernels {

// ---- bodies ----------------------------------------------------------------------------

template <class Id>
struct EmbeddingForward {
  const float* weight;  // [V, C]
  const Id* ids;        // [n]
  float* out;           // [n, C]
  int64_t V, C;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t i = e / C, c = e % C;
    const int64_t id = static_cast<int64_t>(ids[i]);
    out[e] = id >= 0 && id < V ? weight[id * C + c] : std::numeric_limits<float>::quiet_NaN();
  }
};

// ---- drivers: the Tensor-level entries of the table -------------------------------------

template <class Exec>
struct Nn {
  static void embedding(const Tensor& weight, const Tensor& ids, Tensor& out) {
    Exec ex(weight.device());
    const int64_t n = ids.numel(), V = weight.size(0), C = weight.size(1);
    const auto* w = static_cast<const float*>(weight.raw_data());
    auto* y = static_cast<float*>(out.raw_data());
    if (ids.dtype() == DType::i64)
      ex.for_each(n * C, EmbeddingForward<int64_t>{w, static_cast<const int64_t*>(ids.raw_data()),
                                                   y, V, C});
    else
      ex.for_each(n * C, EmbeddingForward<int32_t>{w, static_cast<const int32_t*>(ids.raw_data()),
                                                   y, V, C});
  }
};

template <class Exec>
NnKernels nn_kernels() {
  NnKernels k;
  k.embedding = &Nn<Exec>::embedding;
  return k;
}

}  // namespace polyak::kernels
