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

// The L2 norm of one tensor's elements (accumulated in double).
double l2_norm(const Tensor& t);

}  // namespace polyak
