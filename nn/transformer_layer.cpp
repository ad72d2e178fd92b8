#include "nn/transformer_layer.h"

#include "ops/elementwise.h"

namespace polyak {

Tensor ResidualConnection::forward(const Tensor& x, const Tensor& a, LayerCarry&) {
  return x + a;
}

const std::vector<std::string>& connection_kinds() {
  static const std::vector<std::string> kinds = {"residual"};
  return kinds;
}

std::shared_ptr<Connection> make_connection(const std::string& kind) {
  check_choice("make_connection", "kind", kind, connection_kinds());
  return std::make_shared<ResidualConnection>();
}

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
  check_choice(fn, "connection", connection, connection_kinds());
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

Tensor TransformerLayer::forward(const Tensor& x, LayerCarry& carry) {
  if (config_.pre_norm) {
    Tensor h = connection->forward(x, attention->forward(norm1->forward(x)), carry);
    return h + feed_forward->forward(norm2->forward(h));
  }
  Tensor h = norm1->forward(connection->forward(x, attention->forward(x), carry));
  return norm2->forward(h + feed_forward->forward(h));
}

Tensor TransformerLayer::forward(const Tensor& x) {
  LayerCarry carry;
  return forward(x, carry);
}

}  // namespace polyak
