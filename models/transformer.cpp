// TransformerLM: the layer stack with a token head, in parallel and recurrent form.
// Legend: B batch, N sequence length, d = d_model, V = vocab.
#include "polyak/models/transformer.h"

#include <cmath>
#include <utility>

#include "polyak/core/logistic_mixture.h"
#include "polyak/nn/init.h"
#include "polyak/nn/kinds.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/reduce.h"
#include "polyak/ops/shape_ops.h"

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
  check_choice(fn, "positions", positions, positions_kinds());
  check_choice(fn, "activation", activation, activation_kinds());
  check_choice(fn, "norm", norm, norm_kinds());
  const AttentionSpec& spec = attention_spec(attention, fn, "attention");
  resolve_params(attention_params, *spec.params, fn, attention)
      .validate(std::string(fn) + ": attention_params");
  resolve_params(connection_params, *connection_spec(connection, fn, "connection").params, fn,
                 connection)
      .validate(std::string(fn) + ": connection_params");
  POLYAK_CHECK(norm_eps > 0.0, fn, ": norm_eps = ", norm_eps, ", expected positive");
  check_choice(fn, "head", head, head_kinds());
  check_choice(fn, "pooling", pooling, pooling_kinds());
  POLYAK_CHECK(output_vocab >= 0 && output_vocab <= vocab, fn, ": output_vocab = ", output_vocab,
               ", expected 0 (the whole vocabulary) to vocab = ", vocab);
  if (head == "classes") {
    POLYAK_CHECK(classes >= 2, fn, ": classes = ", classes,
                 ", expected at least 2 for head = 'classes'");
    POLYAK_CHECK(head_hidden >= 0, fn, ": head_hidden = ", head_hidden,
                 ", expected a positive width (or 0: no hidden layer)");
    POLYAK_CHECK(pooling != "cls" || positions == "sinusoidal" || max_len >= 2, fn,
                 ": max_len = ", max_len,
                 ", expected at least 2 with pooling = 'cls' (the CLS vector takes a position)");
  }
  if (head == "mixture") {
    POLYAK_CHECK(mixtures >= 1 && mixtures <= mixture::kMaxComponents, fn,
                 ": mixtures = ", mixtures, ", expected 1 to ", mixture::kMaxComponents);
    POLYAK_CHECK(vocab >= 256, fn, ": vocab = ", vocab,
                 ", expected at least 256 for head = 'mixture' (its inputs are 8-bit intensities "
                 "0..255, and may add a start token)");
  }
  check_form(spec, causal, fn, "attention");
  // Anything left (a kind's own rules) is checked where it lands, once per distinct layer
  // configuration.
  layer_config(0).validate();
  if (layers > 1) layer_config(layers - 1).validate();
}

const std::vector<std::string>& head_kinds() {
  static const std::vector<std::string> kinds = {"tokens", "classes", "mixture"};
  return kinds;
}

const std::vector<std::string>& pooling_kinds() {
  static const std::vector<std::string> kinds = {"mean", "cls"};
  return kinds;
}

int64_t TransformerConfig::head_outputs() const {
  if (head == "classes") return classes;
  if (head == "mixture") return 3 * mixtures;
  return output_vocab > 0 ? output_vocab : vocab;
}

const std::vector<std::string>& stack_attention_kinds() {
  static const std::vector<std::string> kinds = [] {
    std::vector<std::string> names;
    for (const AttentionSpec* spec : attention_specs()) names.push_back(spec->name);
    return names;
  }();
  return kinds;
}

TransformerLayerConfig TransformerConfig::layer_config(int64_t index) const {
  TransformerLayerConfig c;
  c.attention.kind = attention;
  c.attention.d_model = d_model;
  c.attention.heads = heads;
  c.attention.head_dim = head_dim;
  c.attention.causal = causal;
  c.attention.dropout = dropout;
  c.attention.max_len = max_len;
  c.attention.params = attention_params;
  const AttentionSpec& spec = attention_spec(attention, "TransformerConfig", "attention");
  if (spec.per_layer) c.attention = spec.per_layer(c.attention, index, layers);
  c.ff_dim = resolved_ff_dim();
  c.activation = activation;
  c.dropout = dropout;
  c.pre_norm = pre_norm;
  c.norm = norm;
  c.norm_eps = norm_eps;
  c.connection.kind = connection;
  c.connection.params = connection_params;
  return c;
}

namespace {

// A model kind: an attention kind and a connection.
struct ModelKind {
  std::string name, attention, connection;
};

// Every attention kind that is a model kind of its own (with the residual connection), each
// followed by the kinds that pair it with another connection: the order of model_kinds().
const std::vector<ModelKind>& model_kind_table() {
  static const std::vector<ModelKind> table = [] {
    std::vector<ModelKind> kinds;
    for (const AttentionSpec* a : attention_specs()) {
      if (!a->model_kind) continue;
      kinds.push_back({a->name, a->name, "residual"});
      for (const ConnectionSpec* c : connection_specs())
        for (const auto& [name, attention] : c->model_kinds)
          if (attention == a->name) kinds.push_back({name, attention, c->name});
    }
    return kinds;
  }();
  return table;
}

}  // namespace

