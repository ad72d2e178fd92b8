// Adam and AdamW: the fused per-parameter update (formulas in adam.h).
#include "polyak/optim/adam.h"

#include <cmath>
#include <utility>

#include "polyak/core/threads.h"

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

void Adam::update(size_t index, const Tensor& param, const Tensor& grad, int64_t t) {
  const Options& o = options_;
  const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(t));
  const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(t));
  const double l2 = decoupled_ ? 0.0 : o.weight_decay;
  const double shrink = decoupled_ ? 1 - lr() * o.weight_decay : 1.0;
  if (!param.device().is_cpu()) {  // one fused kernel, the loop's formula in f32
    const auto kernel = device_step(param, &OptimKernels::adam_step);
    const AdamStepArgs args{static_cast<float>(o.beta1),
                            static_cast<float>(o.beta2),
                            static_cast<float>(lr() / bc1),
                            static_cast<float>(1 / std::sqrt(bc2)),
                            static_cast<float>(o.eps),
                            static_cast<float>(l2),
                            static_cast<float>(shrink),
                            /*rectified=*/true};
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
    const T step_size = static_cast<T>(lr() / bc1);
    const T inv_sqrt_bc2 = static_cast<T>(1 / std::sqrt(bc2));
    const T eps = static_cast<T>(o.eps);
    const T l2_t = static_cast<T>(l2), shrink_t = static_cast<T>(shrink);
    parallel_for(n, 10, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const T gi = g[i] + l2_t * p[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        p[i] = shrink_t * p[i] - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
      }
    });
  });
}

}  // namespace polyak
