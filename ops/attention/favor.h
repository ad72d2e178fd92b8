// Performer's FAVOR+ feature map (docs/math.md §7; Choromanski et al. 2021, Lemma 1 and §2.4):
// positive orthogonal random features whose dot products estimate the softmax kernel,
//   E_Ω[φ(q)·φ(k)] = exp(q·k / √D),
// so that linear attention on φ(q), φ(k) (docs/math.md §2) approximates softmax attention.
//
// Dimension legend: D input (head) width, m random features, R rows (every leading axis).
#pragma once

#include <cstdint>

#include "polyak/core/rng.h"
#include "polyak/core/tensor.h"

namespace polyak {

// φ(x) = exp(Ω x' − ‖x'‖²/2) / √m,  x' = x · D^{−1/4}:  x [..., D], omega [m, D] → [..., m].
// The D^{−1/4} on both q and k puts softmax attention's 1/√D inside the kernel.
//
// No data-dependent stabiliser (such as subtracting a max over positions): φ is a pure
// function of one row of x, which the recurrent form (one position at a time) needs. It
// cannot overflow whatever x is, because
//   ω_rᵀx' − ‖x'‖²/2 = (‖ω_r‖² − ‖x' − ω_r‖²)/2 ≤ ‖ω_r‖²/2,
// and the rows of orthogonal_random_features have ‖ω_r‖² ~ χ²_D (mean D). f32's exp
// overflows past 88.7, i.e. only for a row with ‖ω_r‖² > 177 and x' near ω_r: the chance
// that a row has such a norm is 5e-22 for D = 32 and 1.4e-12 for D = 64 (f64 is safe far
// beyond any head width). A product φ(q)·φ(k) is at most max_r exp(‖ω_r‖²) / m, reached only at
// q' = k' = ω_r, where the exact kernel exp(q·k/√D) = exp(‖ω_r‖²) is as large: an
// attention logit past 88. The other side is the method's own: for ‖x'‖ far beyond every
// ‖ω_r‖ all features underflow to 0 together.
//
// Gradient: dx = D^{−1/4} (G Ω − (Σ_r G_r) x'),  G = dy ⊙ y  [..., m]. Ω gets none: it is a
// fixed random projection (a buffer, redrawn, never trained), and an omega that requires
// grad is a polyak::Error rather than a silently missing gradient.
// f32 or f64 (x and omega alike) on the CPU; f32 on a device (x and omega on one device).
Tensor favor_feature_map(const Tensor& x, const Tensor& omega);

// Ω [m, D] in `dtype`: ⌈m/D⌉ independent blocks, each the D orthonormal directions of a
// Haar-random rotation (the Q of a QR of a D×D standard normal matrix, in f64, with signs
// fixed so that R's diagonal is positive), every row scaled by the norm of its own
// standard normal D-vector, so that each row is marginally N(0, I_D) while rows within a
// block stay orthogonal. The first m rows are kept. Draws from `gen` (advances it).
Tensor orthogonal_random_features(int64_t m, int64_t D, Generator& gen, DType dtype = DType::f32);

}  // namespace polyak
