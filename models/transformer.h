// TransformerLM: a decoder (or encoder) language model over token ids.
//
//   tokens [B,N] → embedding + positions → dropout → layers → final norm → head → [B,N,V]
//
// Recurrent form (causal models, generation): the same for one position t at a time,
// each layer's attention stepping against its state (nn/attention.h), the momentum
// connections' carry going across the layers at position t as it does in forward():
//
//   tokens [B] → embedding + positions[t] → dropout → layer.step × L → final norm → head → [B,V]
//
// Legend: B batch, N sequence length, d = d_model, V = vocab, L layers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "polyak/core/indices.h"
#include "polyak/core/params.h"
#include "polyak/nn/dropout.h"
#include "polyak/nn/embedding.h"
#include "polyak/nn/linear.h"
#include "polyak/nn/module.h"
#include "polyak/nn/norm.h"
#include "polyak/nn/positions.h"
#include "polyak/nn/transformer_layer.h"

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
  std::string attention = "linear";  // stack_attention_kinds()
  // The attention kind's settings (its struct of nn/kinds.h: MomentumParams, …); empty: the
  // kind's defaults.
  Params attention_params;
  bool causal = true;
  bool pre_norm = false;
  std::string positions = "sinusoidal";  // positions_kinds()
  std::string activation = "gelu";       // activation_kinds()
  std::string norm = "layernorm";        // norm_kinds()
  bool final_norm = true;
  std::string connection = "residual";  // connection_kinds()
  Params connection_params;             // the connection's settings; empty: its defaults
  double norm_eps = 1e-5;
  uint64_t seed = 0;  // initialisation and dropout streams
  // The head on the final hidden states (docs/math.md §10):
  //   "tokens"   a linear map to the vocabulary at every position → [B, N, vocab]
  //   "classes"  the states pooled over each row's real positions, then (with head_hidden)
  //              a ReLU layer, then a linear map to the classes → [B, classes]
  //   "mixture"  PixelCNN++'s discretized logistic mixture over 256 levels: per position
  //              and component a logit, a mean and a log-scale → [B, N, 3 · mixtures]
  //              (ops/mixture.h reads them)
  std::string head = "tokens";  // head_kinds()
  int64_t classes = 0;          // "classes": how many (≥ 2)
  // "classes": "mean" (the mean of the real positions' states) or "cls" (a learned vector
  // put before the first token; its final state — the sequence then takes N + 1 positions).
  std::string pooling = "mean";  // pooling_kinds()
  int64_t head_hidden = 0;       // "classes": the ReLU layer's width (0: none)
  int64_t mixtures = 10;         // "mixture": the components K
  // "tokens": logits over the first output_vocab tokens only (0: the whole vocabulary) — a
  // pixel model's start token is an input and never a target, so its softmax is 256-way.
  int64_t output_vocab = 0;

  // Throws polyak::Error "TransformerConfig: <field> = <value>, expected ...".
  void validate() const;
  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : d_model / heads; }
  int64_t resolved_ff_dim() const { return ff_dim > 0 ? ff_dim : 4 * d_model; }
  // The head's width at each position (tokens: output_vocab or vocab; classes: classes;
  // mixture: 3 · K).
  int64_t head_outputs() const;
  // Positions a sequence of n tokens takes in the layers: n + 1 with CLS pooling.
  int64_t positions_for(int64_t n) const {
    return head == "classes" && pooling == "cls" ? n + 1 : n;
  }
  // The configuration layer `index` is built from. A stack kind resolves per layer:
  // "transnormer" gives DiagAttention ("diag") to the first half of the layers
  // (index < layers / 2) and NormAttention ("norm") to the rest.
  TransformerLayerConfig layer_config(int64_t index = 0) const;
};

// "tokens", "classes", "mixture"; "mean", "cls".
const std::vector<std::string>& head_kinds();
const std::vector<std::string>& pooling_kinds();

// attention_kinds() plus the stack kinds that mix them across layers ("transnormer").
const std::vector<std::string>& stack_attention_kinds();

