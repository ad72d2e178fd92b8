// The nn kernel group of a device backend (core/backend.h, DeviceBackend::nn): embedding (forward
// and its deterministic backward), layer/RMS/SRMS norm, softmax and log-softmax, masked
// cross-entropy with the loss kept on the device, argmax. Entries left null are not provided; ops
// reach them through device_kernel(), which names the op and the device then. Every entry checks
// nothing that its op has checked: the op validates shapes, dtypes and devices on the host before
// it calls the kernel, allocates the outputs on the device and passes them in.
#pragma once

#include "polyak/core/backend.h"

namespace polyak {

struct NnKernels {
  // out [ids.shape..., C] = the rows weight[ids, :] of weight [V, C]; ids i32 or i64 on the
  // same device. An id outside [0, V) gives a row of NaN (a kernel cannot throw; the
  // loss then names it), where the CPU op throws.
  void (*embedding)(const Tensor& weight, const Tensor& ids, Tensor& out) = nullptr;
  // dweight [V, C] += Σ_{i : ids[i] = v} grad[i, :], summed in the order of i (deterministic:
  // the same bits every run); dweight arrives zeroed.
  void (*embedding_backward)(const Tensor& grad, const Tensor& ids, Tensor& dweight) = nullptr;

  // Rows of width C = x.size(-1), R = x.numel() / C of them; gamma, beta [C] may be undefined
  // (no affine term). The formulas are ops/norm.cpp's.
  // y [R, C], mean [R], rstd [R] (what the backward reads).
  void (*layer_norm)(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps,
                     Tensor& y, Tensor& mean, Tensor& rstd) = nullptr;
  // Overwrites each of dx [R, C], dgamma [C], dbeta [C] that is defined (the others are not
  // wanted).
  void (*layer_norm_backward)(const Tensor& x, const Tensor& dy, const Tensor& mean,
                              const Tensor& rstd, const Tensor& gamma, Tensor& dx, Tensor& dgamma,
                              Tensor& dbeta) = nullptr;
  // y [R, C], rms [R] = √(mean(x²)) per row.
  void (*rms_norm)(const Tensor& x, const Tensor& gamma, double eps, Tensor& y,
                   Tensor& rms) = nullptr;
  // Overwrites each of dx [R, C], dgamma [C] that is defined.
  void (*rms_norm_backward)(const Tensor& x, const Tensor& dy, const Tensor& rms,
                            const Tensor& gamma, double eps, Tensor& dx, Tensor& dgamma) = nullptr;

  // x, y viewed as [outer, C, inner], the softmax over C (ops/softmax.cpp); `log` picks
  // log_softmax. The backward reads the output y only.
  void (*softmax)(const Tensor& x, int64_t outer, int64_t C, int64_t inner, bool log,
                  Tensor& y) = nullptr;
  void (*softmax_backward)(const Tensor& y, const Tensor& dy, int64_t outer, int64_t C,
                           int64_t inner, bool log, Tensor& dx) = nullptr;

  // logits [R, V] (any leading shape), targets [R] i32 or i64. The weight of row r is
  // mask[r] (f32, i32 or i64) when mask is defined, else 1[targets[r] ≠ ignore_index]; it
  // is written to weight [R] f32. lse, nll [R] for every row whose target is a class (0
  // elsewhere); stats [2] = (W = Σ weight, loss); loss [] = Σ weight·nll / W (0 when W = 0).
  // A row of non-zero weight whose target is not a class, or a weight that is negative or
  // not finite, makes nll and the loss NaN (a kernel cannot throw; the CPU op does).
  void (*cross_entropy)(const Tensor& logits, const Tensor& targets, const Tensor& mask,
                        int64_t ignore_index, Tensor& weight, Tensor& lse, Tensor& nll,
                        Tensor& stats, Tensor& loss) = nullptr;
  // g [] the loss's cotangent. Overwrites each of dlogits [R, V], dmask [R] that is defined.
  void (*cross_entropy_backward)(const Tensor& logits, const Tensor& targets, const Tensor& weight,
                                 const Tensor& lse, const Tensor& nll, const Tensor& stats,
                                 const Tensor& g, Tensor& dlogits, Tensor& dmask) = nullptr;

  // params [R, 3K] f32, targets [R] i32 or i64 → nll [R] f32, each pixel's −log p
  // (core/logistic_mixture.h). A target outside 0..255 makes its nll NaN (the CPU op throws).
  void (*logistic_mixture_nll)(const Tensor& params, const Tensor& targets, int64_t K,
                               Tensor& nll) = nullptr;
  // g [R] the cotangent of nll → dparams [R, 3K], overwritten.
  void (*logistic_mixture_nll_backward)(const Tensor& params, const Tensor& targets,
                                        const Tensor& g, int64_t K, Tensor& dparams) = nullptr;

  // x viewed as [outer, n, inner] → out [outer, inner] i64: the index of the first maximum
  // along n (a NaN, if any, is the maximum), as ops/reduce.cpp's argmax.
  void (*argmax)(const Tensor& x, int64_t outer, int64_t n, int64_t inner, Tensor& out) = nullptr;
};

}  // namespace polyak
