#include "polyak/nn/mega.h"

#include <cmath>

#include "polyak/nn/init.h"
#include "polyak/ops/attention/ema.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/matmul.h"

namespace polyak {
namespace {

// x · W[begin:end]ᵀ + b[begin:end]: one GEMM per piece of a fused projection, on free views
// of its rows (no output to cut into pieces, no zero-filled gradient per piece).
Tensor linear_rows(const Linear& layer, int64_t begin, int64_t end, const Tensor& x) {
  return linear(x, layer.weight.narrow0(begin, end), layer.bias.narrow0(begin, end));
}

// The reference's projections: N(0, 0.02²) weights, zero biases.
void init_projection(Linear& layer, Generator& gen) {
  normal_(layer.weight, 0.0, 0.02, gen);
  layer.bias.zero_();
}

Tensor normal_parameter(const Shape& shape, double stddev, Generator& gen) {
  Tensor t = Tensor::empty(shape);
  normal_(t, 0.0, stddev, gen);
  return t;
}

}  // namespace

MegaAttention::MegaAttention(const AttentionConfig& config, Generator& gen)
    : Attention(config, gen, /*projections=*/false),
      score_(parse_mega_score(config_.mega_attention)),
      chunked_(config_.kind == "mega-chunk") {
  POLYAK_CHECK(config_.kind == "mega" || chunked_, "MegaAttention: kind = '", config_.kind,
               "', expected 'mega' or 'mega-chunk'");
  const int64_t d = config_.d_model, n = config_.ema_dim, z = config_.mega_z_dim;
  const int64_t v = config_.resolved_mega_v_dim(), directions = config_.causal ? 1 : 2;

  // The reference's EMA initialisation: small δ, α (p and α′ near ½); β near ±1,
  // alternating along n (which its authors found more stable); η and ω standard normal.
  ema_delta = normal_parameter({directions, d, n}, 0.2, gen);
  ema_alpha = normal_parameter({directions, d, n}, 0.2, gen);
  ema_beta = normal_parameter({directions, d, n}, 0.02, gen);
  {
    float* beta = ema_beta.data<float>();
    for (int64_t i = 0; i < ema_beta.numel(); ++i) beta[i] += (i % n) % 2 == 0 ? 1.0f : -1.0f;
  }
  ema_eta = normal_parameter({directions, d, n}, 1.0, gen);
  ema_omega = normal_parameter({d}, 1.0, gen);
  register_parameter("ema_delta", ema_delta);
  register_parameter("ema_alpha", ema_alpha);
  register_parameter("ema_beta", ema_beta);
  register_parameter("ema_eta", ema_eta);
  register_parameter("ema_omega", ema_omega);

  v_proj = register_module("v_proj", std::make_shared<Linear>(d, v, gen));
  mx_proj = register_module("mx_proj", std::make_shared<Linear>(d, 2 * d + z + v, gen));
  h_proj = register_module("h_proj", std::make_shared<Linear>(v, d, gen));
  init_projection(*v_proj, gen);
  init_projection(*mx_proj, gen);
  init_projection(*h_proj, gen);

  qk_scale = normal_parameter({2, z}, 0.02, gen);
  qk_offset = Tensor::zeros({2, z});
  rel_bias = normal_parameter({2 * window() - 1}, 0.02, gen);
  register_parameter("qk_scale", qk_scale);
  register_parameter("qk_offset", qk_offset);
  register_parameter("rel_bias", rel_bias);
}

int64_t MegaAttention::window() const {
  return chunked_ ? config_.block_size : config_.max_len;
}

MegaAttention::EmaCoefficients MegaAttention::ema_coefficients(int64_t direction) const {
  const Tensor p = sigmoid(ema_delta[direction]);
  const double inv_sqrt_n = 1.0 / std::sqrt(static_cast<double>(config_.ema_dim));
  return {p * ema_beta[direction], 1.0 - p * sigmoid(ema_alpha[direction]),
          ema_eta[direction] * inv_sqrt_n};
}

MegaAttention::Gate MegaAttention::gate(const Tensor& x, const Tensor& mx) const {
  const int64_t d = config_.d_model, z = config_.mega_z_dim, v = config_.resolved_mega_v_dim();
  Gate g;
  g.v = silu(v_proj->forward(x));
  g.u = linear_rows(*mx_proj, 0, d, mx);
  const Tensor Z = silu(linear_rows(*mx_proj, d, d + z, mx));
  g.r = silu(linear_rows(*mx_proj, d + z, d + z + v, mx));
  g.hx = linear_rows(*mx_proj, d + z + v, 2 * d + z + v, mx);
  g.q = Z * qk_scale[0] + qk_offset[0];
  g.k = Z * qk_scale[1] + qk_offset[1];
  return g;
}

Tensor MegaAttention::output(const Tensor& x, const Gate& gate, const Tensor& o) const {
  return sigmoid(gate.u) * (silu(gate.hx + h_proj->forward(o * gate.r)) - x);
}

Tensor MegaAttention::mix(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2);
  auto rows = [&](const Tensor& t) { return t.reshape({B * H, N, t.size(3)}); };
  Tensor o = mega_attention(rows(q), rows(k), rows(v), rel_bias, window(), config_.causal, score_);
  return o.reshape({B, H, N, v.size(3)});
}

