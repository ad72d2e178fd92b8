// Shape ops: permute/transpose (copies), slice and concat along any axis, split/merge heads.
#pragma once

#include <vector>

#include "polyak/core/tensor.h"

namespace polyak {

Tensor reshape(const Tensor& x, const Shape& shape);                // view; same as x.reshape
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);  // contiguous copy
Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1);
// Elements [begin, end) along `axis`.
Tensor slice(const Tensor& x, int64_t axis, int64_t begin, int64_t end);
Tensor concat(const std::vector<Tensor>& xs, int64_t axis);
// Splits `axis` into pieces of the given sizes (must sum to the extent).
std::vector<Tensor> split(const Tensor& x, int64_t axis, const std::vector<int64_t>& sizes);
// [B, N, H·D] → [B, H, N, D]  and back.
Tensor split_heads(const Tensor& x, int64_t heads);
Tensor merge_heads(const Tensor& x);

}  // namespace polyak
