// Feature maps for linear attention; separate ops so that they compose with every kind.
#pragma once

#include "polyak/core/tensor.h"

namespace polyak {

// φ(x) = elu(x) + 1 (> 0 everywhere): Katharopoulos et al. 2020.
Tensor elu_feature_map(const Tensor& x);

}  // namespace polyak
