// Optimizer base: parameter validation, state allocation, the step loop (see optimizer.h).
#include "polyak/optim/optimizer.h"

#include <cmath>
#include <string>
#include <utility>

#include "polyak/core/autograd.h"
#include "polyak/core/error.h"
#include "polyak/core/threads.h"

namespace polyak {

Optimizer::Optimizer(std::string name, std::vector<Tensor> params, double lr,
                     std::vector<std::string> state_names)
    : name_(std::move(name)),
      params_(std::move(params)),
      state_names_(std::move(state_names)),
      lr_(lr) {
  check_option(std::isfinite(lr) && lr >= 0, "lr", lr, "a finite value >= 0");
  POLYAK_CHECK(!params_.empty(), name_,
               ": parameters is empty, expected at least one parameter tensor");
  // "parameter 3 (layers.0.attention.qkv.weight)", or "parameter 3" for an unnamed tensor.
  auto label = [](size_t i, const Tensor& t) {
    std::string s = "parameter " + std::to_string(i);
    return t.name().empty() ? s : s + " (" + t.name() + ")";
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    POLYAK_CHECK(p.defined(), name_, ": parameter ", i, " is undefined, expected a tensor");
    POLYAK_CHECK(p.is_leaf(), name_, ": ", label(i, p), " of shape ", p.shape(),
                 " is not a leaf (it has grad_fn ", p.grad_fn() ? p.grad_fn()->name() : "",
                 "), expected a leaf tensor such as a module parameter");
    for (size_t j = 0; j < i; ++j) {
      POLYAK_CHECK(!params_[j].is_same(p), name_, ": ", label(i, p),
                   " is the same tensor as parameter ", j,
                   ", expected each parameter once (it would be updated twice)");
    }
    POLYAK_CHECK(p.device() == params_[0].device(), name_, ": ", label(i, p), " is on ", p.device(),
                 " but ", label(0, params_[0]), " is on ", params_[0].device(),
                 ", expected every parameter on one device");
  }
  state_.resize(params_.size());
  param_steps_.assign(params_.size(), 0);
  for (size_t i = 0; i < params_.size(); ++i) {
    for (size_t k = 0; k < state_names_.size(); ++k) {
      const Tensor& p = params_[i];
      state_[i].push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    }
  }
}

void Optimizer::check_option(bool ok, const char* option, double value,
                             const char* expected) const {
  POLYAK_CHECK(ok, name_, ": ", option, " = ", value, ", expected ", expected);
}

void Optimizer::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
}

void Optimizer::step() {
  NoGradGuard no_grad;
  std::vector<Update> updates;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    POLYAK_CHECK(g.shape() == p.shape(), name_, ".step: the gradient of parameter ", i, " (",
                 p.name(), ") has shape ", g.shape(), ", expected the parameter's shape ",
                 p.shape());
    if (g.dtype() != p.dtype()) g = g.cpu().to(p.dtype());  // dtype conversions run on the CPU
    if (g.device() != p.device()) g = g.to(p.device());
    updates.push_back({i, p, g, param_steps_[i] + 1});
  }
  const Device device = params_[0].device();
  if (device.is_cpu()) {
    for (const Update& u : updates) update(u.index, u.param, u.grad, u.t);
  } else if (!updates.empty()) {
    update_on_device(updates);
  }
  std::vector<size_t> updated;
  for (const Update& u : updates) updated.push_back(u.index);
  auto advance = [this, updated] {
    for (const size_t i : updated) ++param_steps_[i];
    ++step_count_;
  };
  // Captured in a graph, the step runs at each replay: the counts advance then, after the
  // replay's arguments were made from them.
  if (is_capturing(device)) {
    before_replay(device, advance);
  } else {
    advance();
  }
}

void Optimizer::update_on_device(const std::vector<Update>& updates) {
  for (const Update& u : updates) update(u.index, u.param, u.grad, u.t);
}

