// Adam (Kingma & Ba 2015) with L2 weight decay, and AdamW (Loshchilov & Hutter 2019) with
// decoupled weight decay; both as torch.optim.Adam / torch.optim.AdamW (without amsgrad).
//
// Per parameter p with gradient g, update number t, lr α, (β1, β2), ε, weight decay λ:
//   Adam:   g ← g + λ p                      (L2: the decay passes through the moments)
//   AdamW:  p ← p − α λ p                    (decoupled: before the update, not in g)
//   m ← β1 m + (1 − β1) g
//   v ← β2 v + (1 − β2) g²
//   p ← p − α/(1 − β1^t) · m / (sqrt(v) / sqrt(1 − β2^t) + ε)
// State: "exp_avg" (m), "exp_avg_sq" (v).
#pragma once

#include <vector>

#include "polyak/optim/optimizer.h"

namespace polyak {

class Adam : public Optimizer {
 public:
  struct Options {
    double lr = 1e-3;
    double beta1 = 0.9;       // ∈ [0, 1)
    double beta2 = 0.999;     // ∈ [0, 1)
    double eps = 1e-8;        // > 0
    double weight_decay = 0;  // λ ≥ 0, L2 (added to the gradient)
  };

  explicit Adam(std::vector<Tensor> params);
  Adam(std::vector<Tensor> params, const Options& options);
  const Options& options() const { return options_; }

 protected:
  // For AdamW: the same moments with decoupled weight decay.
  Adam(const char* name, std::vector<Tensor> params, const Options& options, bool decoupled);
  void update(size_t index, const Tensor& param, const Tensor& grad, int64_t t) override;
  void update_on_device(const std::vector<Update>& updates) override;

 private:
  AdamScalars scalars(int64_t t) const;  // of update t

  Options options_;
  bool decoupled_;
};

class AdamW final : public Adam {
 public:
  struct Options {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 1e-2;  // λ ≥ 0, decoupled: p ← p − α λ p
  };

  explicit AdamW(std::vector<Tensor> params);
  AdamW(std::vector<Tensor> params, const Options& options);
};

}  // namespace polyak