const std::vector<std::string>& model_kinds() {
  static const std::vector<std::string> kinds = [] {
    std::vector<std::string> names;
    for (const ModelKind& k : model_kind_table()) names.push_back(k.name);
    return names;
  }();
  return kinds;
}

void set_model_kind(TransformerConfig& config, const std::string& kind) {
  check_choice("set_model_kind", "kind", kind, model_kinds());
  for (const ModelKind& k : model_kind_table()) {
    if (kind != k.name) continue;
    if (config.attention != k.attention) config.attention_params = Params();
    if (config.connection != k.connection) config.connection_params = Params();
    config.attention = k.attention;
    config.connection = k.connection;
  }
}

std::string model_kind(const TransformerConfig& config) {
  for (const ModelKind& k : model_kind_table())
    if (config.attention == k.attention && config.connection == k.connection) return k.name;
  return "";
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
  for (int64_t i = 0; i < config_.layers; ++i)
    layers->push_back(std::make_shared<TransformerLayer>(config_.layer_config(i), gen));
  if (config_.final_norm)
    final_norm = register_module("final_norm", make_norm(config_.norm, d, config_.norm_eps));
  int64_t head_in = d;
  if (config_.head == "classes" && config_.head_hidden > 0) {
    head_hidden =
        register_module("head_hidden", std::make_shared<Linear>(d, config_.head_hidden, gen));
    head_in = config_.head_hidden;
  }
  head = register_module("head", std::make_shared<Linear>(head_in, config_.head_outputs(), gen));
  if (config_.head == "classes" && config_.pooling == "cls") {
    cls = Tensor::empty(Shape{d});
    normal_(cls, 0.0, 0.02, gen);
    register_parameter("cls", cls);
  }
}

void TransformerLM::check_tokens(const char* fn, const Tensor& tokens, int64_t rank) const {
  check_defined(fn, "tokens", tokens);
  POLYAK_CHECK(tokens.dtype() == DType::i32 || tokens.dtype() == DType::i64, fn, ": tokens is ",
               tokens.dtype(), ", expected an integer tensor (i32 or i64) of token ids");
  const Shape& shape = tokens.shape();
  bool positive = shape.rank() == rank;
  for (int64_t d : shape) positive = positive && d > 0;
  POLYAK_CHECK(positive, fn, ": tokens has shape ", shape,
               rank == 2 ? ", expected [B, N] with B, N > 0"
                         : ", expected [B] with B > 0 (one token per sequence)");
  if (!tokens.device().is_cpu()) return;  // the embedding's kernel checks the values
  const Indices ids = to_indices(fn, "tokens", tokens);
  const int64_t N = rank == 2 ? shape[1] : 1;
  for (int64_t i = 0; i < ids.numel(); ++i) {
    const int32_t t = ids[i];
    if (t >= 0 && t < config_.vocab) continue;
    if (rank == 2)
      fail(fn, ": tokens[", i / N, ", ", i % N, "] = ", t,
           ", expected in [0, vocab = ", config_.vocab, ")");
    fail(fn, ": tokens[", i, "] = ", t, ", expected in [0, vocab = ", config_.vocab, ")");
  }
}

Tensor TransformerLM::features(const Tensor& tokens, const std::vector<int64_t>& lengths) {
  const char* fn = "TransformerLM::forward";
  check_tokens(fn, tokens, 2);
  const int64_t B = tokens.size(0), N = tokens.size(1);
  is_padded(fn, lengths, B, N);
  const int64_t positions_needed = config_.positions_for(N);
  POLYAK_CHECK(config_.positions == "sinusoidal" || positions_needed <= config_.max_len, fn,
               ": tokens has ", N, " positions",
               positions_needed > N ? " (and the CLS vector one more)" : "",
               ", expected at most max_len = ", config_.max_len, " (learned positions)");
  Tensor x = embedding->forward(tokens);
  std::vector<int64_t> layer_lengths = lengths;
  if (cls.defined()) {  // the CLS vector first: every row one position longer
    const int64_t d = config_.d_model;
    Tensor first = cls.reshape({1, 1, d});
    if (B > 1) first = concat(std::vector<Tensor>(static_cast<size_t>(B), first), 0);
    x = concat({first.to(x.dtype()), x}, 1);
    for (int64_t& n : layer_lengths) ++n;
  }
  x = dropout->forward(positions->forward(x));
  LayerCarry carry;
  for (const auto& layer : *layers) x = layer->forward(x, carry, layer_lengths);
  return final_norm ? final_norm->forward(x) : x;
}

