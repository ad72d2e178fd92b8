// TransNormer's attentions (docs/math.md §5; Qin et al. 2022): NormAttention and DiagAttention.
// A "transnormer" model stacks DiagAttention in the first half of its layers and
// NormAttention in the second (models/transformer.h).
//
// Dimension legend: B batch, N length, d model width, H heads, D head dim, D' feature width,
// L block length.
//
//   NormAttention  x ─qkv_proj→ q, k, v [B,H,N,D] ─φ→ φ(q) (φ(k)ᵀ v) [B,H,N,D]
//                    ─merge_heads→ [B,N,H·D] ─SRMSNorm→ out_proj → dropout → [B,N,d]
//   DiagAttention  the shared block with mix = softmax attention inside blocks of L
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "polyak/nn/attention.h"

namespace polyak {

// NormAttention's φ.
struct NormParams {
  std::string feature_map = "elu";  // "elu" (TransNormer's t2) | "plain-elu" (t1)
  static const ParamSchema& schema();
};

// DiagAttention's block.
struct DiagParams {
  int64_t block_size = 64;
  static const ParamSchema& schema();
};

// The "transnormer" stack: DiagAttention (blocks of block_size) in the first half of the
// layers (index < layers / 2), NormAttention (φ = feature_map) in the rest.
struct TransNormerParams {
  int64_t block_size = 64;
  std::string feature_map = "elu";
  static const ParamSchema& schema();
};

// SRMSNorm(φ(Q) (φ(K)ᵀ V)) over the concatenated heads, then out_proj: no denominator and
// no 1/√D scaling, which is TransNormer's remedy for linear attention's unbounded
// gradients. Causal through the causal product (O(N) memory); not causal through two
// GEMMs. φ is NormParams::feature_map ("elu": 1 + elu, TransNormer's t2; "plain-elu": t1).
// Recurrent state {s [B,H,D',D]}: s += φ(k) vᵀ, y = SRMSNorm(sᵀ φ(q) over H·D).
class NormAttention final : public Attention {
 public:
  NormAttention(const AttentionConfig& config, Generator& gen);
  // x [B, N, d] → [B, N, d] before the closing dropout. Probes q, k, v and the normed
  // output (the input of out_proj).
  Tensor sublayer(const Tensor& x) override;

  std::shared_ptr<FeatureMap> feature_map;

 protected:
  // φ(q) (φ(k)ᵀ v) per head, before the norm: [B, H, N, D].
  Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v) override;
  // The product's step, then SRMSNorm over the H·D values of the position.
  Tensor mix_step(const Tensor& q, const Tensor& k, const Tensor& v,
                  AttentionState& state) override;
  std::vector<StateSlot> state_layout(int64_t batch) const override;

 private:
  int64_t feature_width_ = 0;  // D': the width of φ(q), φ(k), the state's key axis
};

// Softmax attention inside non-overlapping blocks of DiagParams::block_size positions, causal
// inside a block when config.causal. Not causal, N must be a multiple of the block (or at
// most one block). Recurrent state {k_cache [B,H,L,D], v_cache [B,H,L,D]}: the current
// block only, so the state does not grow with the position.
class DiagAttention final : public Attention {
 public:
  DiagAttention(const AttentionConfig& config, Generator& gen);

 protected:
  Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v) override;
  Tensor mix_step(const Tensor& q, const Tensor& k, const Tensor& v,
                  AttentionState& state) override;
  std::vector<StateSlot> state_layout(int64_t batch) const override;

 private:
  int64_t block_size_;
};

const AttentionSpec& norm_attention_spec();
const AttentionSpec& diag_attention_spec();
const AttentionSpec& transnormer_spec();

}  // namespace polyak
