// TransformerLM: a decoder (or encoder) language model over token ids.
//
//   tokens [B,N] → embedding + positions → dropout → layers → final norm → head → [B,N,V]
//
// Legend: B batch, N sequence length, d = d_model, V = vocab.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/indices.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/norm.h"
#include "nn/positions.h"
#include "nn/transformer_layer.h"

namespace polyak {

// Every field has a default: the copy-task model of the paper (4 layers, 8 heads, D = 32,
// sequences up to 128 over 10 symbols and a separator).
struct TransformerConfig {
  int64_t vocab = 11;
  int64_t max_len = 128;  // learned positions: the longest sequence
  int64_t d_model = 256;
  int64_t heads = 8;
  int64_t head_dim = 0;  // 0: d_model / heads
  int64_t ff_dim = 0;    // 0: 4 · d_model
  int64_t layers = 4;
  double dropout = 0.1;              // embeddings, attention output, feed-forward
  std::string attention = "linear";  // attention_kinds()
  bool causal = true;
  bool pre_norm = false;
  std::string positions = "sinusoidal";  // positions_kinds()
  std::string activation = "gelu";       // activation_kinds()
  std::string norm = "layernorm";        // norm_kinds()
  bool final_norm = true;
  std::string connection = "residual";  // connection_kinds()
  std::string feature_map = "elu";      // feature_map_kinds() (linear kinds)
  double attention_eps = 1e-6;          // linear kinds' normaliser
  double norm_eps = 1e-5;
  uint64_t seed = 0;  // initialisation and dropout streams

  // Throws polyak::Error "TransformerConfig: <field> = <value>, expected ...".
  void validate() const;
  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : d_model / heads; }
  int64_t resolved_ff_dim() const { return ff_dim > 0 ? ff_dim : 4 * d_model; }
  // The configuration every layer is built from.
  TransformerLayerConfig layer_config() const;
};

class TransformerLM : public Module {
 public:
  // Validates `config` and draws every parameter from Generator(config.seed).
  explicit TransformerLM(const TransformerConfig& config);

  // tokens [B, N] with values in [0, vocab) → logits [B, N, vocab]. N is bounded by
  // max_len with learned positions; sinusoidal positions have no bound.
  Tensor forward(const Indices& tokens);
  Tensor operator()(const Indices& tokens) { return forward(tokens); }
  // The final hidden states [B, N, d] (after the final norm, before the head).
  Tensor features(const Indices& tokens);

  const TransformerConfig& config() const { return config_; }

  std::shared_ptr<Embedding> embedding;
  std::shared_ptr<Positions> positions;
  std::shared_ptr<Dropout> dropout;
  std::shared_ptr<ModuleList<TransformerLayer>> layers;
  std::shared_ptr<Norm> final_norm;  // null when config.final_norm is off
  std::shared_ptr<Linear> head;

 private:
  void check_tokens(const Indices& tokens) const;

  TransformerConfig config_;
};

}  // namespace polyak
