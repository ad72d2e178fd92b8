// The attention kernel group of a device backend (core/backend.h, DeviceBackend::attention):
// softmax attention (tiled), the chunked causal linear / decayed / momentum sweeps forward and
// backward, the non-causal forms, block softmax, the EMA scan, Mega's chunked attention, the
// sequence projection and the recurrent steps. Entries left null are not provided; ops reach them
// through device_kernel(), which names the op and the device then. Every entry checks nothing that
// its op has checked: the op validates shapes, dtypes and devices on the host before it calls the
// kernel, allocates the outputs on the device and passes them in.
//
// Dimension legend: B batch, H heads, N query positions, M key positions, D query/key width,
// Dv value width. q [B,H,N,D], k [B,H,M,D], v [B,H,M,Dv]; causal forms have M = N.
#pragma once

#include <vector>

#include "polyak/core/backend.h"

namespace polyak {

// The causal sweep of ops/attention/causal_sweep.h on a device, per (b, h):
//   o_i = Σ_{j≤i} W(i, j) (q_i·k_j) v_j,   den_i = Σ_{j≤i} U(i, j) (q_i·k_j) + ε
//   y_i = o_i / den_i with `normalize`, else o_i
// decays empty:  W = ω_j (1 without weights), U = 1              (linear; momentum's reference)
// decays λ_h:    W = U = λ_h^{i−j}                                (decayed / retention)
// momentum, β_h: W = γ (1 − β_h^{i−j+1}) / (1 − β_h), U = 1      (eq. 13, exact weighting)
struct CausalSweepArgs {
  std::vector<float> decays;   // λ_h, or β_h with momentum; H entries or empty
  std::vector<float> weights;  // ω_j per key, N entries or empty (not with decays)
  bool momentum = false;
  bool normalize = true;
  float gamma = 1, eps = 0;
};

// The non-causal form, per (b, h) with key weights ω_bj and a key mask μ_bj (both [B, M],
// empty: all 1): S = Σ_j ω_bj k_j v_jᵀ, z = Σ_j μ_bj k_j, y_i = Sᵀ q_i / (q_i·z + ε).
// Linear attention is ω = μ = 1; non-causal momentum attention has ω = γ (1 − β^{n−j})/(1 − β)
// and μ = 1 for the n keys of the row, both 0 for padding.
struct LinearAttentionArgs {
  std::vector<float> weights, key_mask;
  float eps = 0;
};

// The recurrent step of causal_sweep_step (ops/attention/causal_sweep.h), per (b, h):
//   a = λ_h a + c k vᵀ;  x = a, or with b: b += g a, x = b;  y = xᵀ q;  with z: z += k,
//   y /= q·z + ε
struct SweepStepArgs {
  std::vector<float> decays;  // λ_h, H entries or empty (λ = 1)
  float c = 1, g = 1, eps = 0;
};

// Mega's EMA (ops/attention/ema.h): the state is kept where each segment of `segment` positions
// starts (the backward recomputes the rest); `reverse` runs the recurrence from the last position.
struct EmaArgs {
  int64_t segment = 64;
  bool reverse = false;
};

// Mega's attention (ops/attention/mega_attention.h) over chunks of W = min(chunk, N) positions,
// the last one possibly shorter; L is the bias reach (rel_bias [2L − 1], L ≥ W). The softmax
// scales the scores by 1/√D, laplace by 1/L.
struct MegaAttentionArgs {
  int64_t W = 1, L = 1;
  bool causal = false, laplace = false;
};

struct AttentionKernels {
  // y [B,H,N,Dv] and, with args.normalize, den [B,H,N] (den_i above, ε included); den is
  // undefined otherwise. Chunked: O(N·(D + Dv + chunk)) scratch, no per-position state.
  void (*causal_sweep)(const Tensor& q, const Tensor& k, const Tensor& v,
                       const CausalSweepArgs& args, Tensor& y, Tensor& den) = nullptr;
  // Overwrites dq, dk, dv from dy and the forward's y and den (both unused without normalize).
  void (*causal_sweep_backward)(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& y,
                                const Tensor& den, const Tensor& dy, const CausalSweepArgs& args,
                                Tensor& dq, Tensor& dk, Tensor& dv) = nullptr;
  // y [B,H,N,Dv] and den [B,H,N] (ε included).
  void (*linear_attention)(const Tensor& q, const Tensor& k, const Tensor& v,
                           const LinearAttentionArgs& args, Tensor& y, Tensor& den) = nullptr;
  // Overwrites dq, dk, dv (zero for masked keys with ω = 0).
  void (*linear_attention_backward)(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& y, const Tensor& den, const Tensor& dy,
                                    const LinearAttentionArgs& args, Tensor& dq, Tensor& dk,
                                    Tensor& dv) = nullptr;
  // q, k [B,H,D], v [B,H,Dv] → y [B,H,Dv]; the states a, b [B,H,D,Dv] and z [B,H,D] are
  // updated in place (b, z may be undefined: none).
  void (*sweep_step)(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& a, Tensor& b,
                     Tensor& z, const SweepStepArgs& args, Tensor& y) = nullptr;

