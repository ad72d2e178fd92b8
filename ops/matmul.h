// Matrix products (polyak's own GEMM for f32, Eigen's for f64; OpenMP threads), with
// BLAS-style transpose flags.
#pragma once

#include "polyak/core/rng.h"
#include "polyak/core/tensor.h"

namespace polyak {

// op(a) · op(b), op = transpose of the last two axes when the flag is set.
//   a [..., M, K] (or [..., K, M] with trans_a), b [..., K, N] (or [..., N, K]).
// Batch axes of a and b must be equal, or b may be 2-D (shared across a's batch).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// y = x · Wᵀ + bias: x [..., in], weight [out, in], bias [out] or undefined.
// The leading axes of x are folded into one GEMM.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// linear(relu_dropout(x, p, training, gen), weight, bias) as one node (the feed-forward's
// second layer): the same draws and the same values, with a backward whose dX GEMM applies
// ReLU's and dropout's gradient to each tile of its product while the tile is in cache,
// instead of a pass of its own over [..., in]. CPU (a CUDA x runs the two ops).
Tensor relu_dropout_linear(const Tensor& x, double p, bool training, Generator& gen,
                           const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace polyak
