// Linear attention, docs/math.md §2. Inputs are already feature-mapped (φ(q), φ(k)).
// The causal forms are the causal sweep without decay (causal_linear_attention.cpp).
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

// The recurrent step of causal linear attention (form 3 of docs/design.md): one position
// q, k [B,H,D], v [B,H,Dv] → y [B,H,Dv] against the states s [B,H,D,Dv], z [B,H,D],
// updated in place:
//   s += k vᵀ;  z += k;  y = qᵀ s / (qᵀ z + eps)
// After i steps from zero states y is row i of causal_linear_attention. No graph is
// recorded. An undefined state is created as zeros (the empty prefix); a state of the wrong
// shape or dtype is a polyak::Error naming the step, the tensor, what was seen and expected.
Tensor linear_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& s,
                             Tensor& z, double eps = 1e-6);

}  // namespace polyak
