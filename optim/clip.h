// Gradient clipping by L2 norm (as torch.nn.utils.clip_grad_norm_).
//
// Global:  N = sqrt(Σ_p ‖g_p‖²);  when N > max_norm every g_p ← g_p · max_norm / (N + 1e-6).
// Per parameter: the same rule applied to each g_p with its own norm ‖g_p‖, which is what
// the copy-task reference does (each parameter's gradient norm clipped to 1).
//
// Parameters without a gradient are skipped. A clipped gradient is written as a new tensor
// (set_grad), so a gradient tensor shared with other code is never scaled behind its back.
// When a norm is not finite (inf or NaN) the gradients it covers are left unchanged: the
// returned norm tells the caller, who decides (skip the step, report the layer).
//
// Devices: all the gradients must be on one device. Off the CPU the norms are reduced there
// (in double, in a fixed order: the same bits every run), the scale factor is computed there
// and applied there; the *_tensor forms return the norms as device tensors (f32), so that a
// training step never waits for the host (read a norm only when it is logged). The double
// forms read the norms back (a host sync). On a device every gradient is rewritten, times 1
// where no clipping is needed (whether to clip is known on the device only).
#pragma once

#include <vector>

#include "polyak/core/tensor.h"

namespace polyak {

// Clips the gradients of `params` to a global L2 norm of at most `max_norm` (> 0).
// Returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// Clips each parameter's gradient to an L2 norm of at most `max_norm` (> 0) separately.
// Returns each parameter's norm before clipping (0 where it has no gradient).
std::vector<double> clip_grad_norm_per_parameter(const std::vector<Tensor>& params,
                                                 double max_norm);

// clip_grad_norm, returning the norm before clipping as a tensor [] on the gradients' device
// (f32 on a device, f64 on the CPU) without reading it on the host.
Tensor clip_grad_norm_tensor(const std::vector<Tensor>& params, double max_norm);

// clip_grad_norm_per_parameter, returning the norms as a tensor [P] on the gradients' device
// (f32 on a device, f64 on the CPU; 0 where a parameter has no gradient).
Tensor clip_grad_norm_per_parameter_tensor(const std::vector<Tensor>& params, double max_norm);

// The L2 norm of one tensor's elements (accumulated in double).
double l2_norm(const Tensor& t);

}  // namespace polyak
