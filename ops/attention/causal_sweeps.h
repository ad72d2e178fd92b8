// Causal sweeps behind the public momentum and decayed ops (internal to ops/attention).
// Arguments arrive validated; each records its own backward node.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
#pragma once

#include <vector>

#include "core/tensor.h"
#include "ops/attention/attention_checks.h"

namespace polyak::detail {

// Causal momentum attention, exact weighting (eq. 13), momentum_sweep.cpp:
//   y_i = Σ_{j≤i} w(i−j) (q_i·k_j) v_j / (Σ_{j≤i} q_i·k_j + eps),  w(m) = γ Σ_{u≤m} β^u.
// Records "CausalMomentumAttentionBackward".
Tensor causal_momentum_sweep(const AttentionDims& d, const Tensor& q, const Tensor& k,
                             const Tensor& v, double beta, double gamma, double eps);

// Causal linear attention with one weight per key, decayed_attention.cpp:
//   y_i = Σ_{j≤i} ω_j (q_i·k_j) v_j / (Σ_{j≤i} q_i·k_j + eps),  ω [N] (the same for every
// (b, h)). Records `node`.
Tensor causal_key_weighted_attention(const char* node, const AttentionDims& d, const Tensor& q,
                                     const Tensor& k, const Tensor& v,
                                     const std::vector<double>& weights, double eps);

}  // namespace polyak::detail
