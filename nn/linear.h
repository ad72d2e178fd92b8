// Linear: y = x · Wᵀ + b over the last axis.
#pragma once

#include "polyak/core/rng.h"
#include "polyak/nn/module.h"

namespace polyak {

class Linear : public Module {
 public:
  // weight [out, in] and bias [out] drawn from U(−1/√in, 1/√in) (PyTorch's default).
  Linear(int64_t in_features, int64_t out_features, Generator& gen, bool with_bias = true);

  // x [..., in] → [..., out]: one GEMM with the bias fused.
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }

  Tensor weight;  // [out, in]
  Tensor bias;    // [out], or undefined
};

}  // namespace polyak
