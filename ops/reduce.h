// Reductions: sum, mean, max over one axis or over all elements.
#pragma once

#include "polyak/core/tensor.h"

namespace polyak {

Tensor sum(const Tensor& x);  // all elements → shape []
Tensor sum(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, int64_t axis, bool keepdim = false);
// Max values; the gradient flows to the (first) arg-max.
Tensor max(const Tensor& x);
Tensor max(const Tensor& x, int64_t axis, bool keepdim = false);

}  // namespace polyak
