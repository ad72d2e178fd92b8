// One transformer layer: attention and feed-forward, each joined to the stream x [B,N,d].
//
//   post-norm (default, as the reference code):  x = norm1(connect(x, attn(x)))
//                                                x = norm2(x + ff(x))
//   pre-norm:                                    x = connect(x, attn(norm1(x)))
//                                                x = x + ff(norm2(x))
//
// `connect` is the attention connection. The residual one is x + a. MATH.md §4's momentum
// connections replace it: they carry a velocity from layer to layer (and the adaptive one
// the previous layer's attention output), which is why forward takes a LayerCarry. The
// residual connection never touches the carry, so the plain path does no extra work.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "nn/attention.h"
#include "nn/feed_forward.h"
#include "nn/module.h"
#include "nn/norm.h"

namespace polyak {

// What flows between layers besides x. Undefined tensors mean "none yet" (v_0 = 0).
struct LayerCarry {
  Tensor velocity;   // v_ℓ of MATH.md §4, [B, N, d]
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

// "residual".
const std::vector<std::string>& connection_kinds();
std::shared_ptr<Connection> make_connection(const std::string& kind);

struct TransformerLayerConfig {
  AttentionConfig attention;        // its d_model is the layer's width
  int64_t ff_dim = 0;               // 0: 4 · d_model
  std::string activation = "gelu";  // one of activation_kinds()
  double dropout = 0.0;             // feed-forward dropout (attention has its own)
  bool pre_norm = false;
  std::string norm = "layernorm";  // one of norm_kinds()
  double norm_eps = 1e-5;
  std::string connection = "residual";  // one of connection_kinds()

  int64_t resolved_ff_dim() const { return ff_dim > 0 ? ff_dim : 4 * attention.d_model; }
  // Throws polyak::Error naming the field (and validates the attention config).
  void validate() const;
};

class TransformerLayer : public Module {
 public:
  TransformerLayer(const TransformerLayerConfig& config, Generator& gen);

  // x [B, N, d] → [B, N, d]; `carry` goes from one layer to the next.
  Tensor forward(const Tensor& x, LayerCarry& carry);
  Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  const TransformerLayerConfig& config() const { return config_; }

  std::shared_ptr<Attention> attention;
  std::shared_ptr<Connection> connection;
  std::shared_ptr<Norm> norm1;
  std::shared_ptr<FeedForward> feed_forward;
  std::shared_ptr<Norm> norm2;

 private:
  TransformerLayerConfig config_;
};

}  // namespace polyak
