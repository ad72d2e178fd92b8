// Softmax attention, docs/math.md §1: Y = softmax(Q Kᵀ / √D + mask) V.
#pragma once

#include <cstdint>

#include "polyak/core/tensor.h"

namespace polyak {

// q, k [B, H, N, D], v [B, H, N, Dv] → [B, H, N, Dv]. `causal` masks j > i.
// Keys/values may have their own length M when not causal (k, v [B, H, M, ·]).
Tensor softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal);

// The recurrent step of causal softmax attention (form 3 of docs/design.md) with a KV cache:
// q, k [B,H,D], v [B,H,Dv] → y [B,H,Dv]; k_cache [B,H,C,D], v_cache [B,H,C,Dv], `length`
// rows filled so far (≤ C). Appends k, v at row `length` (reallocating both caches with
// capacity max(2C, 64) when they are full), increments it, and returns
// softmax(q k_cacheᵀ / √D) v_cache over the filled rows. Undefined caches (both, with
// length 0) start with capacity 64, on q's device (where the caches must live). No graph is
// recorded; a cache of the wrong shape or dtype is a polyak::Error naming the step, the tensor,
// what was seen and expected.
Tensor softmax_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& k_cache,
                              Tensor& v_cache, int64_t& length);

}  // namespace polyak
