// Feature maps for linear attention; separate ops so that they compose with every kind.
#pragma once

#include "polyak/core/tensor.h"

namespace polyak {

// φ(x) = elu(x) + 1 (> 0 everywhere): Katharopoulos et al. 2020.
Tensor elu_feature_map(const Tensor& x);

// elu_feature_map(split_heads(x, heads)) in one pass, forward and backward:
// x [B, N, H·D] (as a projection makes it) → [B, H, N, D].
Tensor elu_feature_map_heads(const Tensor& x, int64_t heads);

}  // namespace polyak