Tensor TransformerLM::pool(const Tensor& states, const std::vector<int64_t>& lengths) const {
  const char* fn = "TransformerLM::pool";
  check_rank(fn, "states", states, 3, "[B, N, d]");
  const int64_t B = states.size(0), N = states.size(1), d = states.size(2);
  if (config_.pooling == "cls") return slice(states, 1, 0, 1).reshape({B, d});
  if (!is_padded(fn, lengths, B, N)) return mean(states, 1);
  // Σ over the real positions / n: the mask zeroes the padding's states.
  const Tensor mask = padding_mask(lengths, B, N, states.dtype(), states.device());
  std::vector<double> inverse(static_cast<size_t>(B));
  for (size_t b = 0; b < inverse.size(); ++b) inverse[b] = 1.0 / static_cast<double>(lengths[b]);
  Tensor scale = Tensor::from(inverse, Shape{B, 1}, states.dtype());
  if (!states.device().is_cpu()) scale = scale.to(states.device());
  return sum(states * mask.reshape({B, N, 1}), 1) * scale;
}

Tensor TransformerLM::forward(const Tensor& tokens, const std::vector<int64_t>& lengths) {
  Tensor h = features(tokens, lengths);
  if (config_.head != "classes") return head->forward(h);
  std::vector<int64_t> layer_lengths = lengths;
  if (cls.defined())
    for (int64_t& n : layer_lengths) ++n;
  h = pool(h, layer_lengths);
  if (head_hidden) h = relu(head_hidden->forward(h));
  return head->forward(h);
}

Tensor TransformerLM::forward(const Tensor& tokens) {
  return forward(tokens, {});
}

// ---- the recurrent form ----------------------------------------------------------------

ModelState TransformerLM::initial_state(int64_t batch) const {
  const char* fn = "TransformerLM::initial_state";
  POLYAK_CHECK(config_.causal, fn,
               ": the model is not causal (causal = false), expected a causal model: only a "
               "causal model runs recurrently");
  POLYAK_CHECK(config_.head != "classes", fn,
               ": the model has a class head (head = 'classes'), expected a token or mixture "
               "head: a classifier sees the whole sequence and has no recurrent form");
  POLYAK_CHECK(batch > 0, fn, ": batch = ", batch, ", expected a positive integer");
  ModelState state;
  state.batch = batch;
  for (const auto& layer : *layers) state.layers.push_back(layer->attention->initial_state(batch));
  return state;
}

Tensor TransformerLM::step(const Tensor& tokens, ModelState& state) {
  const char* fn = "TransformerLM::step";
  NoGradGuard no_grad;
  POLYAK_CHECK(config_.causal, fn,
               ": the model is not causal (causal = false), expected a causal model: only a "
               "causal model runs recurrently");
  check_tokens(fn, tokens, 1);
  const int64_t B = tokens.size(0);
  POLYAK_CHECK(B == state.batch, fn, ": tokens has batch ", B, ", expected the state's batch ",
               state.batch);
  POLYAK_CHECK(state.layers.size() == layers->size(), fn, ": the state has ", state.layers.size(),
               " layers, expected ", layers->size(), " (a state from another model?)");
  for (size_t i = 0; i < state.layers.size(); ++i) {
    const AttentionState& s = state.layers[i];
    const std::string& kind = (*layers)[i]->attention->config().kind;
    POLYAK_CHECK(s.kind == kind, fn, ": the state of layer ", i, " was made by a '", s.kind,
                 "' attention, expected one made by a '", kind, "' attention");
    POLYAK_CHECK(s.batch == B, fn, ": the state of layer ", i, " has batch ", s.batch,
                 ", expected ", B);
    POLYAK_CHECK(s.position == state.position, fn, ": the state of layer ", i, " is at position ",
                 s.position, ", expected the model state's ", state.position);
  }
  POLYAK_CHECK(config_.positions == "sinusoidal" || state.position < config_.max_len, fn,
               ": position ", state.position,
               " is beyond the learned positions, expected < max_len = ", config_.max_len);

  // As features(), for the one position state.position: [B, 1, d].
  Tensor x = embedding->forward(tokens.reshape({B, 1}));
  x = dropout->forward(positions->forward(x, state.position));
  LayerCarry carry;  // goes across the layers at this position
  for (size_t i = 0; i < layers->size(); ++i) x = (*layers)[i]->step(x, state.layers[i], carry);
  if (final_norm) x = final_norm->forward(x);
  ++state.position;
  return head->forward(x).reshape({B, config_.head_outputs()});
}

int64_t TransformerLM::step_limit() const {
  int64_t limit = config_.positions == "sinusoidal" ? 0 : config_.max_len;
  for (const auto& layer : *layers) {
    const int64_t own = layer->attention->step_limit();
    if (own > 0 && (limit == 0 || own < limit)) limit = own;
  }
  return limit;
}

std::string TransformerLM::step_limit_reason() const {
  const int64_t limit = step_limit();
  for (const auto& layer : *layers)
    if (layer->attention->step_limit() == limit && limit > 0)
      return config_.attention + " attention over max_len = " + std::to_string(limit);
  return "learned positions up to max_len = " + std::to_string(limit);
}

}  // namespace polyak
