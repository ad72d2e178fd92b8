// RAdam: the fused per-parameter update (formulas in radam.h).
#include "polyak/optim/radam.h"

#include <cmath>
#include <utility>

#include "polyak/core/threads.h"

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

void RAdam::update(size_t index, const Tensor& param, const Tensor& grad, int64_t t) {
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
  const double l2 = o.decoupled_weight_decay ? 0.0 : o.weight_decay;
  const double shrink = o.decoupled_weight_decay ? 1 - lr() * o.weight_decay : 1.0;
  if (!param.device().is_cpu()) {  // one fused kernel, the loop's formula in f32
    const auto kernel = device_step(param, &OptimKernels::adam_step);
    const AdamStepArgs args{static_cast<float>(o.beta1),
                            static_cast<float>(o.beta2),
                            static_cast<float>(coef),
                            /*inv_sqrt_bc2=*/1.0f,
                            static_cast<float>(o.eps),
                            static_cast<float>(l2),
                            static_cast<float>(shrink),
                            rectified};
    Tensor p = param;
    kernel(args, p, grad, param_state(index)[0], param_state(index)[1]);
    return;
  }
  const int64_t n = param.numel();
  dispatch(param.dtype(), [&]<class T>() {
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* m = param_state(index)[0].data<T>();
    T* v = param_state(index)[1].data<T>();
    const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2);
    const T c = static_cast<T>(coef);
    const T eps = static_cast<T>(o.eps);
    const T l2_t = static_cast<T>(l2), shrink_t = static_cast<T>(shrink);
    parallel_for(n, 10, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const T gi = g[i] + l2_t * p[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        const T step = rectified ? c * m[i] / (std::sqrt(v[i]) + eps) : c * m[i];
        p[i] = shrink_t * p[i] - step;
      }
    });
  });
}

}  // namespace polyak