// The model kinds of the paper's comparison, as (attention, connection) pairs:
//   softmax             softmax attention,  residual connection
//   linear              linear attention,   residual
//   momentum            momentum attention, residual
//   momentum-connection momentum attention, momentum connection (constant β̃)
//   adaptive            momentum attention, adaptive connection (per-token β̃)
//   transnormer         DiagAttention then NormAttention layers (docs/math.md §5), residual
//   mega, mega-chunk    Mega's gated EMA attention, whole or chunked (§6), residual
//   performer           linear attention on FAVOR+ features (§7), residual
//   linformer           softmax on sequence-projected K, V (§7), residual; non-causal only
const std::vector<std::string>& model_kinds();
// Sets config.attention and config.connection for `kind`, and empties attention_params or
// connection_params where their kind changes (back to the new kind's defaults); anything
// else is untouched. An unknown kind is a polyak::Error listing the valid ones.
void set_model_kind(TransformerConfig& config, const std::string& kind);
// The kind whose pair config has, or "" when it is none of them.
std::string model_kind(const TransformerConfig& config);

// Every layer's attention state, for RNN-mode generation.
struct ModelState {
  int64_t batch = 0;
  int64_t position = 0;  // positions consumed so far
  std::vector<AttentionState> layers;
};

class TransformerLM : public Module {
 public:
  // Validates `config` and draws every parameter from Generator(config.seed).
  explicit TransformerLM(const TransformerConfig& config);

  // tokens [B, N], an integer tensor (i32 or i64) with values in [0, vocab) → the head's
  // output: logits [B, N, vocab] ("tokens"), class logits [B, classes] ("classes"), mixture
  // parameters [B, N, 3K] ("mixture"). N is bounded by max_len with learned positions
  // (N + 1 with CLS pooling); sinusoidal positions have no bound. The token values are
  // checked here when the tokens are on the CPU; on a device, by the embedding's kernel.
  Tensor forward(const Tensor& tokens);
  Tensor operator()(const Tensor& tokens) { return forward(tokens); }
  // The same on a right-padded batch: row b holds lengths[b] real tokens (1 ≤ n ≤ N) and
  // then padding of any value in the vocabulary; empty: none. A non-causal model computes at
  // the real positions what it computes on each row alone (Attention::forward), and mean
  // pooling averages the real positions only. The outputs of a token or mixture head at
  // padding positions are unspecified.
  Tensor forward(const Tensor& tokens, const std::vector<int64_t>& lengths);
  // The final hidden states [B, N, d] (after the final norm, before the head; [B, N + 1, d]
  // with CLS pooling, the CLS position first).
  Tensor features(const Tensor& tokens, const std::vector<int64_t>& lengths = {});
  // "classes": the states [B, N, d] of features() pooled to [B, d] (mean over each row's
  // real positions, or the CLS position).
  Tensor pool(const Tensor& states, const std::vector<int64_t>& lengths = {}) const;

  // ---- recurrent (RNN-mode) form: causal models only ----
  // A fresh state for `batch` sequences. Throws polyak::Error for a non-causal model.
  ModelState initial_state(int64_t batch) const;
  // tokens [B] (i32 or i64), the next token of each sequence → the head's output for the
  // token after it, [B, vocab] (or [B, 3K] for a mixture head; a class head has no
  // recurrent form);
  // advances `state`. Equals row state.position of forward() on the whole prefix (tested).
  // Records no graph. A state from another model (kind, layers, batch, widths) is a
  // polyak::Error naming what differs.
  Tensor step(const Tensor& tokens, ModelState& state);
  // The positions step() can take from a fresh state (0: no limit): max_len with learned
  // positions, and the least limit of the layers' attentions (whole-sequence Mega's max_len).
  int64_t step_limit() const;
  // Why step_limit() is what it is, for errors ("learned positions", "mega attention").
  std::string step_limit_reason() const;

  const TransformerConfig& config() const { return config_; }

  std::shared_ptr<Embedding> embedding;
  std::shared_ptr<Positions> positions;
  std::shared_ptr<Dropout> dropout;
  std::shared_ptr<ModuleList<TransformerLayer>> layers;
  std::shared_ptr<Norm> final_norm;     // null when config.final_norm is off
  std::shared_ptr<Linear> head_hidden;  // "classes" with head_hidden > 0; else null
  std::shared_ptr<Linear> head;
  Tensor cls;  // [d], CLS pooling's learned first position; else undefined

 private:
  // tokens of rank `rank` ([B, N] or [B]), integer, and on the CPU each within the vocabulary.
  void check_tokens(const char* fn, const Tensor& tokens, int64_t rank) const;

  TransformerConfig config_;
};

}  // namespace polyak
