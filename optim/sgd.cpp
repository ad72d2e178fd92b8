// SGD: the fused per-parameter update (formulas in sgd.h).
#include "polyak/optim/sgd.h"

#include <cmath>
#include <utility>

#include "polyak/core/threads.h"

namespace polyak {

namespace {
std::vector<std::string> sgd_state_names(const SGD::Options& o) {
  if (o.momentum != 0) return {"momentum_buffer"};
  return {};
}
}  // namespace

SGD::SGD(std::vector<Tensor> params) : SGD(std::move(params), Options{}) {}

SGD::SGD(std::vector<Tensor> params, const Options& options)
    : Optimizer("SGD", std::move(params), options.lr, sgd_state_names(options)), options_(options) {
  check_option(std::isfinite(options.momentum) && options.momentum >= 0, "momentum",
               options.momentum, "a finite value >= 0");
  check_option(options.dampening >= 0 && options.dampening <= 1, "dampening", options.dampening,
               "a value in [0, 1]");
  check_option(std::isfinite(options.weight_decay) && options.weight_decay >= 0, "weight_decay",
               options.weight_decay, "a finite value >= 0");
  if (options.nesterov) {
    check_option(options.momentum > 0, "momentum", options.momentum,
                 "a value > 0 with nesterov = true");
    check_option(options.dampening == 0, "dampening", options.dampening, "0 with nesterov = true");
  }
}

void SGD::update(size_t index, const Tensor& param, const Tensor& grad, int64_t t) {
  const Options& o = options_;
  const int64_t n = param.numel();
  dispatch(param.dtype(), [&]<class T>() {
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* b = o.momentum != 0 ? param_state(index)[0].data<T>() : nullptr;
    const T rate = static_cast<T>(lr());
    const T mu = static_cast<T>(o.momentum);
    const T keep = static_cast<T>(1 - o.dampening);
    const T wd = static_cast<T>(o.weight_decay);
    const bool first = t == 1;
    parallel_for(n, 6, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        T d = g[i];
        if (wd != T(0)) d += wd * p[i];
        if (b) {
          b[i] = first ? d : mu * b[i] + keep * d;
          d = o.nesterov ? d + mu * b[i] : b[i];
        }
        p[i] -= rate * d;
      }
    });
  });
}

void SGD::update_on_device(const std::vector<Update>& updates) {
  const Options& o = options_;
  const auto kernel = device_step(updates[0].param, &OptimKernels::sgd_steps);
  std::vector<SgdStepArgs> args;
  std::vector<Tensor> params, grads, buffers;
  const std::function<SgdStepArgs(int64_t)> make = [this](int64_t t) {
    return SgdStepArgs{static_cast<float>(lr()),
                       static_cast<float>(options_.momentum),
                       static_cast<float>(1 - options_.dampening),
                       static_cast<float>(options_.weight_decay),
                       /*first=*/t == 1,
                       options_.nesterov};
  };
  for (const Update& u : updates) {
    (void)device_step(u.param, &OptimKernels::sgd_steps);  // f32, like the first
    args.push_back(make(u.t));
    args.back().from = replay_args(u, make);
    params.push_back(u.param);
    grads.push_back(u.grad);
    buffers.push_back(o.momentum != 0 ? param_state(u.index)[0] : Tensor());
  }
  kernel(static_cast<int64_t>(updates.size()), args.data(), params.data(), grads.data(),
         buffers.data());
}

}  // namespace polyak
