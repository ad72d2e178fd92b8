// The optim kernel group of a device backend (core/backend.h, DeviceBackend::optim): the fused
// RAdam / Adam / AdamW / SGD updates and gradient clipping, with no host synchronisation (step
// counts and bias corrections are host scalars, passed in; clipping's norms and scale factors
// stay on the device). Entries left null are not provided; ops reach them through
// device_kernel(), which names the op and the device then. Every entry checks nothing that its
// op has checked: the op validates shapes, dtypes and devices on the host before it calls the
// kernel, allocates the outputs on the device and passes them in.
#pragma once

#include <cstdint>

#include "polyak/core/backend.h"

namespace polyak {

// The Adam family's update of one element, in this order (optim/adam.cpp, optim/radam.cpp):
//   g ← g + l2·p;  m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²
//   p ← shrink·p − step_size·m / (sqrt(v)·inv_sqrt_bc2 + eps)   (rectified)
//   p ← shrink·p − step_size·m                                  (not: RAdam's early steps)
// Adam and AdamW are always rectified; RAdam passes inv_sqrt_bc2 = 1. Inside a graph
// (core/graph.h) the update reads its arguments from device memory at `from` instead, which
// each replay refreshes with that step's values.
struct AdamStepArgs {
  float beta1, beta2, step_size, inv_sqrt_bc2, eps, l2, shrink;
  bool rectified;
  const AdamStepArgs* from = nullptr;
};

// SGD's update of one element (optim/sgd.cpp):
//   d ← g + wd·p;  b ← d (first) or μ b + keep·d;  d ← d + μ b (nesterov) or b;  p ← p − lr·d
// without a momentum buffer: p ← p − lr·d.
// As AdamStepArgs, `from` is the device copy a graph's replay reads.
struct SgdStepArgs {
  float lr, momentum, keep, weight_decay;
  bool first, nesterov;
  const SgdStepArgs* from = nullptr;
};

struct OptimKernels {
  // Updates `count` parameters in place, parameter k from grads[k] with args[k] (its own t):
  // params[k], exp_avg[k], exp_avg_sq[k] and grads[k] of one shape. Multi-tensor: one launch
  // for many parameters (cuda/kernels/optim.h: kTensorsPerLaunch).
  void (*adam_steps)(int64_t count, const AdamStepArgs* args, const Tensor* params,
                     const Tensor* grads, const Tensor* exp_avg,
                     const Tensor* exp_avg_sq) = nullptr;
  // The same for SGD; momentum_buffers[k] is undefined without momentum.
  void (*sgd_steps)(int64_t count, const SgdStepArgs* args, const Tensor* params,
                    const Tensor* grads, const Tensor* momentum_buffers) = nullptr;
  // sums_sq[slots[k]] = Σ xs[k]² for k < count (sums_sq f64 [P]), each accumulated in double
  // in a fixed order (the same bits every run); overwrites those elements only.
  void (*sum_squares)(int64_t count, const Tensor* xs, const int64_t* slots,
                      Tensor& sums_sq) = nullptr;
  // From sums_sq (f64 [P]): the norms and the scale factors of clip_grad_norm, f32.
  //   global:  norms [1] = sqrt(Σ_p ‖g_p‖²), scales [1]
  //   else:    norms [P] = ‖g_p‖, scales [P]
  // scale = max_norm / (norm + 1e-6) when the norm is finite and > max_norm, else 1.
  void (*clip_coefficients)(const Tensor& sums_sq, double max_norm, bool global, Tensor& norms,
                            Tensor& scales) = nullptr;
  // outs[k] = xs[k] · scales[slots[k]] for k < count (outs[k] of xs[k]'s shape, not aliasing it).
  void (*scale)(int64_t count, const Tensor* xs, const Tensor& scales, const int64_t* slots,
                const Tensor* outs) = nullptr;
};

}  // namespace polyak
