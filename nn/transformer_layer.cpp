// Transformer layers and the connections that join the attention output to the stream.
// Legend: B batch, N length, d width; a, x, v [B, N, d]; per-token scalars [B, N, 1].
#include "polyak/nn/transformer_layer.h"

#include <cmath>

#include "polyak/nn/kinds.h"
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
  const ConnectionSpec& spec = connection_spec(kind, fn, "kind");
  resolve_params(params, *spec.params, fn, kind).validate(fn);
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

AdaptiveConnection::AdaptiveConnection(const AdaptiveConnectionParams& params) : params_(params) {
  Params(params).validate("AdaptiveConnection");
}

Tensor AdaptiveConnection::forward(const Tensor& x, const Tensor& a, LayerCarry& carry) {
  Tensor v;
  if (carry.velocity.defined()) {
    check_carry("AdaptiveConnection", a, carry);
    // eq. 18 with the ε of docs/math.md §4, one β̃ per token [B, N, 1]:
    //   r = sqrt(‖A_ℓ − A_{ℓ−1}‖ / (‖den‖ + ε) + ε),  β̃ = clamp((1 − r)², 0, 1 − δ)
    // den = v_{ℓ−1} (the reference code) or A_{ℓ−1} (the paper). Every op is
    // differentiable, so the gradient flows through β̃ too.
    const Tensor& den = params_.denominator == "velocity" ? carry.velocity : carry.prev_attn;
    Tensor ratio = token_norm(a - carry.prev_attn) / (token_norm(den) + params_.eps);
    Tensor r = sqrt(ratio + params_.eps);
    Tensor beta = clamp(square(1.0 - r), 0.0, 1.0 - params_.delta);
    v = beta * carry.velocity - a;  // v_ℓ = β̃ v_{ℓ−1} − A_ℓ, β̃ broadcast over d
  } else {
    v = -a;  // ℓ = 1: v_0 = 0, β̃_1 is irrelevant
  }
  carry.velocity = v;
  carry.prev_attn = a;
  return x - v * params_.gamma;
}

std::vector<std::string> connection_kinds() {
  std::vector<std::string> kinds;
  for (const ConnectionSpec* spec : connection_specs()) kinds.push_back(spec->name);
  return kinds;
}

std::shared_ptr<Connection> make_connection(const ConnectionConfig& config) {
  config.validate();
  const ConnectionSpec& spec = connection_spec(config.kind, "make_connection");
  ConnectionConfig resolved = config;
  resolved.params = resolve_params(config.params, *spec.params, "make_connection", config.kind);
  return spec.make(resolved);
}

namespace {

// γ̃, the step size the momentum and the adaptive connection share (one flag).
template <class P>
ParamField conn_gamma_field() {
  return param(&P::gamma, "gamma", "--conn-gamma",
               "momentum and adaptive connection's step size γ̃ > 0", positive_number());
}

}  // namespace

const ParamSchema& ResidualConnectionParams::schema() {
  static const ParamSchema s = make_schema<ResidualConnectionParams>("the residual connection", {});
  return s;
}

const ParamSchema& MomentumConnectionParams::schema() {
  using P = MomentumConnectionParams;
  static const ParamSchema s =
      make_schema<P>("the momentum connection",
                     {param(&P::beta, "beta", "--conn-beta", "momentum connection's β̃ in [0, 1)",
                            number_in(0, 1, "[0, 1)")),
                      conn_gamma_field<P>()});
  return s;
}

const ParamSchema& AdaptiveConnectionParams::schema() {
  using P = AdaptiveConnectionParams;
  static const ParamSchema s = make_schema<P>(
      "the adaptive connection",
      {conn_gamma_field<P>(),
       param(&P::delta, "delta", "--delta", "adaptive connection's δ in (0, 1)",
             number_in(0, 1, "(0, 1)")),
       param(&P::eps, "eps", "--conn-eps", "adaptive connection's ε in eq. 18", positive_number()),
       param(&P::denominator, "denominator", "--denominator",
             "adaptive connection's ‖A_ℓ − A_ℓ₋₁‖ divided by: velocity (the reference code) | "
             "attention (the paper)",
             one_of({"velocity", "attention"}))});
  return s;
}

const ConnectionSpec& residual_connection_spec() {
  static const ConnectionSpec spec = [] {
    ConnectionSpec s;
    s.name = "residual";
    s.summary = "x + a";
    s.params = &ResidualConnectionParams::schema();
    s.make = [](const ConnectionConfig&) { return std::make_shared<ResidualConnection>(); };
    return s;
  }();
  return spec;
}

const ConnectionSpec& momentum_connection_spec() {
  static const ConnectionSpec spec = [] {
    ConnectionSpec s;
    s.name = "momentum";
    s.summary = "heavy-ball momentum across layers with constant β̃, docs/math.md §4";
    s.params = &MomentumConnectionParams::schema();
    s.make = [](const ConnectionConfig& c) {
      const MomentumConnectionParams& p = c.params.as<MomentumConnectionParams>();
      return std::make_shared<MomentumConnection>(p.beta, p.gamma);
    };
    s.model_kinds = {{"momentum-connection", "momentum"}};
    return s;
  }();
  return spec;
}

const ConnectionSpec& adaptive_connection_spec() {
  static const ConnectionSpec spec = [] {
    ConnectionSpec s;
    s.name = "adaptive";
    s.summary = "momentum across layers with β̃ per token from eq. 18, docs/math.md §4";
    s.params = &AdaptiveConnectionParams::schema();
    s.make = [](const ConnectionConfig& c) {
      return std::make_shared<AdaptiveConnection>(c.params.as<AdaptiveConnectionParams>());
    };
    s.model_kinds = {{"adaptive", "momentum"}};
    return s;
  }();
  return spec;
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
  return forward(x, carry, {});
}

Tensor TransformerLayer::forward(const Tensor& x, LayerCarry& carry,
                                 const std::vector<int64_t>& lengths) {
  if (dynamic_cast<const ResidualConnection*>(connection.get())) {
    // The plain residual joins each sublayer's output to the stream in the pass of the
    // sublayer's closing dropout (dropout_add): the same values as block().
    if (config_.pre_norm) {
      Tensor h = attention->forward_residual(x, norm1->forward(x), lengths);
      return feed_forward->forward_residual(h, norm2->forward(h));
    }
    Tensor h = norm1->forward(attention->forward_residual(x, x, lengths));
    return norm2->forward(feed_forward->forward_residual(h, h));
  }
  return block(x, carry, [&](const Tensor& in) { return attention->forward(in, lengths); });
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
