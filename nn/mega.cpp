#include "polyak/nn/mega.h"

#include <algorithm>
#include <cmath>

#include "polyak/nn/init.h"
#include "polyak/nn/kinds.h"
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

// Mega's settings from either kind's struct.
MegaParams mega_params(const AttentionConfig& c) {
  if (c.kind != "mega-chunk") return c.params.as<MegaParams>();
  const MegaChunkParams& p = c.params.as<MegaChunkParams>();
  return {.ema_dim = p.ema_dim, .z_dim = p.z_dim, .v_dim = p.v_dim, .attention = p.attention};
}

Tensor normal_parameter(const Shape& shape, double stddev, Generator& gen) {
  Tensor t = Tensor::empty(shape);
  normal_(t, 0.0, stddev, gen);
  return t;
}

}  // namespace

MegaAttention::MegaAttention(const AttentionConfig& config, Generator& gen)
    : Attention(config, gen, /*projections=*/false),
      chunked_(config_.kind == "mega-chunk"),
      params_(mega_params(config)),
      block_size_(chunked_ ? config.params.as<MegaChunkParams>().block_size : 0),
      score_(parse_mega_score(params_.attention)) {
  POLYAK_CHECK(config_.kind == "mega" || chunked_, "MegaAttention: kind = '", config_.kind,
               "', expected 'mega' or 'mega-chunk'");
  const int64_t d = config_.d_model, n = params_.ema_dim, z = params_.z_dim;
  const int64_t v = v_dim(), directions = config_.causal ? 1 : 2;

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
  return chunked_ ? block_size_ : config_.max_len;
}

MegaAttention::EmaCoefficients MegaAttention::ema_coefficients(int64_t direction) const {
  const Tensor p = sigmoid(ema_delta[direction]);
  const double inv_sqrt_n = 1.0 / std::sqrt(static_cast<double>(params_.ema_dim));
  return {p * ema_beta[direction], 1.0 - p * sigmoid(ema_alpha[direction]),
          ema_eta[direction] * inv_sqrt_n};
}

MegaAttention::Gate MegaAttention::gate(const Tensor& x, const Tensor& mx) const {
  const int64_t d = config_.d_model, z = params_.z_dim, v = v_dim();
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
  const int64_t B = x.size(0), N = x.size(1);
  if (!chunked_)
    POLYAK_CHECK(N <= config_.max_len, fn, ": x has shape ", x.shape(), ", N = ", N,
                 " exceeds max_len = ", config_.max_len,
                 ", expected N ≤ max_len (the relative position bias has 2·max_len − 1 "
                 "offsets); kind 'mega-chunk' takes any length");

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
  const int64_t cache = chunked_ ? block_size_ : -1;
  return {{"h", {batch, config_.d_model, params_.ema_dim}},
          {"k_cache", {batch, cache, params_.z_dim}},
          {"v_cache", {batch, cache, v_dim()}}};
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
  const int64_t row = chunked_ ? position % block_size_ : position;
  const Tensor o =
      mega_attention_step(g.q, g.k, g.v, state.tensors[1], state.tensors[2], row, rel_bias, score_);
  ++state.position;
  return dropout->forward(output(x2, g, o).reshape({B, 1, d}));
}

// ---- parameters and specs --------------------------------------------------------------

