// Decayed ("retention") causal linear attention (docs/math.md §3.1), with one decay for every
// head or one per head, and its recurrent step.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
// q, k [B,H,N,D], v [B,H,N,Dv] → y [B,H,N,Dv]. Per (b, h) with decay λ (λ_h per head),
// from zero states:
//
//   s_i = λ s_{i−1} + k_i v_iᵀ         [D,Dv]  never stored per position
//   z_i = λ z_{i−1} + k_i              [D]
//   o_i = s_iᵀ q_i = Σ_{j≤i} λ^{i−j} (q_i·k_j) v_j        decayed_causal_dot_product
//   y_i = o_i / (q_i·z_i + ε)                             decayed_causal_linear_attention
//
// Backward, with do_i = dy_i / den_i and dden_i = −(dy_i·y_i)/den_i (no normaliser:
// do_i = dy_i, dden_i = 0):
//   dq_i = s_i do_i + dden_i z_i                                        [B,H,N,D]
//   dk_j = R_j v_j + r_j,  dv_j = R_jᵀ k_j                               [B,H,N,D], [B,H,N,Dv]
//   R_j = λ R_{j+1} + q_j do_jᵀ  [D,Dv],   r_j = λ r_{j+1} + dden_j q_j  [D]
// All are the causal sweep with per-head decay (causal_sweep_isa.cpp: two passes, the
// decaying state kept pre-scaled within blocks so that each position costs one multiply-add
// per element). Saved for backward: q, k, v, and when normalising y and den [B,H,N].
//
// The recurrent step (per-head decays), s [B,H,D,Dv] updated in place (no graph):
//   s = λ_h s + k vᵀ;  y = sᵀ q
#include <cmath>
#include <utility>
#include <vector>

#include "polyak/ops/attention/attention_checks.h"
#include "polyak/ops/attention/causal_sweep.h"
#include "polyak/ops/attention/decayed_attention.h"

namespace polyak {
namespace {

using detail::AttentionDims;
using detail::CausalSweep;
using detail::SweepDecay;

void check_decay(const char* fn, double decay) {
  POLYAK_CHECK(std::isfinite(decay) && decay >= 0 && decay <= 1, fn, ": decay = ", decay,
               ", expected in [0, 1]");
}

CausalSweep decayed_sweep(std::vector<double> decays, bool normalize, double eps) {
  CausalSweep sweep;
  sweep.decay = SweepDecay::per_head;
  sweep.decays = std::move(decays);
  sweep.normalize = normalize;
  sweep.eps = eps;
  return sweep;
}

}  // namespace

Tensor decayed_causal_dot_product(const Tensor& q, const Tensor& k, const Tensor& v, double decay) {
  constexpr const char* fn = "decayed_causal_dot_product";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/true,
                                                         /*on_device=*/true);
  check_decay(fn, decay);
  return detail::causal_sweep(
      fn, "DecayedCausalDotProductBackward", d, q, k, v,
      decayed_sweep(std::vector<double>(static_cast<size_t>(d.H), decay), false, 0.0));
}

Tensor decayed_causal_dot_product(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const std::vector<double>& decays) {
  constexpr const char* fn = "decayed_causal_dot_product";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/true,
                                                         /*on_device=*/true);
  detail::check_decays(fn, decays, d.H);
  return detail::causal_sweep(fn, "DecayedCausalDotProductBackward", d, q, k, v,
                              decayed_sweep(decays, false, 0.0));
}

Tensor decayed_causal_linear_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                       double decay, double eps) {
  constexpr const char* fn = "decayed_causal_linear_attention";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/true,
                                                         /*on_device=*/true);
  check_decay(fn, decay);
  detail::check_eps(fn, eps);
  return detail::causal_sweep(
      fn, "DecayedCausalLinearAttentionBackward", d, q, k, v,
      decayed_sweep(std::vector<double>(static_cast<size_t>(d.H), decay), true, eps));
}

Tensor decayed_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& s,
                              const std::vector<double>& decays) {
  constexpr const char* fn = "decayed_attention_step";
  const detail::StepDims d = detail::check_step_inputs(fn, q, k, v, /*on_device=*/true);
  detail::check_decays(fn, decays, d.H);
  detail::check_or_init_state(fn, "s", s, {d.B, d.H, d.D, d.Dv}, "[B,H,D,Dv]", q.dtype(),
                              q.device());
  detail::SweepStep step;
  step.a = s;
  step.decays = decays;
  return detail::causal_sweep_step(fn, d, q, k, v, step);
}

}  // namespace polyak
