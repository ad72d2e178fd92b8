// Multi-head attention modules. Legend: B batch, N length, d width, H heads, D head dim.
#include "nn/attention.h"

#include "ops/attention/feature_maps.h"
#include "ops/attention/linear_attention.h"
#include "ops/attention/softmax_attention.h"
#include "ops/matmul.h"
#include "ops/shape_ops.h"

namespace polyak {

namespace {

using AttentionFactory =
    std::function<std::shared_ptr<Attention>(const AttentionConfig&, Generator&)>;

template <class Kind>
AttentionFactory factory() {
  return [](const AttentionConfig& c, Generator& g) { return std::make_shared<Kind>(c, g); };
}

// One entry per kind: adding a kind is a class above and a line here.
const std::vector<std::pair<std::string, AttentionFactory>>& attention_table() {
  static const std::vector<std::pair<std::string, AttentionFactory>> table = {
      {"softmax", factory<SoftmaxAttention>()},
      {"linear", factory<LinearAttention>()},
  };
  return table;
}

}  // namespace

// ---- config ----------------------------------------------------------------------------

void AttentionConfig::validate() const {
  const char* fn = "AttentionConfig";
  check_choice(fn, "kind", kind, attention_kinds());
  POLYAK_CHECK(d_model > 0, fn, ": d_model = ", d_model, ", expected a positive integer");
  POLYAK_CHECK(heads > 0, fn, ": heads = ", heads, ", expected a positive integer");
  POLYAK_CHECK(head_dim >= 0, fn, ": head_dim = ", head_dim,
               ", expected a positive integer (or 0: d_model / heads)");
  POLYAK_CHECK(head_dim > 0 || d_model % heads == 0, fn, ": d_model = ", d_model,
               " is not divisible by heads = ", heads,
               ", expected a multiple of heads when head_dim is unset (0)");
  POLYAK_CHECK(dropout >= 0.0 && dropout < 1.0, fn, ": dropout = ", dropout,
               ", expected in [0, 1)");
  check_choice(fn, "feature_map", feature_map, feature_map_kinds());
  POLYAK_CHECK(eps > 0.0, fn, ": eps = ", eps, ", expected positive");
}

// ---- feature maps ----------------------------------------------------------------------

Tensor EluFeatureMap::forward(const Tensor& x) const {
  return elu_feature_map(x);
}

const std::vector<std::string>& feature_map_kinds() {
  static const std::vector<std::string> kinds = {"elu"};
  return kinds;
}

std::shared_ptr<FeatureMap> make_feature_map(const std::string& kind, int64_t head_dim,
                                             Generator& gen) {
  check_choice("make_feature_map", "kind", kind, feature_map_kinds());
  (void)head_dim;  // the maps with random features (FAVOR+) draw [m, head_dim] from gen
  (void)gen;
  return std::make_shared<EluFeatureMap>();
}

// ---- the shared block ------------------------------------------------------------------

Attention::Attention(const AttentionConfig& config, Generator& gen) : config_(config) {
  config_.validate();
  int64_t d = config_.d_model, inner = config_.heads * config_.resolved_head_dim();
  qkv_proj = register_module("qkv_proj", std::make_shared<Linear>(d, 3 * inner, gen));
  out_proj = register_module("out_proj", std::make_shared<Linear>(inner, d, gen));
  dropout = register_module("dropout", std::make_shared<Dropout>(config_.dropout, gen));
}

Tensor Attention::forward(const Tensor& x) {
  check_rank("Attention", "x", x, 3, "[B, N, d]");
  POLYAK_CHECK(x.size(2) == config_.d_model, "Attention: x has shape ", x.shape(),
               ", expected [B, N, ", config_.d_model, "]");
  const int64_t H = config_.heads, inner = H * config_.resolved_head_dim();
  // q, k and v are three GEMMs on row blocks of the fused weight (free views): cheaper in
  // the backward than one GEMM whose output is cut into three, where every piece's
  // gradient would be a zero-filled full-size tensor summed with the others.
  const Tensor& w = qkv_proj->weight;
  const Tensor& b = qkv_proj->bias;
  auto project = [&](int64_t i) {  // → [B, H, N, D]
    int64_t begin = i * inner, end = (i + 1) * inner;
    return split_heads(linear(x, w.narrow0(begin, end), b.narrow0(begin, end)), H);
  };
  Tensor y = mix(project(0), project(1), project(2));  // [B, H, N, D]
  return dropout->forward(out_proj->forward(merge_heads(y)));
}

// ---- the kinds -------------------------------------------------------------------------

SoftmaxAttention::SoftmaxAttention(const AttentionConfig& config, Generator& gen)
    : Attention(config, gen) {}

Tensor SoftmaxAttention::mix(const Tensor& q, const Tensor& k, const Tensor& v) {
  return softmax_attention(q, k, v, config_.causal);
}

LinearAttention::LinearAttention(const AttentionConfig& config, Generator& gen)
    : Attention(config, gen) {
  feature_map = register_module(
      "feature_map", make_feature_map(config_.feature_map, config_.resolved_head_dim(), gen));
}

Tensor LinearAttention::mix(const Tensor& q, const Tensor& k, const Tensor& v) {
  Tensor fq = feature_map->forward(q), fk = feature_map->forward(k);
  return config_.causal ? causal_linear_attention(fq, fk, v, config_.eps)
                        : linear_attention(fq, fk, v, config_.eps);
}

// ---- the table -------------------------------------------------------------------------

std::vector<std::string> attention_kinds() {
  std::vector<std::string> kinds;
  for (const auto& [name, make] : attention_table()) kinds.push_back(name);
  return kinds;
}

std::shared_ptr<Attention> make_attention(const AttentionConfig& config, Generator& gen) {
  config.validate();
  for (const auto& [name, make] : attention_table())
    if (name == config.kind) return make(config, gen);
  fail("make_attention: kind = '", config.kind, "' is not registered");  // unreachable
}

}  // namespace polyak
