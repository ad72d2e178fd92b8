// Memory estimates from a model's config (see memory.h).
#include "polyak/models/memory.h"

#include <cstdio>

#include "polyak/core/storage.h"
#include "polyak/nn/kinds.h"

namespace polyak {
namespace {

// f32 elements that one layer's forward keeps for its backward, per token: multiples of d,
// of the heads' width and of the feed-forward's, plus the kind's extra_activations and
// kept_bytes. Measured with the allocator's peak (B 4, N 64, d 64 to 128, ff 64 to 256, 4
// to 16 heads): 11 d + 2 ff for linear attention with inner = d, up to 2 d more with the
// adaptive connection or retention; tests/models/test_memory.cpp holds the estimate to
// within [0.8, 2] of the measured peak for every kind.
constexpr double kLayerPerD = 7, kLayerPerInner = 6, kLayerPerFF = 2;
// Per token outside the layers: the embedding and positions, the backward's transient of
// one layer (measured: 5 d + 0.8 ff) and the logits with their softmax and gradient.
constexpr double kModelPerD = 6, kModelPerFF = 1, kModelPerVocab = 4;

double layer_parameters(const TransformerLayerConfig& layer) {
  const double d = static_cast<double>(layer.attention.d_model);
  const double ff = static_cast<double>(layer.ff_dim);
  const double norm = layer.norm == "rmsnorm" ? d : 2 * d;
  const AttentionSpec& spec = attention_spec(layer.attention.kind, "parameter_count", "attention");
  return spec.parameters(layer.attention) + 2 * norm + (d * ff + ff) + (ff * d + d);
}

double layer_activation_bytes(const TransformerLayerConfig& layer, int64_t length) {
  const AttentionConfig& a = layer.attention;
  const double d = static_cast<double>(a.d_model);
  const double inner = static_cast<double>(a.heads * a.resolved_head_dim());
  const double ff = static_cast<double>(layer.ff_dim);
  const AttentionSpec& spec = attention_spec(a.kind, "estimate_training_memory", "attention");
  const double per_token = kLayerPerD * d + kLayerPerInner * inner + kLayerPerFF * ff +
                           (spec.extra_activations ? spec.extra_activations(a) : 0.0);
  return 4 * per_token * static_cast<double>(length) + spec.kept_bytes(a, length);
}

// Sums `f(layer config)` over the layers; a kind that is the same in every layer is
// evaluated once (a million layers cost one evaluation).
template <class F>
double over_layers(const TransformerConfig& c, F f) {
  if (c.layers <= 0) return 0;
  if (!attention_spec(c.attention, "TransformerConfig", "attention").per_layer)
    return f(c.layer_config(0)) * static_cast<double>(c.layers);
  double total = 0;
  for (int64_t i = 0; i < c.layers; ++i) total += f(c.layer_config(i));
  return total;
}

}  // namespace

double parameter_count(const TransformerConfig& c) {
  const double d = static_cast<double>(c.d_model), vocab = static_cast<double>(c.vocab);
  double n = vocab * d;                                                   // embedding
  if (c.positions == "learned") n += static_cast<double>(c.max_len) * d;  // positions
  n += over_layers(c, layer_parameters);                                  // layers
  if (c.final_norm) n += c.norm == "rmsnorm" ? d : 2 * d;                 // final norm
  double head_in = d;
  if (c.head == "classes" && c.head_hidden > 0) {  // the ReLU layer
    head_in = static_cast<double>(c.head_hidden);
    n += d * head_in + head_in;
  }
  const double out = static_cast<double>(c.head_outputs());
  n += head_in * out + out;                               // head
  if (c.head == "classes" && c.pooling == "cls") n += d;  // the CLS vector
  return n;
}

MemoryEstimate estimate_training_memory(const TransformerConfig& c, int64_t batch, int64_t length,
                                        int optimizer_states) {
  MemoryEstimate e;
  e.parameters = parameter_count(c);
  const double d = static_cast<double>(c.d_model);
  // The sinusoidal table is a buffer of max_len rows, built in f64 before it is rounded; the
  // kinds' own buffers (Performer's Ω).
  double buffers = c.positions == "sinusoidal" ? 3 * static_cast<double>(c.max_len) * d : 0;
  buffers += over_layers(c, [](const TransformerLayerConfig& layer) {
    const AttentionSpec& spec = attention_spec(layer.attention.kind);
    return spec.buffers ? spec.buffers(layer.attention) : 0.0;
  });
  e.weight_bytes = 4 * (e.parameters + buffers);
  e.gradient_bytes = 4 * e.parameters;
  e.optimizer_bytes = 4 * e.parameters * optimizer_states;
  const double tokens = static_cast<double>(batch) * static_cast<double>(length);
  const double model =
      4 * tokens *
      (kModelPerD * d + kModelPerFF * static_cast<double>(c.resolved_ff_dim()) +
       kModelPerVocab * static_cast<double>(c.head == "classes" ? 0 : c.head_outputs()));
  const double layers = over_layers(c, [&](const TransformerLayerConfig& layer) {
    return layer_activation_bytes(layer, length);
  });
  e.activation_bytes = model + static_cast<double>(batch) * layers;
  return e;
}

std::string format_bytes(double bytes) {
  static const char* const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(static_cast<long long>(bytes)) + " bytes";
  int unit = -1;
  while (bytes >= 1024 && unit + 1 < 6) {
    bytes /= 1024;
    ++unit;
  }
  char text[64];
  std::snprintf(text, sizeof text, "%.1f %s", bytes, units[unit]);
  return text;
}

namespace {
std::string format_count(double n) {
  char text[32];
  std::snprintf(text, sizeof text, n < 1e6 ? "%.0f" : "%.3g", n);
  return text;
}
}  // namespace

void check_memory(const char* fn, const MemoryEstimate& e, Device device,
                  std::optional<double> limit, const std::string& flags,
                  const std::string& override_hint) {
  std::string against;
  if (limit) {
    against = "the limit of " + format_bytes(*limit);
  } else if (const std::optional<size_t> available = available_memory(device)) {
    limit = static_cast<double>(*available);
    against = "the " + format_bytes(*limit) + " available on " + device.str();
  } else {
    return;
  }
  if (e.total() <= *limit) return;
  std::string parts =
      format_count(e.parameters) + " parameters: weights " + format_bytes(e.weight_bytes);
  for (const auto& [part, bytes] :
       {std::pair{"gradients", e.gradient_bytes}, std::pair{"optimizer state", e.optimizer_bytes},
        std::pair{"activations", e.activation_bytes}})
    if (bytes > 0) parts += std::string(", ") + part + " " + format_bytes(bytes);
  fail(fn, ": ", flags, " needs about ", format_bytes(e.total()), " (", parts, "), more than ",
       against, ": ", override_hint);
}

}  // namespace polyak
