// Mega's moving-average gated attention (docs/math.md §6; Ma et al. 2022; facebookresearch/mega
// MovingAverageGatedAttention), kinds "mega" (attention over the whole sequence) and
// "mega-chunk" (attention only inside consecutive chunks of block_size: linear in N).
//
// Dimension legend: B batch, N positions, d model width (= the EMA's channels), n EMA
// dimensions, z shared query/key width, v value width.
//
//   X′ = silu(EMA(x) + ω ⊙ x)                                        [B,N,d]
//   V  = silu(x W_v + b_v)                                           [B,N,v]
//   u, z̃, r̃, hx = X′ W_mx + b_mx    (row blocks of one [2d + z + v, d] weight)
//   φ_u = σ(u) [d];  Z = silu(z̃) [z];  r = silu(r̃) [v]
//   Q = Z ⊙ κ_q + μ_q,  K = Z ⊙ κ_k + μ_k                            [B,N,z]
//   O = attention(Q, K, V) with the relative position bias           [B,N,v]
//   Ĥ = silu(hx + (O ⊙ r) W_h + b_h)                                 [B,N,d]
//   out = dropout(φ_u ⊙ (Ĥ − x))
// The layer's residual connection adds x, giving Mega's x + φ_u ⊙ (Ĥ − x).
//
// The EMA runs forwards in time when causal; otherwise it is bidirectional, the sum of a
// forward and a reverse EMA with their own parameters. The reverse EMA includes x_t itself
// (the reference code shifts it by one position so that x_t enters only the forward
// half); with separate parameters per direction this only re-parametrises x_t's weight.
// The attention (ops/attention/mega_attention.h) is softmax(QKᵀ/√z + bias [+ causal
// mask]) or, with mega_attention = "laplace", laplace(QKᵀ/L + bias) masked, where
// bias_ij = b[j − i + L − 1].
//
// L, the bias's reach, is max_len for "mega" and block_size for "mega-chunk". Deviation
// from the reference code: it divides laplace scores by the number of keys attended (the
// sequence or chunk length at hand); polyak divides by the constant L, so that a
// position's output does not depend on how long the sequence grows after it and the
// recurrent form equals the parallel one.
//
// "mega" takes N ≤ max_len. "mega-chunk" takes any N, causal or not: the last chunk may be
// partial, and is then a shorter chunk of its own.
//
// Recurrent form (causal only): state {h [B,d,n] (the EMA), k_cache [B,C,z],
// v_cache [B,C,v]}; "mega" keeps every position (C grows), "mega-chunk" keeps the current
// chunk (C = block_size, rewritten chunk by chunk).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "polyak/nn/attention.h"
#include "polyak/nn/linear.h"
#include "polyak/ops/attention/mega_attention.h"

namespace polyak {

// Mega's settings (docs/math.md §6): n EMA dimensions per channel, the shared Q/K width z,
// the value width (0: d_model) and the attention function.
struct MegaParams {
  int64_t ema_dim = 16;
  int64_t z_dim = 64;
  int64_t v_dim = 0;
  std::string attention = "softmax";  // "softmax" | "laplace"
  static const ParamSchema& schema();
};

// Mega-chunk's: Mega's, and the chunk its attention runs in.
struct MegaChunkParams {
  int64_t ema_dim = 16;
  int64_t z_dim = 64;
  int64_t v_dim = 0;
  std::string attention = "softmax";
  int64_t block_size = 64;
  static const ParamSchema& schema();
};

class MegaAttention final : public Attention {
 public:
  MegaAttention(const AttentionConfig& config, Generator& gen);

  // x [B, N, d] → [B, N, d], before the closing dropout.
  Tensor sublayer(const Tensor& x) override;
  // x [B, 1, d] → [B, 1, d]: row state.position of forward() on the whole prefix.
  Tensor step(const Tensor& x, AttentionState& state) override;
  int64_t step_limit() const override { return chunked_ ? 0 : config_.max_len; }

  // EMA coefficients per direction (forward; then reverse when not causal): [K, d, n].
  Tensor ema_delta;                 // p = σ(δ)
  Tensor ema_alpha;                 // α′ = σ(α): the decay is q = 1 − p ⊙ α′
  Tensor ema_beta;                  // input gain g = p ⊙ β
  Tensor ema_eta;                   // output weights w = η / √n
  Tensor ema_omega;                 // [d]: the residual ω ⊙ x added to the EMA
  std::shared_ptr<Linear> v_proj;   // [v, d]
  std::shared_ptr<Linear> mx_proj;  // [2d + z + v, d]: rows of u, Z, r, hx
  std::shared_ptr<Linear> h_proj;   // [d, v]
  Tensor qk_scale;                  // [2, z]: κ_q, κ_k
  Tensor qk_offset;                 // [2, z]: μ_q, μ_k
  Tensor rel_bias;                  // [2L − 1]

 protected:
  // Q, K [B, H, N, z], V [B, H, N, v] → O [B, H, N, v]: Mega's attention for each of the
  // B·H rows (forward() passes H = 1).
  Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v) override;
  std::vector<StateSlot> state_layout(int64_t batch) const override;

 private:
  // Everything the block computes from x [..., d] and X′ [..., d] before the attention
  // (u before its sigmoid).
  struct Gate {
    Tensor u, q, k, v, r, hx;
  };
  // g, q, w [d, n] of EMA direction `direction` (0: forward, 1: reverse).
  struct EmaCoefficients {
    Tensor g, q, w;
  };

  EmaCoefficients ema_coefficients(int64_t direction) const;
  Gate gate(const Tensor& x, const Tensor& mx) const;
  // φ_u ⊙ (silu(hx + (O ⊙ r) W_h + b_h) − x), before dropout.
  Tensor output(const Tensor& x, const Gate& gate, const Tensor& o) const;
  // The chunk length the attention runs on: block_size, or max_len for "mega".
  int64_t window() const;
  int64_t v_dim() const { return params_.v_dim > 0 ? params_.v_dim : config_.d_model; }

  bool chunked_;
  MegaParams params_;   // Mega-chunk's too, but the chunk
  int64_t block_size_;  // Mega-chunk's chunk (0 for Mega)
  MegaScore score_;
};

const AttentionSpec& mega_attention_spec();
const AttentionSpec& mega_chunk_spec();

}  // namespace polyak
