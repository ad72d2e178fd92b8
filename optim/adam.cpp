// Adam and AdamW: the fused per-parameter update (formulas in adam.h).
#include "polyak/optim/adam.h"

#include <cmath>
#include <utility>

namespace polyak {

Adam::Adam(std::vector<Tensor> params) : Adam(std::move(params), Options{}) {}

Adam::Adam(std::vector<Tensor> params, const Options& options)
    : Adam("Adam", std::move(params), options, /*decoupled=*/false) {}

Adam::Adam(const char* name, std::vector<Tensor> params, const Options& options, bool decoupled)
    : Optimizer(name, std::move(params), options.lr, {"exp_avg", "exp_avg_sq"}),
      options_(options),
      decoupled_(decoupled) {
  check_moment_options(options.beta1, options.beta2, options.eps, options.weight_decay);
}

AdamW::AdamW(std::vector<Tensor> params) : AdamW(std::move(params), Options{}) {}

AdamW::AdamW(std::vector<Tensor> params, const Options& options)
    : Adam("AdamW", std::move(params),
           Adam::Options{.lr = options.lr,
                         .beta1 = options.beta1,
                         .beta2 = options.beta2,
                         .eps = options.eps,
                         .weight_decay = options.weight_decay},
           /*decoupled=*/true) {}

Optimizer::AdamScalars Adam::scalars(int64_t t) const {
  const Options& o = options_;
  const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(t));
  const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(t));
  return {.step_size = lr() / bc1,
          .inv_sqrt_bc2 = 1 / std::sqrt(bc2),
          .l2 = decoupled_ ? 0.0 : o.weight_decay,
          .shrink = decoupled_ ? 1 - lr() * o.weight_decay : 1.0,
          .rectified = true};
}

void Adam::update(size_t index, const Tensor& param, const Tensor& grad, int64_t t) {
  adam_update_on_cpu(index, param, grad, options_.beta1, options_.beta2, options_.eps, scalars(t));
}

void Adam::update_on_device(const std::vector<Update>& updates) {
  adam_update_on_device(updates, options_.beta1, options_.beta2, options_.eps,
                        [this](int64_t t) { return scalars(t); });
}

}  // namespace polyak
