// Momentum attention (docs/math.md §3; momentum transformer eq. 12–14). Its primitive, the
// decayed ("retention") causal linear attention, is in decayed_attention.h. Inputs are
// already feature-mapped (φ(q), φ(k)); every op has a hand-written backward with O(N·D)
// activation memory: no per-position D×Dv state is ever stored.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
// q, k [B,H,N,D], v [B,H,N,Dv] → y [B,H,N,Dv].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "polyak/core/tensor.h"
#include "polyak/ops/attention/decayed_attention.h"

namespace polyak {

// Which weight w_ij multiplies (q_i·k_j) v_j in the causal numerator.
enum class MomentumWeighting {
  // eq. 13, exactly what the recurrent form (eq. 12) computes at position i:
  //   w_ij = γ (1 − β^{i−j+1}) / (1 − β)     (γ (i−j+1) when β → 1 is excluded: β < 1)
  exact,
  // The public reference code's training weights: the last position's for every query,
  //   w_ij = γ (1 − β^{N−j+1}) / (1 − β).
  // It disagrees with the recurrent form at every position but the last; offered only to
  // reproduce that code.
  reference,
};

// "exact" | "reference"; parse throws polyak::Error naming the value and the choices.
const char* to_string(MomentumWeighting weighting);
MomentumWeighting parse_momentum_weighting(const std::string& name);

// Causal momentum attention (eq. 12–13):
//   y_i = Σ_{j≤i} w_ij (q_i·k_j) v_j / (Σ_{j≤i} q_i·k_j + eps)
// computed in O(N) time and O(N·D) memory by the causal sweep (causal_sweep_isa.cpp): with
// the exact weighting as eq. 12's two states, a β-decayed one and the plain sum of it
// (algebraically γ/(1−β) · [plain − β · decayed(β)], docs/math.md §3), with the reference
// weighting as causal linear attention with each key's term scaled by its weight.
// β ∈ [0, 1), γ > 0; β = 0 is γ × causal_linear_attention.
Tensor causal_momentum_attention(const Tensor& q, const Tensor& k, const Tensor& v, double beta,
                                 double gamma, double eps = 1e-6,
                                 MomentumWeighting weighting = MomentumWeighting::exact);

// Non-causal momentum attention (eq. 14):
//   y_i = γ Σ_{j<n} w_j (q_i·k_j) v_j / (Σ_{j<n} q_i·k_j + eps),
//   w_j = (1 − β^{n−j}) / (1 − β)     (j = 0..n−1, i.e. (1 − β^{N−j+1})/(1 − β) 1-based)
// where n is the sequence's true length: `lengths` holds one n per batch row (1 ≤ n ≤ N;
// keys at positions ≥ n are padding and ignored, and get zero gradients); empty means n = N
// for every row. k, v may have their own length M (k [B,H,M,D], v [B,H,M,Dv]); n then
// counts keys, 1 ≤ n ≤ M.
Tensor momentum_attention(const Tensor& q, const Tensor& k, const Tensor& v, double beta,
                          double gamma, double eps = 1e-6,
                          const std::vector<int64_t>& lengths = {});

// The recurrent step of causal momentum attention (eq. 12; form 3 of docs/design.md): one
// position q, k [B,H,D], v [B,H,Dv] → y [B,H,Dv] against the states m, s [B,H,D,Dv],
// z [B,H,D], updated in place:
//   m = β m − k vᵀ;  s = s − γ m;  z += k;  y = qᵀ s / (qᵀ z + eps)
// After i steps from zero states y is row i of causal_momentum_attention (exact weighting;
// the reference weighting has no recurrent form). No graph is recorded. An undefined state
// is created as zeros (the empty prefix); a state of the wrong shape or dtype is a
// polyak::Error naming the step, the tensor, what was seen and expected.
Tensor momentum_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& m,
                               Tensor& s, Tensor& z, double beta, double gamma, double eps = 1e-6);

// Throws polyak::Error "<fn>: beta = <β>, expected in [0, 1)" / "gamma = <γ>, expected > 0".
void check_momentum_parameters(const char* fn, double beta, double gamma);

}  // namespace polyak
