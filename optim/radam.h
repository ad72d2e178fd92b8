// RAdam (Liu et al. 2019, "On the Variance of the Adaptive Learning Rate and Beyond",
// Algorithm 2), with decoupled weight decay: the rule of torch.optim.RAdam with
// decoupled_weight_decay=True, and the optimizer the momentum-transformer paper trains with.
//
// Per parameter p with gradient g, update number t, lr α, (β1, β2), ε, weight decay λ:
//   p ← p − α λ p                               (decoupled weight decay, before the update;
//                                                 L2 instead, g ← g + λ p, when
//                                                 decoupled_weight_decay = false)
//   m ← β1 m + (1 − β1) g ;   v ← β2 v + (1 − β2) g² ;   m̂ = m / (1 − β1^t)
//   ρ∞ = 2/(1 − β2) − 1 ;     ρ_t = ρ∞ − 2 t β2^t / (1 − β2^t)
//   if ρ_t > 5:  r = sqrt( (ρ_t − 4)(ρ_t − 2) ρ∞ / ((ρ∞ − 4)(ρ∞ − 2) ρ_t) )
//                p ← p − α r m̂ · sqrt(1 − β2^t) / (sqrt(v) + ε)
//   else:        p ← p − α m̂                   (variance not yet tractable: SGD with momentum)
// With β2 = 0.999, ρ_t ≤ 5 for t ≤ 5 and ρ_t > 5 from t = 6 on.
// State: "exp_avg" (m), "exp_avg_sq" (v). See docs/math.md §9.
#pragma once

#include <vector>

#include "polyak/optim/optimizer.h"

namespace polyak {

class RAdam final : public Optimizer {
 public:
  struct Options {
    double lr = 1e-3;
    double beta1 = 0.9;                  // ∈ [0, 1)
    double beta2 = 0.999;                // ∈ [0, 1)
    double eps = 1e-8;                   // > 0
    double weight_decay = 0;             // λ ≥ 0
    bool decoupled_weight_decay = true;  // p ← p − α λ p; false: L2 (g ← g + λ p)
  };

  explicit RAdam(std::vector<Tensor> params);
  RAdam(std::vector<Tensor> params, const Options& options);
  const Options& options() const { return options_; }

  // ρ_t of update t (the rectification is applied when it exceeds 5).
  double rho(int64_t t) const;

 protected:
  void update(size_t index, const Tensor& param, const Tensor& grad, int64_t t) override;
  void update_on_device(const std::vector<Update>& updates) override;

 private:
  AdamScalars scalars(int64_t t) const;  // of update t

  Options options_;
};

}  // namespace polyak
