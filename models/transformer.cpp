#include "models/transformer.h"

namespace polyak {

void TransformerConfig::validate() const {
  const char* fn = "TransformerConfig";
  auto positive = [&](const char* field, int64_t value) {
    POLYAK_CHECK(value > 0, fn, ": ", field, " = ", value, ", expected a positive integer");
  };
  positive("vocab", vocab);
  positive("max_len", max_len);
  positive("d_model", d_model);
  positive("heads", heads);
  positive("layers", layers);
  POLYAK_CHECK(head_dim >= 0, fn, ": head_dim = ", head_dim,
               ", expected a positive integer (or 0: d_model / heads)");
  POLYAK_CHECK(head_dim > 0 || d_model % heads == 0, fn, ": d_model = ", d_model,
               " is not divisible by heads = ", heads,
               ", expected a multiple of heads when head_dim is unset (0)");
  POLYAK_CHECK(ff_dim >= 0, fn, ": ff_dim = ", ff_dim,
               ", expected a positive integer (or 0: 4 · d_model)");
  POLYAK_CHECK(dropout >= 0.0 && dropout < 1.0, fn, ": dropout = ", dropout,
               ", expected in [0, 1)");
  check_choice(fn, "attention", attention, attention_kinds());
  check_choice(fn, "positions", positions, positions_kinds());
  check_choice(fn, "activation", activation, activation_kinds());
  check_choice(fn, "norm", norm, norm_kinds());
  check_choice(fn, "connection", connection, connection_kinds());
  check_choice(fn, "feature_map", feature_map, feature_map_kinds());
  POLYAK_CHECK(attention_eps > 0.0, fn, ": attention_eps = ", attention_eps, ", expected positive");
  POLYAK_CHECK(norm_eps > 0.0, fn, ": norm_eps = ", norm_eps, ", expected positive");
}

TransformerLayerConfig TransformerConfig::layer_config() const {
  TransformerLayerConfig c;
  c.attention.kind = attention;
  c.attention.d_model = d_model;
  c.attention.heads = heads;
  c.attention.head_dim = head_dim;
  c.attention.causal = causal;
  c.attention.dropout = dropout;
  c.attention.feature_map = feature_map;
  c.attention.eps = attention_eps;
  c.ff_dim = resolved_ff_dim();
  c.activation = activation;
  c.dropout = dropout;
  c.pre_norm = pre_norm;
  c.norm = norm;
  c.norm_eps = norm_eps;
  c.connection = connection;
  return c;
}

TransformerLM::TransformerLM(const TransformerConfig& config) : config_(config) {
  config_.validate();
  Generator gen(config_.seed);
  const int64_t d = config_.d_model;
  embedding = register_module("embedding", std::make_shared<Embedding>(config_.vocab, d, gen));
  positions =
      register_module("positions", make_positions(config_.positions, config_.max_len, d, gen));
  dropout = register_module("dropout", std::make_shared<Dropout>(config_.dropout, gen));
  layers = register_module("layers", std::make_shared<ModuleList<TransformerLayer>>());
  const TransformerLayerConfig layer = config_.layer_config();
  for (int64_t i = 0; i < config_.layers; ++i)
    layers->push_back(std::make_shared<TransformerLayer>(layer, gen));
  if (config_.final_norm)
    final_norm = register_module("final_norm", make_norm(config_.norm, d, config_.norm_eps));
  head = register_module("head", std::make_shared<Linear>(d, config_.vocab, gen));
}

void TransformerLM::check_tokens(const Indices& tokens) const {
  const char* fn = "TransformerLM::forward";
  POLYAK_CHECK(tokens.shape.rank() == 2 && tokens.shape[0] > 0 && tokens.shape[1] > 0, fn,
               ": tokens has shape ", tokens.shape, ", expected [B, N] with B, N > 0");
  const int64_t N = tokens.shape[1];
  POLYAK_CHECK(config_.positions == "sinusoidal" || N <= config_.max_len, fn, ": tokens has ", N,
               " positions, expected at most max_len = ", config_.max_len, " (learned positions)");
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    int32_t t = tokens[i];
    POLYAK_CHECK(t >= 0 && t < config_.vocab, fn, ": tokens[", i / N, ", ", i % N, "] = ", t,
                 ", expected in [0, vocab = ", config_.vocab, ")");
  }
}

Tensor TransformerLM::features(const Indices& tokens) {
  check_tokens(tokens);
  Tensor x = dropout->forward(positions->forward(embedding->forward(tokens)));
  LayerCarry carry;
  for (const auto& layer : *layers) x = layer->forward(x, carry);
  return final_norm ? final_norm->forward(x) : x;
}

Tensor TransformerLM::forward(const Indices& tokens) {
  return head->forward(features(tokens));
}

}  // namespace polyak
