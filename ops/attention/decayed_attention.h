// Decayed ("retention") causal linear attention, docs/math.md §3.1: the primitive of
// momentum attention, and with one decay per head a RetNet-style retention. Inputs are
// already feature-mapped (φ(q), φ(k)); every op has a hand-written backward with O(N·D)
// activation memory: no per-position D×Dv state is ever stored.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
// q, k [B,H,N,D], v [B,H,N,Dv] → y [B,H,N,Dv].
#pragma once

#include <vector>

#include "polyak/core/tensor.h"

namespace polyak {

// o_i = Σ_{j≤i} λ^{i−j} (q_i·k_j) v_j, λ = `decay` ∈ [0, 1]. No normaliser.
// λ = 1 is causal_dot_product; λ = 0 keeps only j = i.
Tensor decayed_causal_dot_product(const Tensor& q, const Tensor& k, const Tensor& v, double decay);

// The same with one decay per head: o_i = Σ_{j≤i} λ_h^{i−j} (q_i·k_j) v_j in head h, with
// `decays` holding H values λ_h ∈ (0, 1]. No normaliser.
Tensor decayed_causal_dot_product(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const std::vector<double>& decays);

// y_i = Σ_{j≤i} λ^{i−j} (q_i·k_j) v_j / (Σ_{j≤i} λ^{i−j} q_i·k_j + eps).
Tensor decayed_causal_linear_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                       double decay, double eps = 1e-6);

// The recurrent step of decayed_causal_dot_product with per-head decays (form 3 of
// docs/design.md): one position q, k [B,H,D], v [B,H,Dv] → y [B,H,Dv] against the state
// s [B,H,D,Dv], updated in place:
//   s = λ_h s + k vᵀ;  y = qᵀ s
// After i steps from a zero state y is row i of decayed_causal_dot_product(…, decays). No
// graph is recorded. An undefined state is created as zeros (the empty prefix); a state of
// the wrong shape or dtype is a polyak::Error naming the step, the tensor, what was seen and
// expected.
Tensor decayed_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& s,
                              const std::vector<double>& decays);

}  // namespace polyak
