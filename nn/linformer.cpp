#include "polyak/nn/linformer.h"

#include <cmath>

#include "polyak/nn/init.h"
#include "polyak/ops/attention/sequence_projection.h"
#include "polyak/ops/attention/softmax_attention.h"

namespace polyak {

LinformerAttention::LinformerAttention(const AttentionConfig& config, Generator& gen)
    : Attention(config, gen) {
  const int64_t k = config_.projection_dim, M = config_.max_len;
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

}  // namespace polyak
