// Linear attention, docs/math.md §2. Inputs are already feature-mapped (φ(q), φ(k)).
#pragma once

#include "polyak/core/tensor.h"

namespace polyak {

// y_i = q_iᵀ S / (q_iᵀ z + eps), S = Σ_j k_j v_jᵀ, z = Σ_j k_j (all positions).
// q [B, H, N, D], k [B, H, M, D], v [B, H, M, Dv] → [B, H, N, Dv].
Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, double eps = 1e-6);

// y_i = q_iᵀ s_i / (q_iᵀ z_i + eps), s_i = Σ_{j≤i} k_j v_jᵀ, z_i = Σ_{j≤i} k_j.
// O(N·D) activation memory: no per-position D×Dv state is stored; the backward recomputes
// the states in two sweeps (docs/math.md §2).
Tensor causal_linear_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                               double eps = 1e-6);

// The causal numerator alone, o_i = q_iᵀ Σ_{j≤i} k_j v_jᵀ (no normaliser), same memory.
Tensor causal_dot_product(const Tensor& q, const Tensor& k, const Tensor& v);

}  // namespace polyak
