// Causal sweeps behind the public momentum and decayed ops (internal to ops/attention).
// Arguments arrive validated; each records its own backward node.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
#pragma once

#include <vector>

#include "polyak/core/cpu.h"
#include "polyak/core/tensor.h"
#include "polyak/ops/attention/attention_checks.h"

namespace polyak::detail {

// Causal momentum attention, exact weighting (eq. 13), momentum_sweep.cpp:
//   y_i = Σ_{j≤i} w(i−j) (q_i·k_j) v_j / (Σ_{j≤i} q_i·k_j + eps),  w(m) = γ Σ_{u≤m} β^u.
// Records "CausalMomentumAttentionBackward".
Tensor causal_momentum_sweep(const AttentionDims& d, const Tensor& q, const Tensor& k,
                             const Tensor& v, double beta, double gamma, double eps);

// Its two sweeps over every (b, h), compiled once per ISA (momentum_sweep_isa.cpp): the
// forward writes y and den [B,H,N]; the backward writes dq, dk, dv and uses dden [B,H,N] as
// scratch. T is float or double.
#define POLYAK_MOMENTUM_SWEEP_DECLARE(isa)                                                       \
  template <class T>                                                                             \
  void momentum_sweep_forward(IsaTag<Isa::isa>, const AttentionDims& d, const T* q, const T* k,  \
                              const T* v, T* y, T* den, double beta, double gamma, double eps);  \
  template <class T>                                                                             \
  void momentum_sweep_backward(IsaTag<Isa::isa>, const AttentionDims& d, const T* q, const T* k, \
                               const T* v, const T* y, const T* den, const T* dy, T* dq, T* dk,  \
                               T* dv, T* dden, double beta, double gamma);
POLYAK_FOR_EACH_ISA(POLYAK_MOMENTUM_SWEEP_DECLARE)
#undef POLYAK_MOMENTUM_SWEEP_DECLARE

// Causal linear attention's two sweeps (causal_linear_attention_isa.cpp): without
// kNormalize the causal dot product (den unused). The forward writes y (and den); the
// backward writes dq, dk, dv, with dden [B,H,N] as scratch.
#define POLYAK_CAUSAL_LINEAR_SWEEP_DECLARE(isa)                                               \
  template <class T, bool kNormalize>                                                         \
  void causal_linear_sweep_forward(IsaTag<Isa::isa>, const AttentionDims& d, const T* q,      \
                                   const T* k, const T* v, T* y, T* den, T eps);              \
  template <class T, bool kNormalize>                                                         \
  void causal_linear_sweep_backward(IsaTag<Isa::isa>, const AttentionDims& d, const T* q,     \
                                    const T* k, const T* v, const T* den, const T* dy, T* dq, \
                                    T* dk, T* dv, T* dden);
POLYAK_FOR_EACH_ISA(POLYAK_CAUSAL_LINEAR_SWEEP_DECLARE)
#undef POLYAK_CAUSAL_LINEAR_SWEEP_DECLARE

// The decayed and key-weighted sweeps (decayed_attention_isa.cpp): state decay `decay` (λ)
// or, with kWeighted, one weight per key `weight` [N] (λ = 1).
#define POLYAK_DECAYED_SWEEP_DECLARE(isa)                                                          \
  template <class T, bool kWeighted, bool kNormalize>                                              \
  void decayed_sweep_forward(IsaTag<Isa::isa>, const AttentionDims& d, const T* q, const T* k,     \
                             const T* v, T* y, T* den, T decay, const T* weight, T eps);           \
  template <class T, bool kWeighted, bool kNormalize>                                              \
  void decayed_sweep_backward(IsaTag<Isa::isa>, const AttentionDims& d, const T* q, const T* k,    \
                              const T* v, const T* den, const T* dy, T* dq, T* dk, T* dv, T* dden, \
                              T decay, const T* weight);
POLYAK_FOR_EACH_ISA(POLYAK_DECAYED_SWEEP_DECLARE)
#undef POLYAK_DECAYED_SWEEP_DECLARE

// Causal linear attention with one weight per key, decayed_attention.cpp:
//   y_i = Σ_{j≤i} ω_j (q_i·k_j) v_j / (Σ_{j≤i} q_i·k_j + eps),  ω [N] (the same for every
// (b, h)). Records `node`.
Tensor causal_key_weighted_attention(const char* node, const AttentionDims& d, const Tensor& q,
                                     const Tensor& k, const Tensor& v,
                                     const std::vector<double>& weights, double eps);

}  // namespace polyak::detail
