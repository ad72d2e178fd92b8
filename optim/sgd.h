// SGD with momentum, dampening, Nesterov momentum and L2 weight decay (as torch.optim.SGD).
//
// Per parameter p with gradient g, lr α, momentum μ, dampening τ, weight decay λ:
//   g ← g + λ p                                  (when λ ≠ 0)
//   b ← g                         on the parameter's first update (when μ ≠ 0)
//   b ← μ b + (1 − τ) g           afterwards
//   d ← g + μ b  (nesterov)   or   d ← b   (μ ≠ 0)   or   d ← g   (μ = 0)
//   p ← p − α d
// State: "momentum_buffer" (b) when μ ≠ 0. Polyak (1964), Sutskever et al. (2013).
#pragma once

#include <vector>

#include "polyak/optim/optimizer.h"

namespace polyak {

class SGD final : public Optimizer {
 public:
  struct Options {
    double lr = 1e-3;
    double momentum = 0;      // μ ≥ 0
    double dampening = 0;     // τ ∈ [0, 1]
    double weight_decay = 0;  // λ ≥ 0, added to the gradient (L2)
    bool nesterov = false;    // needs μ > 0 and τ = 0
  };

  explicit SGD(std::vector<Tensor> params);
  SGD(std::vector<Tensor> params, const Options& options);
  const Options& options() const { return options_; }

 protected:
  void update(size_t index, const Tensor& param, const Tensor& grad, int64_t t) override;
  void update_on_device(const std::vector<Update>& updates) override;

 private:
  Options options_;
};

}  // namespace polyak
