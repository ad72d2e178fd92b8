// Optimizer: the base of every first-order optimizer (SGD, Adam, AdamW, RAdam).
//
// An optimizer holds handles to its parameters (leaf tensors) and, per parameter, a few
// state tensors of the parameter's shape and dtype (moments, momentum buffers). `step()`
// updates, in place and outside autograd, every parameter that has a gradient; parameters
// without one are skipped and keep their state and their step count untouched, as in
// PyTorch.
//
// Step counters: `step_count()` counts calls to step(); each parameter also counts the
// updates it received (`parameter_step(i)`), and that count is the t of the bias
// corrections. They agree unless a parameter misses gradients on some steps.
//
// Checkpoints: `state_names()` lists the per-parameter state tensors of this optimizer
// ("exp_avg", "exp_avg_sq", "momentum_buffer"); `state(i, name)` returns the tensor itself
// (the parameter's shape, dtype and device), so a checkpoint reads it, or restores it with
// copy_(), together with set_step_count() and set_parameter_step().
//
// Devices: every parameter is on one device, and its state lives there too. On the CPU an
// update is one fused loop; on another device it is one fused kernel for many parameters (the
// backend's optim group, core/kernels_optim.h), the same formula in the same order, with the
// step counts and bias corrections computed on the host and passed in as scalars: a step
// never reads device memory on the host.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "polyak/core/graph.h"
#include "polyak/core/kernels_optim.h"
#include "polyak/core/tensor.h"

namespace polyak {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // The class name, used in error messages ("RAdam").
  const std::string& name() const { return name_; }

  // Drops every parameter's gradient (the next backward starts from nothing).
  void zero_grad();
  // Updates every parameter that has a gradient, then counts the step.
  void step();

  double lr() const { return lr_; }
  void set_lr(double lr);

  // Number of step() calls so far.
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t steps);

  const std::vector<Tensor>& parameters() const { return params_; }
  size_t num_parameters() const { return params_.size(); }
  // Updates applied to parameter `index` so far (t of the bias corrections).
  int64_t parameter_step(size_t index) const;
  void set_parameter_step(size_t index, int64_t steps);

  // Names of the per-parameter state tensors, in slot order (may be empty).
  const std::vector<std::string>& state_names() const { return state_names_; }
  // State tensor `name` of parameter `index` (an alias: modify it in place to restore).
  Tensor state(size_t index, std::string_view name) const;
  Tensor state(size_t index, size_t slot) const;

 protected:
  // Validates `params` (defined, leaves, no duplicates) and `lr`; allocates one zero state
  // tensor per name in `state_names` for each parameter.
  Optimizer(std::string name, std::vector<Tensor> params, double lr,
            std::vector<std::string> state_names);

  // Updates parameter `index` on the CPU in place. `param` (the parameter itself) and `grad`
  // share one dtype, shape and device, as does the parameter's state; `t` ≥ 1 is this
  // parameter's step count including this update. Runs under no-grad.
  virtual void update(size_t index, const Tensor& param, const Tensor& grad, int64_t t) = 0;

  // One parameter's update in a step, as update() takes it.
  struct Update {
    size_t index;
    Tensor param, grad;
    int64_t t;
  };
  // Updates the parameters of one step on their device (not the CPU), in place, under
  // no-grad: the fused optimizers launch one kernel for many parameters. By default, one
  // update() each.
  virtual void update_on_device(const std::vector<Update>& updates);

  // The fused update `entry` of `param`'s device (not the CPU), for "Name.step": throws naming
  // the optimizer and the device when the device lacks it or param is not in its kernels' dtype.
  template <class Fn>
  Fn device_step(const Tensor& param, Fn OptimKernels::*entry) const {
    const std::string fn = name_ + ".step";
    return device_kernel(fn.c_str(), "param", param, &DeviceBackend::optim, entry);
  }

  // Inside a graph's capture on u.param's device (core/graph.h): the device copy of update u's
  // kernel arguments, which each replay refreshes with make(t) for the step t it runs (the
  // learning rate is read then too); null outside a capture.
  template <class Args>
  const Args* replay_args(const Update& u, std::function<Args(int64_t)> make) const {
    const Device device = u.param.device();
    if (!is_capturing(device)) return nullptr;
    return static_cast<const Args*>(replay_value(
        device, sizeof(Args), [this, index = u.index, make = std::move(make)](void* host) {
          const Args args = make(param_steps_[index] + 1);
          std::memcpy(host, &args, sizeof args);
        }));
  }

  // The Adam family's scalars of one update (AdamStepArgs in core/kernels_optim.h), in double:
  //   p ← shrink·p − step_size·m / (sqrt(v)·inv_sqrt_bc2 + ε)   or, not rectified,
  //   p ← shrink·p − step_size·m;   g ← g + l2·p before the moments.
  struct AdamScalars {
    double step_size, inv_sqrt_bc2, l2, shrink;
    bool rectified;
  };
  // The Adam family's update loop on the CPU (exp_avg and exp_avg_sq in slots 0 and 1).
  void adam_update_on_cpu(size_t index, const Tensor& param, const Tensor& grad, double beta1,
                          double beta2, double eps, const AdamScalars& s);
  // The same as one fused launch for many parameters on their device; `scalars(t)` gives
  // those of update t.
  void adam_update_on_device(const std::vector<Update>& updates, double beta1, double beta2,
                             double eps, const std::function<AdamScalars(int64_t)>& scalars) const;

  // Throw "Name: option = value, expected ..." unless the check holds.
  void check_option(bool ok, const char* option, double value, const char* expected) const;
  // The options of the Adam family: β1, β2 ∈ [0, 1), eps finite > 0, weight decay finite ≥ 0.
  void check_moment_options(double beta1, double beta2, double eps, double weight_decay) const;

  std::vector<Tensor>& param_state(size_t index) { return state_[index]; }

 private:
  void check_index(const char* fn, size_t index) const;

  std::string name_;
  std::vector<Tensor> params_;
  std::vector<std::vector<Tensor>> state_;  // [parameter][slot]
  std::vector<int64_t> param_steps_;
  std::vector<std::string> state_names_;
  double lr_;
  int64_t step_count_ = 0;
};

}  // namespace polyak