  // ---- Mega (ops/attention/ema.h, ops/attention/mega_attention.h) ---------------------------
  // x [B,N,C]; g, q, w [C,n] → y [B,N,C]; when ckpt is defined ([B,S,n,C], S = ⌈N/segment⌉)
  // it receives the state before every segment, for the backward.
  void (*ema)(const Tensor& x, const Tensor& g, const Tensor& q, const Tensor& w,
              const EmaArgs& args, Tensor& y, Tensor& ckpt) = nullptr;
  // Overwrites dx [B,N,C] and dg, dq, dw [C,n] (summed over B in order) from the forward's ckpt.
  void (*ema_backward)(const Tensor& x, const Tensor& g, const Tensor& q, const Tensor& w,
                       const Tensor& ckpt, const Tensor& dy, const EmaArgs& args, Tensor& dx,
                       Tensor& dg, Tensor& dq, Tensor& dw) = nullptr;
  // x [B,C] → y [B,C]; h [B,C,n] updated in place (h ← g ⊙ x + q ⊙ h).
  void (*ema_step)(const Tensor& x, Tensor& h, const Tensor& g, const Tensor& q, const Tensor& w,
                   Tensor& y) = nullptr;
  // q, k [B,N,D], v [B,N,Dv], rel_bias [2L − 1] → y [B,N,Dv] and saved [B·nC, W, W] (per chunk,
  // padded to W rows: P for the softmax, the scores for laplace; nC = ⌈N/W⌉).
  void (*mega_attention)(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& rel_bias,
                         const MegaAttentionArgs& args, Tensor& y, Tensor& saved) = nullptr;
  // Overwrites dq, dk, dv and db [2L − 1] (summed over the chunks in order).
  void (*mega_attention_backward)(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& saved, const Tensor& dy,
                                  const MegaAttentionArgs& args, Tensor& dq, Tensor& dk, Tensor& dv,
                                  Tensor& db) = nullptr;
  // q [B,D]; the caches [B,C,D], [B,C,Dv] hold rows 0 … row (the new one written) → y [B,Dv],
  // row `row` of the causal form on the chunk the caches hold.
  void (*mega_attention_step)(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                              int64_t row, const Tensor& rel_bias, const MegaAttentionArgs& args,
                              Tensor& y) = nullptr;
  // ---- softmax attention and Linformer's projection (cuda/kernels/softmax_attention.h) ----
  // y [B,H,N,Dv] and lse [B,H,N], each row's log Σ_j exp(q_i·k_j/√D) over the keys it sees
  // (j ≤ i when causal), from which the backward recomputes the probabilities. Tiled by
  // query blocks: O(B·H·64·M) scratch, never [N, M].
  void (*softmax_attention)(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                            Tensor& y, Tensor& lse) = nullptr;
  // Overwrites dq, dk, dv from dy and the forward's y and lse.
  void (*softmax_attention_backward)(const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& y, const Tensor& lse, const Tensor& dy,
                                     bool causal, Tensor& dq, Tensor& dk, Tensor& dv) = nullptr;
  // q, k [B,H,D], v [B,H,Dv]: writes k, v into row `length` < C of k_cache [B,H,C,D] and
  // v_cache [B,H,C,Dv], then y [B,H,Dv] = softmax(q K[0..length]ᵀ/√D) V[0..length].
  void (*softmax_attention_step)(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& k_cache,
                                 Tensor& v_cache, int64_t length, Tensor& y) = nullptr;
  // y [B,H,kp,D] = e[:, 0:N] x per (b, h), for x [B,H,N,D] and e [kp,M].
  void (*sequence_projection)(const Tensor& x, const Tensor& e, Tensor& y) = nullptr;
  // Overwrites dx [B,H,N,D] (when defined; needs e) and de [kp,M] (when defined; needs x),
  // with de[:, N:M] = 0.
  void (*sequence_projection_backward)(const Tensor& x, const Tensor& e, const Tensor& dy,
                                       Tensor& dx, Tensor& de) = nullptr;
};

}  // namespace polyak
