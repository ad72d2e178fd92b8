// The discretized logistic mixture head of pixel models (docs/math.md §10; PixelCNN++): the
// negative log-likelihood of 8-bit intensities under per-pixel mixtures of K logistics, and
// draws from them. The formulas are core/logistic_mixture.h's.
//
// Legend: R pixels (every leading axis), K components; params [..., 3K] hold each pixel's
// logits, means and log-scales, in that order.
#pragma once

#include <cstdint>

#include "polyak/core/rng.h"
#include "polyak/core/tensor.h"

namespace polyak {

// params [..., 3K] (f32 or f64 on the CPU, f32 on a device), targets [...] (i32 or i64,
// values 0..255, same device) → nll [...]: −log p(target) in nats, per pixel (no reduction:
// bits/dim is its mean / ln 2). Differentiable in params. On the CPU a target outside 0..255
// is a polyak::Error; a device kernel, which cannot throw, makes that pixel's nll NaN.
Tensor logistic_mixture_nll(const Tensor& params, const Tensor& targets);

// One draw per pixel of params [..., 3K] (any device; read to the host) → i64 [...] with
// values 0..255, from `gen` (two uniforms per pixel; advances it). Not differentiable.
Tensor sample_logistic_mixture(const Tensor& params, Generator& gen);

}  // namespace polyak
