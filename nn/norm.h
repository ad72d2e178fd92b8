// Normalisation over the last axis: LayerNorm and RMSNorm behind one interface.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "polyak/nn/module.h"

namespace polyak {

class Norm : public Module {
 public:
  // x [..., dim] → same shape.
  virtual Tensor forward(const Tensor& x) const = 0;
  Tensor operator()(const Tensor& x) const { return forward(x); }
};

// (x − mean) / sqrt(var + eps) · γ + β. Parameters are named "weight" (γ, ones) and
// "bias" (β, zeros), as in PyTorch, so checkpoints map one to one.
class LayerNorm : public Norm {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5);
  Tensor forward(const Tensor& x) const override;

  Tensor weight;  // γ [dim]
  Tensor bias;    // β [dim]
  double eps;
};

// x / sqrt(mean(x²) + eps) · γ, with γ named "weight" (ones).
class RMSNorm : public Norm {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-8);
  Tensor forward(const Tensor& x) const override;

  Tensor weight;  // γ [dim]
  double eps;
};

// "layernorm" | "rmsnorm"; another kind is a polyak::Error listing these.
const std::vector<std::string>& norm_kinds();
std::shared_ptr<Norm> make_norm(const std::string& kind, int64_t dim, double eps);

}  // namespace polyak