Tensor MegaAttention::sublayer(const Tensor& x) {
  const char* fn = "MegaAttention::forward";
  const int64_t d = config_.d_model;
  check_rank(fn, "x", x, 3, "[B, N, d]");
  POLYAK_CHECK(x.size(2) == d, fn, ": x has shape ", x.shape(), ", expected [B, N, ", d, "]");
  const int64_t B = x.size(0), N = x.size(1), block = config_.block_size;
  if (!chunked_)
    POLYAK_CHECK(N <= config_.max_len, fn, ": x has shape ", x.shape(), ", N = ", N,
                 " exceeds max_len = ", config_.max_len,
                 ", expected N ≤ max_len (the relative position bias has 2·max_len − 1 "
                 "offsets); kind 'mega-chunk' takes any length");
  else if (!config_.causal)
    POLYAK_CHECK(N <= block || N % block == 0, fn, ": x has shape ", x.shape(), ", N = ", N,
                 " is not a multiple of block_size = ", block,
                 ", expected N ≤ block_size or a multiple of it (non-causal chunks are whole): "
                 "pad the sequence to a multiple of block_size");

  const EmaCoefficients fwd = ema_coefficients(0);
  Tensor y = ema(x, fwd.g, fwd.q, fwd.w);
  if (!config_.causal) {
    const EmaCoefficients rev = ema_coefficients(1);
    y = y + ema(x, rev.g, rev.q, rev.w, /*reverse=*/true);
  }
  const Gate g = gate(x, silu(y + x * ema_omega));

  auto head = [&](const Tensor& t) { return t.reshape({B, 1, N, t.size(2)}); };  // H = 1
  Tensor o = mix(head(probe("q", g.q)), head(probe("k", g.k)), head(probe("v", g.v)));
  o = o.reshape({B, N, o.size(3)});
  return output(x, g, probe("out", o));
}

std::vector<Attention::StateSlot> MegaAttention::state_layout(int64_t batch) const {
  const int64_t cache = chunked_ ? config_.block_size : -1;
  return {{"h", {batch, config_.d_model, config_.ema_dim}},
          {"k_cache", {batch, cache, config_.mega_z_dim}},
          {"v_cache", {batch, cache, config_.resolved_mega_v_dim()}}};
}

Tensor MegaAttention::step(const Tensor& x, AttentionState& state) {
  const char* fn = "MegaAttention::step";
  NoGradGuard no_grad;
  const int64_t B = check_step(fn, x, state), d = config_.d_model, position = state.position;
  if (!chunked_)
    POLYAK_CHECK(position < config_.max_len, fn, ": the state is at position ", position,
                 ", expected < max_len = ", config_.max_len,
                 " (the relative position bias has 2·max_len − 1 offsets)");
  const Tensor x2 = x.reshape({B, d});
  const EmaCoefficients fwd = ema_coefficients(0);
  const Tensor y = ema_step(x2, state.tensors[0], fwd.g, fwd.q, fwd.w);
  const Gate g = gate(x2, silu(y + x2 * ema_omega));
  const int64_t row = chunked_ ? position % config_.block_size : position;
  const Tensor o =
      mega_attention_step(g.q, g.k, g.v, state.tensors[1], state.tensors[2], row, rel_bias, score_);
  ++state.position;
  return dropout->forward(output(x2, g, o).reshape({B, 1, d}));
}

}  // namespace polyak
