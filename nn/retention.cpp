// RetNet's retention as an attention kind (docs/math.md §3.4). Legend: B batch, N length,
// d width, H heads, D head dim.
#include "polyak/nn/retention.h"

#include <cmath>

#include "polyak/nn/kinds.h"
#include "polyak/ops/attention/decayed_attention.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/matmul.h"
#include "polyak/ops/nn_ops.h"
#include "polyak/ops/shape_ops.h"

namespace polyak {

RetentionAttention::RetentionAttention(const AttentionConfig& config, Generator& gen)
    : Attention(config, gen), params_(config.params.as<RetentionParams>()) {
  const int64_t d = config_.d_model, inner = config_.heads * config_.resolved_head_dim();
  if (params_.gate == "swish")
    gate_proj = register_module("gate_proj", std::make_shared<Linear>(d, inner, gen));
  norm_weight = Tensor::ones({inner});
  register_parameter("norm_weight", norm_weight);
  norm_bias = Tensor::zeros({inner});
  register_parameter("norm_bias", norm_bias);
}

std::vector<double> RetentionAttention::decays() const {
  std::vector<double> gammas;
  for (int64_t h = 0; h < config_.heads; ++h)
    gammas.push_back(1.0 - std::ldexp(1.0, -5 - static_cast<int>(h)));
  return gammas;
}

Tensor RetentionAttention::mix(const Tensor& q, const Tensor& k, const Tensor& v) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(config_.resolved_head_dim()));
  return decayed_causal_dot_product(q * scale, k, v, decays());
}

Tensor RetentionAttention::norm_and_gate(const Tensor& o, const Tensor& x) const {
  // GroupNorm with one group per head: each head's D values of a position, normalised.
  Tensor y = merge_heads(layer_norm(o, Tensor(), Tensor(), params_.norm_eps));  // [B, T, H·D]
  y = y * norm_weight + norm_bias;
  if (gate_proj) y = silu(gate_proj->forward(x)) * y;
  return y;
}

Tensor RetentionAttention::sublayer(const Tensor& x) {
  const char* fn = "RetentionAttention";
  check_rank(fn, "x", x, 3, "[B, N, d]");
  POLYAK_CHECK(x.size(2) == config_.d_model, fn, ": x has shape ", x.shape(), ", expected [B, N, ",
               config_.d_model, "]");
  const int64_t H = config_.heads;
  static const char* const names[] = {"q", "k", "v"};
  auto heads = [&](int64_t i) { return split_heads(probe(names[i], project(x, i)), H); };
  Tensor o = mix(heads(0), heads(1), heads(2));  // [B, H, N, D]
  return out_proj->forward(probe("out", norm_and_gate(o, x)));
}

std::vector<Attention::StateSlot> RetentionAttention::state_layout(int64_t batch) const {
  const int64_t H = config_.heads, D = config_.resolved_head_dim();
  return {{"s", {batch, H, D, D}}};
}

Tensor RetentionAttention::step(const Tensor& x, AttentionState& state) {
  NoGradGuard no_grad;
  const int64_t B = check_step("RetentionAttention::step", x, state);
  const int64_t H = config_.heads, D = config_.resolved_head_dim();
  auto heads = [&](int64_t i) { return project(x, i).reshape({B, H, D}); };  // [B, H, D]
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  Tensor o = decayed_attention_step(heads(0) * scale, heads(1), heads(2), state.tensors[0],
                                    decays());  // [B, H, D]
  ++state.position;
  Tensor y = norm_and_gate(o.reshape({B, H, 1, D}), x);  // [B, 1, H·D]
  return dropout->forward(out_proj->forward(y));
}

// ---- parameters and spec ---------------------------------------------------------------

const ParamSchema& RetentionParams::schema() {
  using P = RetentionParams;
  static const ParamSchema s = make_schema<P>(
      "retention",
      {param(&P::gate, "gate", "--retention-gate", "retention's output gate: swish (RetNet) | none",
             one_of({"swish", "none"})),
       param(&P::norm_eps, "norm_eps", "--retention-norm-eps",
             "ε of retention's group norm per head", positive_number())});
  return s;
}

const AttentionSpec& retention_spec() {
  static const AttentionSpec spec = [] {
    AttentionSpec s;
    s.name = "retention";
    s.summary =
        "RetNet's retention: decayed causal linear attention, γ_h = 1 − 2^(−5−h), "
        "group norm per head, docs/math.md §3.4";
    s.params = &RetentionParams::schema();
    s.forms = {.causal = true, .non_causal = false, .recurrent = true};
    s.make = [](const AttentionConfig& c, Generator& g) {
      return std::make_shared<RetentionAttention>(c, g);
    };
    s.flops = [](const AttentionConfig& c, int64_t) {
      // The decayed state's update and readout; the gate's projection; the norm.
      const double inner = static_cast<double>(c.heads * c.resolved_head_dim());
      const double gate = c.params.as<RetentionParams>().gate == "swish"
                              ? 2 * static_cast<double>(c.d_model) * inner
                              : 0.0;
      return projection_flops(c) + linear_mix_flops(c) + gate + 8 * inner;
    };
    s.kept_bytes = [](const AttentionConfig&, int64_t) { return 0.0; };
    s.parameters = [](const AttentionConfig& c) {
      // The gate's projection and the output norm's weight and bias.
      const double d = static_cast<double>(c.d_model);
      const double inner = static_cast<double>(c.heads * c.resolved_head_dim());
      const bool gated = c.params.as<RetentionParams>().gate == "swish";
      return projection_parameters(c) + (gated ? d * inner + inner : 0.0) + 2 * inner;
    };
    return s;
  }();
  return spec;
}

}  // namespace polyak
