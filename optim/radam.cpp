// RAdam: the fused per-parameter update (formulas in radam.h).
#include "polyak/optim/radam.h"

#include <cmath>
#include <utility>

namespace polyak {

RAdam::RAdam(std::vector<Tensor> params) : RAdam(std::move(params), Options{}) {}

RAdam::RAdam(std::vector<Tensor> params, const Options& options)
    : Optimizer("RAdam", std::move(params), options.lr, {"exp_avg", "exp_avg_sq"}),
      options_(options) {
  check_moment_options(options.beta1, options.beta2, options.eps, options.weight_decay);
}

double RAdam::rho(int64_t t) const {
  const double b2 = options_.beta2;
  const double b2t = std::pow(b2, static_cast<double>(t));
  const double rho_inf = 2 / (1 - b2) - 1;
  return rho_inf - 2 * static_cast<double>(t) * b2t / (1 - b2t);
}

Optimizer::AdamScalars RAdam::scalars(int64_t t) const {
  const Options& o = options_;
  const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(t));
  const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(t));
  const double rho_inf = 2 / (1 - o.beta2) - 1;
  const double rho_t = rho(t);
  const bool rectified = rho_t > 5;
  // The update is p ← shrink·p − coef·m / (sqrt(v) + ε)  (rectified)  or  shrink·p − coef·m.
  double coef = lr() / bc1;
  if (rectified) {
    const double r =
        std::sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t));
    coef *= r * std::sqrt(bc2);
  }
  return {.step_size = coef,
          .inv_sqrt_bc2 = 1,
          .l2 = o.decoupled_weight_decay ? 0.0 : o.weight_decay,
          .shrink = o.decoupled_weight_decay ? 1 - lr() * o.weight_decay : 1.0,
          .rectified = rectified};
}

void RAdam::update(size_t index, const Tensor& param, const Tensor& grad, int64_t t) {
  adam_update_on_cpu(index, param, grad, options_.beta1, options_.beta2, options_.eps, scalars(t));
}

void RAdam::update_on_device(const std::vector<Update>& updates) {
  adam_update_on_device(updates, options_.beta1, options_.beta2, options_.eps,
                        [this](int64_t t) { return scalars(t); });
}

}  // namespace polyak
