// Neural-network functions: softmax, normalisation, embedding, dropout, cross-entropy.
#pragma once

#include "polyak/core/indices.h"
#include "polyak/core/rng.h"
#include "polyak/core/tensor.h"

namespace polyak {

Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);

// Over the last axis (width C): gamma, beta [C] (either may be undefined: no affine).
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps = 1e-5);
Tensor rms_norm(const Tensor& x, const Tensor& gamma, double eps = 1e-8);

// weight [V, C], ids of any shape with values in [0, V) → [ids.shape..., C]. The ids are
// Indices or an integer tensor (i32 or i64).
Tensor embedding(const Tensor& weight, const Indices& ids);
Tensor embedding(const Tensor& weight, const Tensor& ids);

// Zeroes each element with probability p and scales the rest by 1/(1−p) when training;
// identity otherwise. The mask is drawn from `gen` (counter-based; advances it).
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);
// dropout(relu(x), p, training, gen) in one pass: the same draws and the same values, with a
// backward that reads only the output and its gradient.
Tensor relu_dropout(const Tensor& x, double p, bool training, Generator& gen);
// residual + dropout(x, p, training, gen) in one pass: the same draws and the same values
// (a sublayer's output x joining the residual stream).
Tensor dropout_add(const Tensor& x, const Tensor& residual, double p, bool training,
                   Generator& gen);

// Mean cross-entropy of logits [..., V] against targets [...] over the targets not equal
// to `ignore_index`. The targets are Indices or an integer tensor (i32 or i64).
Tensor cross_entropy(const Tensor& logits, const Indices& targets, int32_t ignore_index = -100);
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index = -100);
// Weighted by mask [...] (0/1 or any non-negative weights): Σ mask·nll / Σ mask. A mask of
// logits' dtype gets a gradient; an integer mask (i32 or i64) is a constant weight.
Tensor cross_entropy(const Tensor& logits, const Indices& targets, const Tensor& mask);
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& mask);

}  // namespace polyak
