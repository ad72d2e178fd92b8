// Mega's multi-dimensional damped EMA (docs/math.md §6; Ma et al. 2022), the moving
// average that feeds Mega's gated attention. On the CPU and on devices
// (core/kernels_attention.h).
//
// Dimension legend: B batch, N positions, C channels, n EMA dimensions per channel.
// Each channel c carries an n-dimensional state; with the coefficients
//   g = p ⊙ β        input gain          [C,n]
//   q = 1 − p ⊙ α'   decay, in (0, 1)    [C,n]
//   w = η / √n       output weights      [C,n]
// (p = σ(δ_raw), α' = σ(α_raw), computed by the caller with differentiable ops on the
// parameters, so that gradients reach δ, α, β, η through g, q, w):
//   h_t = g ⊙ x_t + q ⊙ h_{t−1}     (h_{−1} = 0)    [C,n] per batch row
//   y_t = Σ_n w ⊙ h_t                                [C]
#pragma once

#include <cstdint>

#include "polyak/core/tensor.h"

namespace polyak {

// The backward keeps h only at the first position of every segment of this many positions
// and recomputes the rest segment by segment: O(N·C·n / kEmaSegment) saved, i.e. O(N·C).
inline constexpr int64_t kEmaSegment = 64;

// x [B,N,C]; g, q, w [C,n] → y [B,N,C], O(N·C·n) time. `reverse` runs the recurrence from
// the last position backwards (h_t = g ⊙ x_t + q ⊙ h_{t+1}, h_N = 0): the anti-causal half
// of Mega's bidirectional EMA. Differentiable in x, g, q and w.
Tensor ema(const Tensor& x, const Tensor& g, const Tensor& q, const Tensor& w,
           bool reverse = false);

// One causal step for generation: x [B,C], h [B,C,n] updated in place
// (h ← g ⊙ x + q ⊙ h) → y [B,C] = Σ_n w ⊙ h. After t steps from h = 0, y equals row t − 1
// of ema(). An undefined h starts at zero. Not differentiable (records nothing).
Tensor ema_step(const Tensor& x, Tensor& h, const Tensor& g, const Tensor& q, const Tensor& w);

}  // namespace polyak
