// Transformer layers and the connections that join the attention output to the stream.
// Legend: B batch, N length, d width; a, x, v [B, N, d]; per-token scalars [B, N, 1].
#include "polyak/nn/transformer_layer.h"

#include <cmath>

#include "polyak/ops/elementwise.h"
#include "polyak/ops/reduce.h"

namespace polyak {

namespace {

// ‖t‖ over the d channels of each token: [B, N, d] → [B, N, 1].
Tensor token_norm(const Tensor& t) {
  return sqrt(sum(square(t), -1, /*keepdim=*/true));
}

// A carry's velocity must be one of this stream's: the same tokens, the same width.
void check_carry(const char* fn, const Tensor& a, const LayerCarry& carry) {
  POLYAK_CHECK(carry.velocity.shape() == a.shape(), fn, ": the carried velocity has shape ",
               carry.velocity.shape(), ", expected the attention output's ", a.shape());
  POLYAK_CHECK(carry.prev_attn.defined() && carry.prev_attn.shape() == a.shape(), fn,
               ": the carried previous attention output ",
               carry.prev_attn.defined() ? "has shape " + carry.prev_attn.shape().str()
                                         : std::string("is undefined"),
               ", expected the attention output's ", a.shape());
}

}  // namespace

// ---- connections -----------------------------------------------------------------------

Tensor ResidualConnection::forward(const Tensor& x, const Tensor& a, LayerCarry&) {
  return x + a;
}

void ConnectionConfig::validate() const {
  const char* fn = "ConnectionConfig";
  check_choice(fn, "kind", kind, connection_kinds());
  // Checked whatever the kind, so that a bad value never waits for a switch of kind.
  POLYAK_CHECK(beta >= 0.0 && beta < 1.0, fn, ": beta = ", beta, ", expected in [0, 1)");
  POLYAK_CHECK(gamma > 0.0 && std::isfinite(gamma), fn, ": gamma = ", gamma,
               ", expected a finite value > 0");
  POLYAK_CHECK(delta > 0.0 && delta < 1.0, fn, ": delta = ", delta, ", expected in (0, 1)");
  POLYAK_CHECK(eps > 0.0 && std::isfinite(eps), fn, ": eps = ", eps,
               ", expected a finite value > 0");
  check_choice(fn, "denominator", denominator, {"velocity", "attention"});
}

MomentumConnection::MomentumConnection(double beta, double gamma) : beta_(beta), gamma_(gamma) {
  const char* fn = "MomentumConnection";
  POLYAK_CHECK(beta >= 0.0 && beta < 1.0, fn, ": beta = ", beta, ", expected in [0, 1)");
  POLYAK_CHECK(gamma > 0.0 && std::isfinite(gamma), fn, ": gamma = ", gamma,
               ", expected a finite value > 0");
}

// The order of operations is chosen so that β̃ = 0, γ̃ = 1 rounds exactly like x + a:
// 0·v − a = −a and 1·(−a) = −a are exact, and x − (−a) is x + a in IEEE arithmetic.
Tensor MomentumConnection::forward(const Tensor& x, const Tensor& a, LayerCarry& carry) {
  Tensor v;
  if (carry.velocity.defined()) {
    POLYAK_CHECK(carry.velocity.shape() == a.shape(),
                 "MomentumConnection: the carried velocity has shape ", carry.velocity.shape(),
                 ", expected the attention output's ", a.shape());
    v = carry.velocity * beta_ - a;  // v_ℓ = β̃ v_{ℓ−1} − A_ℓ
  } else {
    v = -a;  // v_1 = −A_1 (v_0 = 0)
  }
  carry.velocity = v;
  carry.prev_attn = a;
  return x - v * gamma_;
}

AdaptiveConnection::AdaptiveConnection(const ConnectionConfig& config) : config_(config) {
  config_.validate();
}

Tensor AdaptiveConnection::forward(const Tensor& x, const Tensor& a, LayerCarry& carry) {
  Tensor v;
  if (carry.velocity.defined()) {
    check_carry("AdaptiveConnection", a, carry);
    // eq. 18 with the ε of docs/math.md §4, one β̃ per token [B, N, 1]:
    //   r = sqrt(‖A_ℓ − A_{ℓ−1}‖ / (‖den‖ + ε) + ε),  β̃ = clamp((1 − r)², 0, 1 − δ)
    // den = v_{ℓ−1} (the reference code) or A_{ℓ−1} (the paper). Every op is
    // differentiable, so the gradient flows through β̃ too.
    const Tensor& den = config_.denominator == "velocity" ? carry.velocity : carry.prev_attn;
    Tensor ratio = token_norm(a - carry.prev_attn) / (token_norm(den) + config_.eps);
    Tensor r = sqrt(ratio + config_.eps);
    Tensor beta = clamp(square(1.0 - r), 0.0, 1.0 - config_.delta);
    v = beta * carry.velocity - a;  // v_ℓ = β̃ v_{ℓ−1} − A_ℓ, β̃ broadcast over d
  } else {
    v = -a;  // ℓ = 1: v_0 = 0, β̃_1 is irrelevant
  }
  carry.velocity = v;
  carry.prev_attn = a;
  return x - v * config_.gamma;
}

const std::vector<std::string>& connection_kinds() {
  static const std::vector<std::string> kinds = {"residual", "momentum", "adaptive"};
  return kinds;
}

std::shared_ptr<Connection> make_connection(const ConnectionConfig& config) {
  config.validate();
  if (config.kind == "momentum")
    return std::make_shared<MomentumConnection>(config.beta, config.gamma);
  if (config.kind == "adaptive") return std::make_shared<AdaptiveConnection>(config);
  return std::make_shared<ResidualConnection>();
}

// ---- the layer -------------------------------------------------------------------------

void TransformerLayerConfig::validate() const {
  const char* fn = "TransformerLayerConfig";
  attention.validate();
  POLYAK_CHECK(ff_dim >= 0, fn, ": ff_dim = ", ff_dim,
               ", expected a positive integer (or 0: 4 · d_model)");
  check_choice(fn, "activation", activation, activation_kinds());
  POLYAK_CHECK(dropout >= 0.0 && dropout < 1.0, fn, ": dropout = ", dropout,
               ", expected in [0, 1)");
  check_choice(fn, "norm", norm, norm_kinds());
  POLYAK_CHECK(norm_eps > 0.0, fn, ": norm_eps = ", norm_eps, ", expected positive");
  connection.validate();
}

TransformerLayer::TransformerLayer(const TransformerLayerConfig& config, Generator& gen)
    : config_(config) {
  config_.validate();
  const int64_t d = config_.attention.d_model;
  attention = register_module("attention", make_attention(config_.attention, gen));
  connection = register_module("connection", make_connection(config_.connection));
  norm1 = register_module("norm1", make_norm(config_.norm, d, config_.norm_eps));
  feed_forward = register_module(
      "feed_forward", std::make_shared<FeedForward>(d, config_.resolved_ff_dim(),
                                                    config_.activation, config_.dropout, gen));
  norm2 = register_module("norm2", make_norm(config_.norm, d, config_.norm_eps));
}

template <class Attend>
Tensor TransformerLayer::block(const Tensor& x, LayerCarry& carry, Attend&& attend) {
  if (config_.pre_norm) {
    Tensor h = connection->forward(x, attend(norm1->forward(x)), carry);
    return h + feed_forward->forward(norm2->forward(h));
  }
  Tensor h = norm1->forward(connection->forward(x, attend(x), carry));
  return norm2->forward(h + feed_forward->forward(h));
}

Tensor TransformerLayer::forward(const Tensor& x, LayerCarry& carry) {
  if (dynamic_cast<const ResidualConnection*>(connection.get())) {
    // The plain residual joins each sublayer's output to the stream in the pass of the
    // sublayer's closing dropout (dropout_add): the same values as block().
    if (config_.pre_norm) {
      Tensor h = attention->forward_residual(x, norm1->forward(x));
      return feed_forward->forward_residual(h, norm2->forward(h));
    }
    Tensor h = norm1->forward(attention->forward_residual(x, x));
    return norm2->forward(feed_forward->forward_residual(h, h));
  }
  return block(x, carry, [&](const Tensor& in) { return attention->forward(in); });
}

Tensor TransformerLayer::forward(const Tensor& x) {
  LayerCarry carry;
  return forward(x, carry);
}

Tensor TransformerLayer::step(const Tensor& x, AttentionState& state, LayerCarry& carry) {
  NoGradGuard no_grad;
  return block(x, carry, [&](const Tensor& in) { return attention->step(in, state); });
}

}  // namespace polyak
