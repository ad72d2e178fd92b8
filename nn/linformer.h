// Linformer (docs/math.md §7; Wang et al. 2020): softmax attention on K and V projected along
// the sequence axis by learned E, F [k, max_len], shared by every head of the layer:
//
//   y = softmax(q (E_N k)ᵀ / √D) (F_N v),   E_N = E[:, 0:N], F_N = F[:, 0:N]
//
// q, k, v [B,H,N,D] → E_N k, F_N v [B,H,k,D] → y [B,H,N,D]: O(N·k) instead of O(N²).
// Not causal (every projected row mixes all N positions), so no recurrent form; the config
// needs causal = false and max_len ≥ N (AttentionConfig::validate, mix()).
#pragma once

#include "polyak/nn/attention.h"

namespace polyak {

// k, the projected sequence length of K and V.
struct LinformerParams {
  int64_t k = 64;
  static const ParamSchema& schema();
};

class LinformerAttention final : public Attention {
 public:
  // E ("proj_k") and F ("proj_v") [k, max_len] start with N(0, 1/k) entries:
  // the Johnson–Lindenstrauss projection of Linformer's analysis (§4), which keeps the norm
  // of each feature's sequence vector in expectation. Drawn from `gen` after the base
  // block's projections.
  LinformerAttention(const AttentionConfig& config, Generator& gen);

  Tensor proj_k;  // E [k, max_len]
  Tensor proj_v;  // F [k, max_len]

 protected:
  // N > max_len is a polyak::Error naming both.
  Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v) override;
};

const AttentionSpec& linformer_attention_spec();

}  // namespace polyak
