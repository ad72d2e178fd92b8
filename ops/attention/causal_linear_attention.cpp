// Causal linear attention and the causal dot product (docs/math.md §2; Katharopoulos et al.
// 2020, eq. 7–8), and causal linear attention's recurrent step.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
// q, k [B,H,N,D], v [B,H,N,Dv] → y [B,H,N,Dv]. Per (b, h), with s_0 = 0, z_0 = 0:
//
//   s_i = s_{i−1} + k_i v_iᵀ          [D,Dv]  running state, never stored per position
//   z_i = z_{i−1} + k_i               [D]
//   o_i = s_iᵀ q_i                    [Dv]    causal_dot_product returns o
//   den_i = q_iᵀ z_i + ε              []      saved: O(N)
//   y_i = o_i / den_i                 [Dv]    causal_linear_attention returns y
//
// Backward, with do_i = dy_i / den_i and dden_i = −(dy_i · y_i) / den_i (for
// causal_dot_product do_i = dy_i, dden_i = 0):
//   dq_i = s_i do_i + dden_i z_i                                       [B,H,N,D]
//   dk_j = R_j v_j + r_j,  dv_j = R_jᵀ k_j                              [B,H,N,D], [B,H,N,Dv]
//   R_j = Σ_{i≥j} q_i do_iᵀ [D,Dv],  r_j = Σ_{i≥j} dden_i q_i [D]
// Both are the causal sweep without decay (causal_sweep_isa.cpp: its two passes, each holding
// one D×Dv matrix; "no decay" is a compile-time form, nothing is rescaled).
// Saved for backward: q, k, v, and for causal_linear_attention y and den [B,H,N].
//
// The recurrent step, s [B,H,D,Dv], z [B,H,D] updated in place (no graph):
//   s += k vᵀ;  z += k;  y = sᵀ q / (q·z + ε)
// After i steps from zero states it equals row i of causal_linear_attention.
#include <vector>

#include "polyak/ops/attention/attention_checks.h"
#include "polyak/ops/attention/causal_sweep.h"
#include "polyak/ops/attention/linear_attention.h"

namespace polyak {

using detail::AttentionDims;
using detail::CausalSweep;

Tensor causal_linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, double eps) {
  constexpr const char* fn = "causal_linear_attention";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/true,
                                                         /*on_device=*/true);
  detail::check_eps(fn, eps);
  CausalSweep sweep;
  sweep.eps = eps;
  return detail::causal_sweep(fn, "CausalLinearAttentionBackward", d, q, k, v, sweep);
}

Tensor causal_dot_product(const Tensor& q, const Tensor& k, const Tensor& v) {
  constexpr const char* fn = "causal_dot_product";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/true,
                                                         /*on_device=*/true);
  CausalSweep sweep;
  sweep.normalize = false;
  return detail::causal_sweep(fn, "CausalDotProductBackward", d, q, k, v, sweep);
}

Tensor linear_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& s,
                             Tensor& z, double eps) {
  constexpr const char* fn = "linear_attention_step";
  const detail::StepDims d = detail::check_step_inputs(fn, q, k, v, /*on_device=*/true);
  detail::check_eps(fn, eps);
  const DType dtype = q.dtype();
  detail::check_or_init_state(fn, "s", s, {d.B, d.H, d.D, d.Dv}, "[B,H,D,Dv]", dtype, q.device());
  detail::check_or_init_state(fn, "z", z, {d.B, d.H, d.D}, "[B,H,D]", dtype, q.device());
  detail::SweepStep step;
  step.a = s;
  step.z = z;
  step.eps = eps;
  return detail::causal_sweep_step(fn, d, q, k, v, step);
}

}  // namespace polyak
