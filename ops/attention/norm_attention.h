// TransNormer's ops (docs/math.md §5; Qin et al. 2022, "The Devil in Linear Transformer"):
// SRMSNorm, the normaliser NormAttention puts in place of linear attention's denominator;
// block-diagonal softmax attention, DiagAttention's mixing; and the recurrent steps of both.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width,
// L block length, d the normalised width.
#pragma once

#include <cstdint>

#include "polyak/core/tensor.h"

namespace polyak {

// SRMSNorm over the last axis (width d), no learnable gain:
//   r = ‖x‖₂ · d^{−1/2} = √(mean(x²)),  s = 1/(r + eps),  y = x · s
// eps > 0 and finite (it keeps a zero row finite: y = 0 there). x [..., d] → [..., d].
Tensor srms_norm(const Tensor& x, double eps = 1e-8);

// Softmax attention (scaled by D^{−1/2}) inside consecutive blocks of `block` positions:
// position i attends to the positions j of its own block (⌊i/L⌋ = ⌊j/L⌋), j ≤ i when causal.
// q, k [B,H,N,D], v [B,H,N,Dv] → [B,H,N,Dv]; block > 0.
// Causal: any N; the last block may be partial, so a prefix of the sequence has the same
// outputs (what the recurrent step computes). Not causal: N a multiple of block, or
// N ≤ block (one block); anything else is an error asking to pad the sequence.
Tensor block_softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t block,
                               bool causal);

// ---- recurrent steps (no-grad; states updated in place, as linear_attention_step's) ----
// q, k [B,H,D], v [B,H,Dv] → y [B,H,Dv]. A state of the wrong shape or dtype is a
// polyak::Error naming the step, the tensor, what was seen and what was expected; an
// undefined state is created as zeros (the empty prefix).

// NormAttention's product, causal_dot_product one position at a time: s [B,H,D,Dv].
//   s += k vᵀ;  y = sᵀ q          (no denominator)
Tensor causal_dot_product_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& s);

// DiagAttention's step at `position` p (0-based; the positions consumed before this one):
// k_cache [B,H,L,D], v_cache [B,H,L,Dv] hold the current block only. Writes k, v at row
// r = p mod L and returns softmax(q k_cache[0..r]ᵀ / √D) v_cache[0..r]: rows left over from
// earlier blocks are never read. Undefined caches are allowed only at a block's start.
Tensor block_softmax_attention_step(const Tensor& q, const Tensor& k, const Tensor& v,
                                    Tensor& k_cache, Tensor& v_cache, int64_t block,
                                    int64_t position);

}  // namespace polyak
