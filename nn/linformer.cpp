#include "polyak/nn/linformer.h"

#include <cmath>

#include "polyak/nn/init.h"
#include "polyak/nn/kinds.h"
#include "polyak/ops/attention/sequence_projection.h"
#include "polyak/ops/attention/softmax_attention.h"

namespace polyak {

LinformerAttention::LinformerAttention(const AttentionConfig& config, Generator& gen)
    : Attention(config, gen) {
  const int64_t k = config.params.as<LinformerParams>().k, M = config_.max_len;
  const double stddev = 1.0 / std::sqrt(static_cast<double>(k));
  proj_k = Tensor::empty({k, M});
  normal_(proj_k, 0.0, stddev, gen);
  register_parameter("proj_k", proj_k);
  proj_v = Tensor::empty({k, M});
  normal_(proj_v, 0.0, stddev, gen);
  register_parameter("proj_v", proj_v);
}

Tensor LinformerAttention::mix(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t N = q.size(2), max_len = config_.max_len;
  POLYAK_CHECK(N <= max_len, "LinformerAttention: sequence length N = ", N,
               " exceeds max_len = ", max_len,
               ", expected N ≤ max_len (E and F have max_len columns)");
  return softmax_attention(q, sequence_projection(k, proj_k), sequence_projection(v, proj_v),
                           /*causal=*/false);
}

const ParamSchema& LinformerParams::schema() {
  static const ParamSchema s = make_schema<LinformerParams>(
      "Linformer",
      {param(&LinformerParams::k, "k", "--linformer-k",
             "Linformer's projected length k (64; Linformer is non-causal)", positive_integer())});
  return s;
}

const AttentionSpec& linformer_attention_spec() {
  static const AttentionSpec spec = [] {
    AttentionSpec s;
    s.name = "linformer";
    s.summary =
        "softmax attention on K, V projected along the sequence to k rows, "
        "docs/math.md §7";
    s.params = &LinformerParams::schema();
    s.forms = {.causal = false, .non_causal = true, .recurrent = false};
    s.make = [](const AttentionConfig& c, Generator& g) {
      return std::make_shared<LinformerAttention>(c, g);
    };
    s.check = [](const char* fn, const AttentionConfig& c) {
      POLYAK_CHECK(c.max_len > 0, fn,
                   ": kind = 'linformer' with max_len = 0, expected the longest "
                   "sequence (the projections E, F have max_len columns)");
    };
    s.flops = [](const AttentionConfig& c, int64_t) {
      // E K and F V, then attention over k positions.
      const double h = static_cast<double>(c.heads);
      const double dh = static_cast<double>(c.resolved_head_dim());
      const double k = static_cast<double>(c.params.as<LinformerParams>().k);
      return projection_flops(c) + h * 4 * dh * k * 2;
    };
    s.kept_bytes = [](const AttentionConfig& c, int64_t n) {
      return static_cast<double>(c.heads) * static_cast<double>(n) *
             static_cast<double>(c.params.as<LinformerParams>().k) * 4;
    };
    s.parameters = [](const AttentionConfig& c) {
      const double k = static_cast<double>(c.params.as<LinformerParams>().k);
      return projection_parameters(c) + 2 * k * static_cast<double>(c.max_len);  // E and F
    };
    return s;
  }();
  return spec;
}

}  // namespace polyak
