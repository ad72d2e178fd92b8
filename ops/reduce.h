// Reductions: sum, mean, max over one axis or over all elements; argmax over one axis.
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
// The index of the (first) maximum along `axis` (a NaN, if any, is the maximum): an i64
// tensor of x's shape without that axis. No gradient (indices are constants).
Tensor argmax(const Tensor& x, int64_t axis = -1);

}  // namespace polyak