namespace {

template <class P>
std::vector<ParamField> mega_fields() {
  return {
      param(&P::ema_dim, "ema_dim", "--ema-dim", "Mega's EMA dimensions n", positive_integer()),
      param(&P::z_dim, "z_dim", "--z-dim", "Mega's shared query/key width z", positive_integer()),
      param(&P::v_dim, "v_dim", "--v-dim", "Mega's value width (0: d_model)",
            non_negative_integer("0: d_model")),
      param(&P::attention, "attention", "--mega-attention",
            "Mega's attention function: softmax | laplace", one_of({"softmax", "laplace"}))};
}

// The value width v (v_dim, or d_model when 0), as MegaAttention::v_dim() has it.
double value_width(const AttentionConfig& c, const MegaParams& p) {
  return static_cast<double>(p.v_dim > 0 ? p.v_dim : c.d_model);
}

// The block's FLOPs per token, keys seen in a window of `window` positions: V, the
// [2d + z + v] gate projection, W_h, the EMA (n dimensions per channel, a multiply-add each
// way) and one head of attention.
double mega_flops(const AttentionConfig& c, double window) {
  const MegaParams p = mega_params(c);
  const double d = static_cast<double>(c.d_model), z = static_cast<double>(p.z_dim);
  const double ema = static_cast<double>(p.ema_dim);
  const double v = value_width(c, p);
  return 2 * d * v + 2 * d * (2 * d + z + v) + 2 * v * d + 4 * d * ema +
         (2 * z + 2 * v) * keys_seen(c, window);
}

double chunk_window(const AttentionConfig& c, int64_t n) {
  return static_cast<double>(std::min(c.params.as<MegaChunkParams>().block_size, n));
}

// The block's parameters for a relative bias over `window` positions: the EMA's δ, α, β, η
// (one set per direction) and ω; V, the gate projection and W_h with their biases; the
// shared query/key scale and offset; the bias.
// The gates, the EMA's output and the attention's z-wide queries and keys beyond the
// standard block's activations (measured at z = 64: about 5 d + 5 z per token).
double mega_extra_activations(const AttentionConfig& c) {
  const MegaParams p = mega_params(c);
  const double d = static_cast<double>(c.d_model);
  const double v = value_width(c, p);
  return 3 * d + 2 * v + 5 * static_cast<double>(p.z_dim);
}

double mega_parameters(const AttentionConfig& c, double window) {
  const MegaParams p = mega_params(c);
  const double d = static_cast<double>(c.d_model), z = static_cast<double>(p.z_dim);
  const double ema = static_cast<double>(p.ema_dim), directions = c.causal ? 1 : 2;
  const double v = value_width(c, p);
  return 4 * directions * d * ema + d + (d * v + v) + (d * (2 * d + z + v) + 2 * d + z + v) +
         (v * d + d) + 4 * z + (2 * window - 1);
}

}  // namespace

const ParamSchema& MegaParams::schema() {
  static const ParamSchema s = make_schema<MegaParams>("Mega", mega_fields<MegaParams>());
  return s;
}

const ParamSchema& MegaChunkParams::schema() {
  static const ParamSchema s = [] {
    std::vector<ParamField> fields = mega_fields<MegaChunkParams>();
    fields.push_back(block_size_field<MegaChunkParams>());
    return make_schema<MegaChunkParams>("Mega-chunk", std::move(fields));
  }();
  return s;
}

const AttentionSpec& mega_attention_spec() {
  static const AttentionSpec spec = [] {
    AttentionSpec s;
    s.name = "mega";
    s.summary = "Mega's gated EMA attention over the whole sequence, docs/math.md §6";
    s.params = &MegaParams::schema();
    s.make = [](const AttentionConfig& c, Generator& g) {
      return std::make_shared<MegaAttention>(c, g);
    };
    s.check = [](const char* fn, const AttentionConfig& c) {
      POLYAK_CHECK(c.max_len > 0, fn,
                   ": kind = 'mega' with max_len = 0, expected the longest "
                   "sequence (its relative position bias covers 2·max_len − 1 offsets)");
    };
    s.flops = [](const AttentionConfig& c, int64_t n) {
      return mega_flops(c, static_cast<double>(n));
    };
    s.kept_bytes = [](const AttentionConfig&, int64_t n) {
      return static_cast<double>(n) * static_cast<double>(n) * 4;
    };
    s.parameters = [](const AttentionConfig& c) {
      return mega_parameters(c, static_cast<double>(c.max_len));
    };
    s.extra_activations = mega_extra_activations;
    return s;
  }();
  return spec;
}

const AttentionSpec& mega_chunk_spec() {
  static const AttentionSpec spec = [] {
    AttentionSpec s;
    s.name = "mega-chunk";
    s.summary = "Mega's gated EMA attention in chunks, docs/math.md §6";
    s.params = &MegaChunkParams::schema();
    s.make = [](const AttentionConfig& c, Generator& g) {
      return std::make_shared<MegaAttention>(c, g);
    };
    s.flops = [](const AttentionConfig& c, int64_t n) { return mega_flops(c, chunk_window(c, n)); };
    s.kept_bytes = [](const AttentionConfig& c, int64_t n) {
      return static_cast<double>(n) * chunk_window(c, n) * 4;
    };
    s.parameters = [](const AttentionConfig& c) {
      return mega_parameters(c, static_cast<double>(c.params.as<MegaChunkParams>().block_size));
    };
    s.extra_activations = mega_extra_activations;
    return s;
  }();
  return spec;
}

}  // namespace polyak
