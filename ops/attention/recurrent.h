// Recurrent (RNN-mode) steps of the causal attention kinds: form (3) of docs/design.md, used for
// generation. One position per call against a constant-size state (softmax: a KV cache
// that grows by one row per step). Not differentiable: they run under no-grad and never
// record a node.
//
// Dimension legend: B batch, H heads, D query/key width, Dv value width, C cache capacity.
// q, k [B,H,D] (already feature-mapped for the linear kinds), v [B,H,Dv] → y [B,H,Dv].
// The state tensors are updated in place and must have q's dtype; a state of the wrong
// shape or dtype is a polyak::Error naming the step, the tensor, what was seen and expected.
// An undefined state tensor is created as zeros of the right shape (the empty prefix).
#pragma once

#include <cstdint>

#include "polyak/core/tensor.h"

namespace polyak {

// Causal linear attention (docs/math.md §2, eq. 7–8): s [B,H,D,Dv], z [B,H,D].
//   s += k vᵀ;  z += k;  y = qᵀ s / (qᵀ z + eps)
Tensor linear_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& s,
                             Tensor& z, double eps = 1e-6);

// Momentum attention (docs/math.md §3, eq. 12): m, s [B,H,D,Dv], z [B,H,D].
//   m = β m − k vᵀ;  s = s − γ m;  z += k;  y = qᵀ s / (qᵀ z + eps)
Tensor momentum_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& m,
                               Tensor& s, Tensor& z, double beta, double gamma, double eps = 1e-6);

// Causal softmax attention (docs/math.md §1) with a KV cache: k_cache [B,H,C,D],
// v_cache [B,H,C,Dv], `length` rows filled so far (≤ C). Appends k, v at row `length`
// (reallocating both caches with capacity max(2C, 64) when they are full), increments it,
// and returns softmax(q k_cacheᵀ / √D) v_cache over the filled rows. Undefined caches
// (both, with length 0) start with capacity 64.
Tensor softmax_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& k_cache,
                              Tensor& v_cache, int64_t& length);

}  // namespace polyak
