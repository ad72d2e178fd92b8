// TransNormer's attention modules (docs/math.md §5). Legend: B batch, N length, d width, H heads,
// D head dim, D' feature width, L block length.
#include "polyak/nn/transnormer.h"

#include <algorithm>

#include "polyak/nn/kinds.h"
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
  feature_map =
      register_module("feature_map", make_feature_map(config.params.as<NormParams>().feature_map));
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
    : Attention(config, gen), block_size_(config.params.as<DiagParams>().block_size) {}

Tensor DiagAttention::mix(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t N = q.size(2), L = block_size_;
  if (config_.causal || N <= L || N % L == 0)
    return block_softmax_attention(q, k, v, L, config_.causal);
  // Not causal, with a partial last block (a 784-pixel image in blocks of 64, a padded row's
  // real positions): the whole blocks, then the rest as one block of its own.
  const int64_t whole = N - N % L;
  auto part = [&](const Tensor& t, int64_t begin, int64_t end) { return slice(t, 2, begin, end); };
  Tensor head = block_softmax_attention(part(q, 0, whole), part(k, 0, whole), part(v, 0, whole), L,
                                        /*causal=*/false);
  Tensor tail = block_softmax_attention(part(q, whole, N), part(k, whole, N), part(v, whole, N), L,
                                        /*causal=*/false);
  return concat({head, tail}, 2);
}

std::vector<Attention::StateSlot> DiagAttention::state_layout(int64_t batch) const {
  const int64_t H = config_.heads, D = config_.resolved_head_dim(), L = block_size_;
  return {{"k_cache", {batch, H, L, D}}, {"v_cache", {batch, H, L, D}}};
}

Tensor DiagAttention::mix_step(const Tensor& q, const Tensor& k, const Tensor& v,
                               AttentionState& state) {
  return block_softmax_attention_step(q, k, v, state.tensors[0], state.tensors[1], block_size_,
                                      state.position);
}

// ---- parameters and specs --------------------------------------------------------------

namespace {

double diag_window(const AttentionConfig& c, int64_t n) {
  return static_cast<double>(std::min(c.params.as<DiagParams>().block_size, n));
}

}  // namespace

const ParamSchema& NormParams::schema() {
  static const ParamSchema s =
      make_schema<NormParams>("NormAttention", {feature_map_field<NormParams>()});
  return s;
}

const ParamSchema& DiagParams::schema() {
  static const ParamSchema s =
      make_schema<DiagParams>("DiagAttention", {block_size_field<DiagParams>()});
  return s;
}

const ParamSchema& TransNormerParams::schema() {
  static const ParamSchema s = make_schema<TransNormerParams>(
      "TransNormer",
      {block_size_field<TransNormerParams>(), feature_map_field<TransNormerParams>()});
  return s;
}

const AttentionSpec& norm_attention_spec() {
  static const AttentionSpec spec = [] {
    AttentionSpec s;
    s.name = "norm";
    s.summary = "TransNormer's NormAttention, SRMSNorm(φ(q) φ(k)ᵀ v), docs/math.md §5";
    s.params = &NormParams::schema();
    s.model_kind = false;
    s.make = [](const AttentionConfig& c, Generator& g) {
      return std::make_shared<NormAttention>(c, g);
    };
    s.flops = [](const AttentionConfig& c, int64_t) {
      return projection_flops(c) + linear_mix_flops(c);
    };
    s.parameters = projection_parameters;
    s.kept_bytes = [](const AttentionConfig&, int64_t) { return 0.0; };
    return s;
  }();
  return spec;
}

const AttentionSpec& diag_attention_spec() {
  static const AttentionSpec spec = [] {
    AttentionSpec s;
    s.name = "diag";
    s.summary = "TransNormer's DiagAttention, softmax inside blocks, docs/math.md §5";
    s.params = &DiagParams::schema();
    s.model_kind = false;
    s.make = [](const AttentionConfig& c, Generator& g) {
      return std::make_shared<DiagAttention>(c, g);
    };
    s.flops = [](const AttentionConfig& c, int64_t n) {
      const double h = static_cast<double>(c.heads);
      const double dh = static_cast<double>(c.resolved_head_dim());
      return projection_flops(c) + h * 4 * dh * keys_seen(c, diag_window(c, n));
    };
    s.parameters = projection_parameters;
    s.kept_bytes = [](const AttentionConfig& c, int64_t n) {
      return static_cast<double>(c.heads) * static_cast<double>(n) * diag_window(c, n) * 4;
    };
    return s;
  }();
  return spec;
}

const AttentionSpec& transnormer_spec() {
  static const AttentionSpec spec = [] {
    AttentionSpec s;
    s.name = "transnormer";
    s.summary =
        "DiagAttention in the first half of the layers, NormAttention in the rest, "
        "docs/math.md §5";
    s.params = &TransNormerParams::schema();
    s.per_layer = [](const AttentionConfig& c, int64_t index, int64_t layers) {
      const TransNormerParams& p = c.params.as<TransNormerParams>();
      AttentionConfig layer = c;
      if (index < layers / 2) {
        layer.kind = "diag";
        layer.params = DiagParams{.block_size = p.block_size};
      } else {
        layer.kind = "norm";
        layer.params = NormParams{.feature_map = p.feature_map};
      }
      return layer;
    };
    return s;
  }();
  return spec;
}

}  // namespace polyak
