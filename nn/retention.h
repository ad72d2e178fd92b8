// RetNet's multi-scale retention (Sun et al. 2023; docs/math.md §3.4) as an attention kind:
// decayed causal linear attention with a fixed decay per head, no feature map and no
// normaliser, a group norm per head and a swish gate.
//
// Dimension legend: B batch, N length, d model width, H heads, D head dim.
//
//   x [B,N,d] ─qkv_proj→ q, k, v [B,H,N,D]
//     o_i = Σ_{j≤i} γ_h^{i−j} (q_i·k_j / √D) v_j,   γ_h = 1 − 2^(−5−h)  (h = 0 … H−1)
//     y = GroupNorm_H(o): each head's D values normalised per position, then a per-channel
//         scale and shift over the H·D channels
//   out = (swish(x W_g + b_g) ⊙ y) W_o + b_o → dropout → [B,N,d]
//
// Recurrent form: per head a D×D state, s = γ_h s + k vᵀ, o = qᵀ s / √D, then the same norm
// and gate. Causal only (the decay runs forward in time). Deviation from RetNet: no xPos
// rotation of q and k (the decay alone carries position), and v has the head width D.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "polyak/nn/attention.h"
#include "polyak/nn/linear.h"

namespace polyak {

// Retention's settings: the gate and the group norm's ε.
struct RetentionParams {
  std::string gate = "swish";  // "swish" (RetNet) | "none"
  double norm_eps = 1e-5;
  static const ParamSchema& schema();
};

class RetentionAttention final : public Attention {
 public:
  // qkv_proj and out_proj as every kind; then gate_proj [H·D, d] (when gated) and the
  // group norm's scale (ones) and shift (zeros), [H·D] each.
  RetentionAttention(const AttentionConfig& config, Generator& gen);

  // x [B, N, d] → [B, N, d] before the closing dropout. Probes q, k, v and the gated output
  // (the input of out_proj).
  Tensor sublayer(const Tensor& x) override;
  // x [B, 1, d] → [B, 1, d]: row state.position of forward() on the whole prefix.
  Tensor step(const Tensor& x, AttentionState& state) override;

  // γ_h = 1 − 2^(−5−h) for h = 0 … H−1.
  std::vector<double> decays() const;

  std::shared_ptr<Linear> gate_proj;  // null when gate = "none"
  Tensor norm_weight;                 // [H·D]
  Tensor norm_bias;                   // [H·D]

 protected:
  // The retention of each head before the norm: q, k, v [B, H, N, D] → o [B, H, N, D].
  Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v) override;
  std::vector<StateSlot> state_layout(int64_t batch) const override;

 private:
  // o [B, H, T, D] (T positions) and the block's input x [B, T, d] → the input of out_proj,
  // [B, T, H·D]: group norm, then the gate.
  Tensor norm_and_gate(const Tensor& o, const Tensor& x) const;

  RetentionParams params_;
};

const AttentionSpec& retention_spec();

}  // namespace polyak
