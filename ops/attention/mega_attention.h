// Mega's attention (docs/math.md §6; facebookresearch/mega MovingAverageGatedAttention): one
// head, a learned relative position bias, over the whole sequence or only inside
// consecutive chunks, with a softmax or the laplace attention function. On the CPU and on
// devices (core/kernels_attention.h).
//
// Dimension legend: B batch, N positions, D query/key width, Dv value width, W the window
// (chunk length, at most N), L the reach of the bias: rel_bias has 2L − 1 entries,
// b[o + L − 1] for the offsets o = j − i ∈ [−(L − 1), L − 1].
#pragma once

#include <cstdint>
#include <string>

#include "polyak/core/tensor.h"

namespace polyak {

enum class MegaScore {
  softmax,  // p_i = softmax_j(q_i·k_j / √D + b[j − i + L − 1])
  laplace,  // p_ij = laplace(q_i·k_j / L + b[j − i + L − 1]), no normalisation
};
// laplace(s) = ½ · (1 + erf((s − μ) / (σ √2))), μ = √½, σ = √(1/(4π)): a Gaussian CDF, the
// bounded and smooth stand-in for relu² that Mega proposes (Ma et al. 2022).

// "softmax" | "laplace"; parse throws polyak::Error naming the value and the choices.
const char* to_string(MegaScore score);
MegaScore parse_mega_score(const std::string& name);

// q, k [B,N,D], v [B,N,Dv], rel_bias [2L − 1] → y [B,N,Dv], y_i = Σ_j p_ij v_j, where j runs
// over the chunk of i — positions [cW, (c + 1)W) ∩ [0, N) for W = min(chunk, N), so the last
// chunk may be shorter — and, when causal, j ≤ i. Offsets j − i are taken inside the chunk,
// so L ≥ W is required. Differentiable in q, k, v and rel_bias; saves one W-wide row per
// position (O(N·W)).
Tensor mega_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& rel_bias,
                      int64_t chunk, bool causal, MegaScore score);

// One causal step for generation: q, k [B,D], v [B,Dv]; k_cache [B,C,D], v_cache [B,C,Dv].
// Writes k and v at row `row` of the caches (first growing both to capacity max(2C, 64)
// when row = C), then attends from a query at window position `row` to rows 0 … row:
// row `row` of mega_attention's causal form on the chunk held by the caches. row < L.
// → y [B,Dv]. Not differentiable (records nothing).
Tensor mega_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& k_cache,
                           Tensor& v_cache, int64_t row, const Tensor& rel_bias, MegaScore score);

}  // namespace polyak
