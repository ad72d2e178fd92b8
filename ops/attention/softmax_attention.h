// Softmax attention, docs/math.md §1: Y = softmax(Q Kᵀ / √D + mask) V.
#pragma once

#include "polyak/core/tensor.h"

namespace polyak {

// q, k [B, H, N, D], v [B, H, N, Dv] → [B, H, N, Dv]. `causal` masks j > i.
// Keys/values may have their own length M when not causal (k, v [B, H, M, ·]).
Tensor softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal);

}  // namespace polyak
