// TransNormer's attention modules (docs/math.md §5). Legend: B batch, N length, d width, H heads,
// D head dim, D' feature width, L block length.
#include "polyak/nn/transnormer.h"

#include "polyak/ops/attention/linear_attention.h"
#include "polyak/ops/attention/norm_attention.h"
#include "polyak/ops/matmul.h"
#include "polyak/ops/shape_ops.h"

namespace polyak {

namespace {

// SRMSNorm's ε (TransNormer's reference code): it only keeps a zero row finite.
constexpr double kSrmsEps = 1e-8;

}  // namespace

// ---- NormAttention ---------------------------------------------------------------------

NormAttention::NormAttention(const AttentionConfig& config, Generator& gen)
    : Attention(config, gen) {
  feature_map = register_module("feature_map", make_feature_map(config_, gen));
  feature_width_ = feature_map->output_width(config_.resolved_head_dim());
}

Tensor NormAttention::sublayer(const Tensor& x) {
  check_rank("NormAttention", "x", x, 3, "[B, N, d]");
  POLYAK_CHECK(x.size(2) == config_.d_model, "NormAttention: x has shape ", x.shape(),
               ", expected [B, N, ", config_.d_model, "]");
  const int64_t H = config_.heads;
  static const char* const names[] = {"q", "k", "v"};
  auto heads = [&](int64_t i) {  // [B, H, N, D]
    return split_heads(probe(names[i], project(x, i)), H);
  };
  // The norm spans all heads of a position, so it runs after merge_heads: [B, N, H·D].
  Tensor y = srms_norm(merge_heads(mix(heads(0), heads(1), heads(2))), kSrmsEps);
  return out_proj->forward(probe("out", y));
}

Tensor NormAttention::mix(const Tensor& q, const Tensor& k, const Tensor& v) {
  if (is_training()) feature_map->advance();
  Tensor fq = feature_map->forward(q), fk = feature_map->forward(k);
  if (config_.causal) return causal_dot_product(fq, fk, v);
  return matmul(fq, matmul(fk, v, /*trans_a=*/true));  // [B,H,N,D'] · [B,H,D',D]
}

std::vector<Attention::StateSlot> NormAttention::state_layout(int64_t batch) const {
  const int64_t H = config_.heads, D = config_.resolved_head_dim();
  return {{"s", {batch, H, feature_width_, D}}};
}

Tensor NormAttention::mix_step(const Tensor& q, const Tensor& k, const Tensor& v,
                               AttentionState& state) {
  const int64_t B = q.size(0), H = q.size(1), D = v.size(2);
  Tensor y = causal_dot_product_step(feature_map->forward(q), feature_map->forward(k), v,
                                     state.tensors[0]);  // [B, H, D]
  return srms_norm(y.reshape({B, H * D}), kSrmsEps).reshape({B, H, D});
}

// ---- DiagAttention ---------------------------------------------------------------------

DiagAttention::DiagAttention(const AttentionConfig& config, Generator& gen)
    : Attention(config, gen) {}

Tensor DiagAttention::mix(const Tensor& q, const Tensor& k, const Tensor& v) {
  return block_softmax_attention(q, k, v, config_.block_size, config_.causal);
}

std::vector<Attention::StateSlot> DiagAttention::state_layout(int64_t batch) const {
  const int64_t H = config_.heads, D = config_.resolved_head_dim(), L = config_.block_size;
  return {{"k_cache", {batch, H, L, D}}, {"v_cache", {batch, H, L, D}}};
}

Tensor DiagAttention::mix_step(const Tensor& q, const Tensor& k, const Tensor& v,
                               AttentionState& state) {
  return block_softmax_attention_step(q, k, v, state.tensors[0], state.tensors[1],
                                      config_.block_size, state.position);
}

}  // namespace polyak
