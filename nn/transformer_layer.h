// One transformer layer: attention and feed-forward, each joined to the stream x [B,N,d].
//
//   post-norm (default, as the reference code):  x = norm1(connect(x, attn(x)))
//                                                x = norm2(x + ff(x))
//   pre-norm:                                    x = connect(x, attn(norm1(x)))
//                                                x = x + ff(norm2(x))
//
// `connect` is the attention connection. The residual one is x + a. docs/math.md §4's momentum
// connections replace it: they carry a velocity from layer to layer (and the adaptive one
// the previous layer's attention output), which is why forward takes a LayerCarry. The
// residual connection never touches the carry, so the plain path does no extra work.
// Every connection works token by token (the adaptive β̃ too: one value per position), so
// step(), the same layer for one position with the attention stepping against its
// recurrent state, computes what forward() computes at that position.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "polyak/core/rng.h"
#include "polyak/nn/attention.h"
#include "polyak/nn/feed_forward.h"
#include "polyak/nn/module.h"
#include "polyak/nn/norm.h"

namespace polyak {

// What flows between layers besides x. Undefined tensors mean "none yet" (v_0 = 0).
struct LayerCarry {
  Tensor velocity;   // v_ℓ of docs/math.md §4, [B, N, d]
  Tensor prev_attn;  // A_{ℓ−1}, for the adaptive β̃ of eq. 18
};

class Connection : public Module {
 public:
  // The stream x [B,N,d] joined with the attention output a [B,N,d]; may update `carry`.
  virtual Tensor forward(const Tensor& x, const Tensor& a, LayerCarry& carry) = 0;
};

// x + a.
class ResidualConnection final : public Connection {
 public:
  Tensor forward(const Tensor& x, const Tensor& a, LayerCarry& carry) override;
};

// The momentum connection's settings (docs/math.md §4): constant β̃ ∈ [0, 1) and γ̃ > 0, the
// paper's copy-task values.
struct MomentumConnectionParams {
  double beta = 0.99;
  double gamma = 0.99;
  static const ParamSchema& schema();
};

// The adaptive connection's: γ̃ and δ ∈ (0, 1), with β̃ per token from eq. 18.
struct AdaptiveConnectionParams {
  double gamma = 0.99;
  double delta = 1e-3;
  double eps = 1e-6;  // keeps the square root and the quotient finite
  // ‖A_ℓ − A_{ℓ−1}‖ is divided by ‖v_{ℓ−1}‖ ("velocity", the reference code) or by ‖A_{ℓ−1}‖
  // ("attention", the paper's ‖∇f(x_{k−1})‖).
  std::string denominator = "velocity";
  static const ParamSchema& schema();
};

// The residual connection has no settings.
struct ResidualConnectionParams {
  static const ParamSchema& schema();
};

struct ConnectionConfig {
  std::string kind = "residual";  // one of connection_kinds()
  Params params;                  // the kind's struct (empty: its defaults)

  // Throws polyak::Error naming the field, the value and what was expected.
  void validate() const;
};

// docs/math.md §4, constant β̃: v_ℓ = β̃ v_{ℓ−1} − a;  x − γ̃ v_ℓ. With β̃ = 0, γ̃ = 1 it equals
// the residual connection bit for bit.
class MomentumConnection final : public Connection {
 public:
  MomentumConnection(double beta, double gamma);
  Tensor forward(const Tensor& x, const Tensor& a, LayerCarry& carry) override;

 private:
  double beta_, gamma_;
};

// docs/math.md §4, adaptive β̃ (eq. 18), one value per token:
//   β̃_ℓ = clamp((1 − sqrt(‖A_ℓ − A_{ℓ−1}‖ / (‖v_{ℓ−1}‖ + ε) + ε))², 0, 1 − δ)
// (β̃_1 is irrelevant: v_0 = 0), then as MomentumConnection. Gradients flow through β̃.
class AdaptiveConnection final : public Connection {
 public:
  explicit AdaptiveConnection(const AdaptiveConnectionParams& params);
  Tensor forward(const Tensor& x, const Tensor& a, LayerCarry& carry) override;

 private:
  AdaptiveConnectionParams params_;
};

// "residual", "momentum", "adaptive": the connections of nn/kinds.h's table.
std::vector<std::string> connection_kinds();
struct ConnectionSpec;  // nn/kinds.h
const ConnectionSpec& residual_connection_spec();
const ConnectionSpec& momentum_connection_spec();
const ConnectionSpec& adaptive_connection_spec();
// Validates `config` and builds its kind.
std::shared_ptr<Connection> make_connection(const ConnectionConfig& config);

struct TransformerLayerConfig {
  AttentionConfig attention;        // its d_model is the layer's width
  int64_t ff_dim = 0;               // 0: 4 · d_model
  std::string activation = "gelu";  // one of activation_kinds()
  double dropout = 0.0;             // feed-forward dropout (attention has its own)
  bool pre_norm = false;
  std::string norm = "layernorm";  // one of norm_kinds()
  double norm_eps = 1e-5;
  ConnectionConfig connection;

  int64_t resolved_ff_dim() const { return ff_dim > 0 ? ff_dim : 4 * attention.d_model; }
  // Throws polyak::Error naming the field (and validates the attention config).
  void validate() const;
};

class TransformerLayer : public Module {
 public:
  TransformerLayer(const TransformerLayerConfig& config, Generator& gen);

  // x [B, N, d] → [B, N, d]; `carry` goes from one layer to the next.
  Tensor forward(const Tensor& x, LayerCarry& carry);
  // The same on a right-padded batch: row b holds lengths[b] real positions (Attention's
  // forward(x, lengths); empty: none). Everything but a non-causal attention works position
  // by position, so only the attention sees the lengths.
  Tensor forward(const Tensor& x, LayerCarry& carry, const std::vector<int64_t>& lengths);
  Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }
  // Recurrent form: x [B, 1, d], the next position → [B, 1, d]. The attention steps against
  // `state`; `carry` goes from one layer to the next as in forward(). No graph is recorded.
  Tensor step(const Tensor& x, AttentionState& state, LayerCarry& carry);

  const TransformerLayerConfig& config() const { return config_; }

  std::shared_ptr<Attention> attention;
  std::shared_ptr<Connection> connection;
  std::shared_ptr<Norm> norm1;
  std::shared_ptr<FeedForward> feed_forward;
  std::shared_ptr<Norm> norm2;

 private:
  // The layer around `attend` (the attention's forward or step), as the header's formulas.
  template <class Attend>
  Tensor block(const Tensor& x, LayerCarry& carry, Attend&& attend);

  TransformerLayerConfig config_;
};

}  // namespace polyak
