// Multi-head self-attention, one module per kind behind one interface.
//
// Dimension legend: B batch, N sequence length, d model width, H heads, D head dim.
//
//   x [B,N,d] ─qkv_proj→ q, k, v [B,N,H·D] ─split_heads→ [B,H,N,D]
//             ─mix (the kind)→ [B,H,N,D] ─merge_heads→ [B,N,H·D] ─out_proj→ dropout → [B,N,d]
//
// qkv_proj is one fused [3·H·D, d] weight (rows of q, then k, then v).
//
// Everything but `mix` is shared. A kind is one small class that overrides mix() (softmax:
// MATH.md §1; linear: §2; momentum: §3 is plain causal linear attention minus β times a
// decayed one, so it is one more mix()) and one entry in the table of make_attention().
// Kinds whose block is not "project, mix, project" (Mega's gated EMA attention) override
// forward() instead. The recurrent form for generation fits the same split: a kind adds its
// constant-size per-layer state and a step() that mixes one position against it, reusing
// qkv_proj and out_proj.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "nn/dropout.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace polyak {

struct AttentionConfig {
  std::string kind = "softmax";  // one of attention_kinds()
  int64_t d_model = 64;
  int64_t heads = 4;
  int64_t head_dim = 0;  // 0: d_model / heads (which must then divide)
  bool causal = true;
  double dropout = 0.0;             // on the block's output, after out_proj
  std::string feature_map = "elu";  // linear kinds: one of feature_map_kinds()
  double eps = 1e-6;                // linear kinds: added to the normaliser q·z

  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : d_model / heads; }
  // Throws polyak::Error naming the field, the value and what was expected.
  void validate() const;
};

// ---- feature maps (linear kinds) -------------------------------------------------------

// φ applied to q and k, [B,H,N,D] → [B,H,N,D']. A module so that maps with parameters or
// buffers (FAVOR+'s random features) fit the same slot.
class FeatureMap : public Module {
 public:
  virtual Tensor forward(const Tensor& x) const = 0;
  Tensor operator()(const Tensor& x) const { return forward(x); }
};

// φ(x) = elu(x) + 1 (Katharopoulos et al. 2020).
class EluFeatureMap final : public FeatureMap {
 public:
  Tensor forward(const Tensor& x) const override;
};

// "elu".
const std::vector<std::string>& feature_map_kinds();
std::shared_ptr<FeatureMap> make_feature_map(const std::string& kind, int64_t head_dim,
                                             Generator& gen);

// ---- the interface ---------------------------------------------------------------------

class Attention : public Module {
 public:
  Attention(const AttentionConfig& config, Generator& gen);

  // x [B, N, d] → [B, N, d].
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  const AttentionConfig& config() const { return config_; }

  std::shared_ptr<Linear> qkv_proj;  // weight [3·H·D, d]: rows of q, then k, then v
  std::shared_ptr<Linear> out_proj;  // weight [d, H·D]
  std::shared_ptr<Dropout> dropout;

 protected:
  // The kind: q, k, v [B, H, N, D] → [B, H, N, D].
  virtual Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v) = 0;

  AttentionConfig config_;
};

// softmax(q kᵀ / √D [+ causal mask]) v — MATH.md §1.
class SoftmaxAttention final : public Attention {
 public:
  SoftmaxAttention(const AttentionConfig& config, Generator& gen);

 protected:
  Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v) override;
};

// φ(q)ᵀ S / (φ(q)ᵀ z + eps), causal or not — MATH.md §2.
class LinearAttention final : public Attention {
 public:
  LinearAttention(const AttentionConfig& config, Generator& gen);

  std::shared_ptr<FeatureMap> feature_map;

 protected:
  Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v) override;
};

// The kinds make_attention() builds, in the order of its table.
std::vector<std::string> attention_kinds();
// Validates `config` and builds its kind; an unknown kind is a polyak::Error listing the
// valid ones.
std::shared_ptr<Attention> make_attention(const AttentionConfig& config, Generator& gen);

}  // namespace polyak
