// The causal sweep behind causal linear attention, the causal dot product, decayed
// ("retention") attention and causal momentum attention, and its recurrent step (internal to
// ops/attention). docs/math.md §2–3; the formulas are in causal_sweep_isa.cpp.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
#pragma once

#include <vector>

#include "polyak/core/cpu.h"
#include "polyak/core/kernels_attention.h"
#include "polyak/core/tensor.h"
#include "polyak/ops/attention/attention_checks.h"

namespace polyak::detail {

// How the state decays from one position to the next.
enum class SweepDecay {
  none,      // λ = 1, known at compile time: nothing is rescaled
  per_head,  // λ_h ∈ [0, 1] for head h (the same for every head: one scalar decay)
  per_key,   // λ = 1, key j's term weighted by ω_j (momentum's reference weighting)
};

// What one causal sweep computes, per (b, h) (causal_sweep_isa.cpp):
//   A_i = λ A_{i−1} + ω_i k_i v_iᵀ                       the state         [D,Dv]
//   X_i = A_i, or with `momentum` B_i = B_{i−1} + γ A_i  the state read    [D,Dv]
//   y_i = X_iᵀ q_i / (q_i·z_i + ε)  with `normalize`, else X_iᵀ q_i
//   z_i = λ z_{i−1} + k_i (one decayed state), z_{i−1} + k_i (momentum, per_key)
struct CausalSweep {
  SweepDecay decay = SweepDecay::none;
  bool momentum = false;        // two states: eq. 12 with A = E (decay β) and B = s
  bool normalize = true;        // divide by q_i·z_i + ε
  std::vector<double> decays;   // per_head: λ_h, H entries
  std::vector<double> weights;  // per_key: ω_j, N entries
  double gamma = 1;             // momentum: γ
  double eps = 0;               // normalize: ε
};

// The sweep as op `fn` on validated q, k, v (on the CPU or one device: there, the chunked
// kernels of core/kernels_attention.h); records a backward node named `node` (saving q, k, v
// and, when normalising, y and den [B,H,N]).
Tensor causal_sweep(const char* fn, const char* node, const AttentionDims& d, const Tensor& q,
                    const Tensor& k, const Tensor& v, const CausalSweep& sweep);

// The sweep's two passes over every (b, h), compiled once per ISA (causal_sweep_isa.cpp) for
// the forms the ops use (kStates = 2: momentum). The forward writes y (and den); the backward
// writes dq, dk, dv and uses dden [B,H,N] as scratch. T is float or double.
#define POLYAK_CAUSAL_SWEEP_DECLARE(isa)                                                         \
  template <class T, SweepDecay kDecay, int kStates, bool kNormalize>                            \
  void causal_sweep_forward(IsaTag<Isa::isa>, const AttentionDims& d, const CausalSweep& sweep,  \
                            const T* q, const T* k, const T* v, T* y, T* den);                   \
  template <class T, SweepDecay kDecay, int kStates, bool kNormalize>                            \
  void causal_sweep_backward(IsaTag<Isa::isa>, const AttentionDims& d, const CausalSweep& sweep, \
                             const T* q, const T* k, const T* v, const T* y, const T* den,       \
                             const T* dy, T* dq, T* dk, T* dv, T* dden);
POLYAK_FOR_EACH_ISA(POLYAK_CAUSAL_SWEEP_DECLARE)
#undef POLYAK_CAUSAL_SWEEP_DECLARE

// ---- the recurrent step: one position against the states, in place, no graph ----------

// Per (b, h), with the states of one step function (each [B,H,D,Dv], z [B,H,D]):
//   a = λ_h a + c k vᵀ;   x = a, or with b: b += g a, x = b;   y = xᵀ q
//   with z: z += k;  y = xᵀ q / (q·z + ε)
// λ_h = decays[h] (none when empty). Momentum's m = β m − k vᵀ, s = s − γ m is a = m,
// c = −1, b = s, g = −γ. The states arrive validated, of q's dtype.
struct SweepStep {
  Tensor a, b, z;  // b, z undefined: none
  std::vector<double> decays;
  double c = 1, g = 1, eps = 0;
};
// On a device (states on q's device) the backend's sweep_step kernel; errors name `fn`.
Tensor causal_sweep_step(const char* fn, const StepDims& d, const Tensor& q, const Tensor& k,
                         const Tensor& v, const SweepStep& step);

// ---- the non-causal form on a device --------------------------------------------------

// Non-causal linear attention with key weights and a key mask (core/kernels_attention.h,
// LinearAttentionArgs) as op `fn` on q, k, v validated on one device; records `node`
// (saving q, k, v, y and den [B,H,N]). linear_attention.cpp and momentum_attention.cpp.
Tensor linear_attention_on_device(const char* fn, const char* node, const AttentionDims& d,
                                  const Tensor& q, const Tensor& k, const Tensor& v,
                                  const LinearAttentionArgs& args);

// "<fn>: decays has n entries, expected H = …" / "decays[h] = λ, expected in (0, 1]".
void check_decays(const char* fn, const std::vector<double>& decays, int64_t H);

}  // namespace polyak::detail