void Optimizer::adam_update_on_cpu(size_t index, const Tensor& param, const Tensor& grad,
                                   double beta1, double beta2, double eps, const AdamScalars& s) {
  const int64_t n = param.numel();
  dispatch(param.dtype(), [&]<class T>() {
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* m = state_[index][0].data<T>();
    T* v = state_[index][1].data<T>();
    const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2);
    const T step_size = static_cast<T>(s.step_size);
    const T inv_sqrt_bc2 = static_cast<T>(s.inv_sqrt_bc2);
    const T eps_t = static_cast<T>(eps);
    const T l2 = static_cast<T>(s.l2), shrink = static_cast<T>(s.shrink);
    const bool rectified = s.rectified;
    parallel_for(n, 10, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const T gi = g[i] + l2 * p[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        const T step = rectified ? step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps_t)
                                 : step_size * m[i];
        p[i] = shrink * p[i] - step;
      }
    });
  });
}

void Optimizer::adam_update_on_device(const std::vector<Update>& updates, double beta1,
                                      double beta2, double eps,
                                      const std::function<AdamScalars(int64_t)>& scalars) const {
  const auto kernel = device_step(updates[0].param, &OptimKernels::adam_steps);
  std::vector<AdamStepArgs> args;
  std::vector<Tensor> params, grads, exp_avg, exp_avg_sq;
  const std::function<AdamStepArgs(int64_t)> make = [=](int64_t t) {
    const AdamScalars s = scalars(t);
    return AdamStepArgs{static_cast<float>(beta1),       static_cast<float>(beta2),
                        static_cast<float>(s.step_size), static_cast<float>(s.inv_sqrt_bc2),
                        static_cast<float>(eps),         static_cast<float>(s.l2),
                        static_cast<float>(s.shrink),    s.rectified};
  };
  for (size_t k = 0; k < updates.size(); ++k) {
    (void)device_step(updates[k].param, &OptimKernels::adam_steps);  // f32, like the first
    args.push_back(make(updates[k].t));
    args.back().from = replay_args(updates[k], make);
    params.push_back(updates[k].param);
    grads.push_back(updates[k].grad);
    exp_avg.push_back(state_[updates[k].index][0]);
    exp_avg_sq.push_back(state_[updates[k].index][1]);
  }
  kernel(static_cast<int64_t>(updates.size()), args.data(), params.data(), grads.data(),
         exp_avg.data(), exp_avg_sq.data());
}

void Optimizer::set_lr(double lr) {
  check_option(std::isfinite(lr) && lr >= 0, "lr", lr, "a finite value >= 0");
  lr_ = lr;
}

void Optimizer::set_step_count(int64_t steps) {
  POLYAK_CHECK(steps >= 0, name_, ".set_step_count: steps = ", steps, ", expected >= 0");
  step_count_ = steps;
}

void Optimizer::check_index(const char* fn, size_t index) const {
  POLYAK_CHECK(index < params_.size(), name_, ".", fn, ": parameter index ", index,
               " out of range, expected < ", params_.size());
}

int64_t Optimizer::parameter_step(size_t index) const {
  check_index("parameter_step", index);
  return param_steps_[index];
}

void Optimizer::set_parameter_step(size_t index, int64_t steps) {
  check_index("set_parameter_step", index);
  POLYAK_CHECK(steps >= 0, name_, ".set_parameter_step: steps = ", steps, ", expected >= 0");
  param_steps_[index] = steps;
}

Tensor Optimizer::state(size_t index, std::string_view name) const {
  for (size_t k = 0; k < state_names_.size(); ++k) {
    if (state_names_[k] == name) return state(index, k);
  }
  std::string known;
  for (const std::string& s : state_names_) known += (known.empty() ? "" : ", ") + s;
  fail(name_, ".state: no state named '", name, "', expected one of {", known, "}");
}

Tensor Optimizer::state(size_t index, size_t slot) const {
  check_index("state", index);
  POLYAK_CHECK(slot < state_names_.size(), name_, ".state: slot ", slot,
               " out of range, expected < ", state_names_.size());
  return state_[index][slot];
}

void Optimizer::check_moment_options(double beta1, double beta2, double eps,
                                     double weight_decay) const {
  check_option(beta1 >= 0 && beta1 < 1, "beta1", beta1, "a value in [0, 1)");
  check_option(beta2 >= 0 && beta2 < 1, "beta2", beta2, "a value in [0, 1)");
  check_option(std::isfinite(eps) && eps > 0, "eps", eps, "a finite value > 0");
  check_option(std::isfinite(weight_decay) && weight_decay >= 0, "weight_decay", weight_decay,
               "a finite value >= 0");
}

}  // namespace polyak
