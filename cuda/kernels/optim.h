// The optim kernel group (core/kernels_optim.h) as kernel bodies and drivers
// (cuda/kernels/exec.h): compiled by nvcc for CUDA devices (cuda/optim.cu) and by the host
// compiler for the tests' fake device (tests/fake_device.h). Each body has its CPU reference
// in optim/: the same formula, in the same order, in f32.
//
//   AdamStep          one element of Adam / AdamW / RAdam       (optim/adam.cpp, radam.cpp)
//   SgdStep           one element of SGD                        (optim/sgd.cpp)
//   MultiTensor       one element of one of up to kTensorsPerLaunch tensors: the update of
//                     many parameters in one launch, their pointers passed in the launch
//                     itself (no table to copy to the device, so no wait for the host)
//   SquaresChunk      Σ x² over one chunk of kNormChunk, in double (optim/clip.cpp's l2_norm)
//   SquaresTotal      one tensor's chunk sums in chunk order, into sums_sq[slot]
//   ClipCoefficients  norms and scale factors from sums_sq     (optim/clip.cpp)
//   ScaleBy           out = x · scales[slot]
//
// Clipping never reads a norm on the host: the norms and scales are device tensors, and the
// scaling reads its factor from device memory. The reductions are ordered loops (one body
// per chunk, then one body over the chunks), so a norm has the same bits every run.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "polyak/core/kernels_optim.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::kernels {

constexpr int64_t kNormChunk = 4096;  // elements per partial sum of squares
// Parameters per multi-tensor launch: the body (≈ 72 bytes a tensor) stays well inside the
// 4 KiB of a CUDA kernel's arguments.
constexpr int kTensorsPerLaunch = 32;

// ---- bodies ----------------------------------------------------------------------------

struct AdamStep {
  AdamStepArgs args;
  float* p;
  const float* g;
  float* m;
  float* v;
  POLYAK_HD void operator()(int64_t i) const {
    const AdamStepArgs& a = args.from ? *args.from : args;
    const float gi = g[i] + a.l2 * p[i];
    m[i] = a.beta1 * m[i] + (1 - a.beta1) * gi;
    v[i] = a.beta2 * v[i] + (1 - a.beta2) * gi * gi;
    const float step = a.rectified ? a.step_size * m[i] / (::sqrtf(v[i]) * a.inv_sqrt_bc2 + a.eps)
                                   : a.step_size * m[i];
    p[i] = a.shrink * p[i] - step;
  }
};

struct SgdStep {
  SgdStepArgs args;
  float* p;
  const float* g;
  float* b;  // null without momentum
  POLYAK_HD void operator()(int64_t i) const {
    const SgdStepArgs& a = args.from ? *args.from : args;
    float d = g[i];
    if (a.weight_decay != 0.0f) d += a.weight_decay * p[i];
    if (b) {
      b[i] = a.first ? d : a.momentum * b[i] + a.keep * d;
      d = a.nesterov ? d + a.momentum * b[i] : b[i];
    }
    p[i] -= a.lr * d;
  }
};

// Element e of the concatenation of `count` tensors: Step k (of tensor k) at e − start[k].
// The linear search is over at most kTensorsPerLaunch offsets.
template <class Step>
struct MultiTensor {
  Step steps[kTensorsPerLaunch];
  int64_t start[kTensorsPerLaunch + 1];
  int count;
  POLYAK_HD void operator()(int64_t e) const {
    int k = 0;
    while (k + 1 < count && start[k + 1] <= e) ++k;
    steps[k](e - start[k]);
  }
};

struct SquaresChunk {
  const float* x;
  double* partial;  // [ceil(n / kNormChunk)]
  int64_t n;
  POLYAK_HD void operator()(int64_t c) const {
    const int64_t end = (c + 1) * kNormChunk < n ? (c + 1) * kNormChunk : n;
    double s = 0;
    for (int64_t i = c * kNormChunk; i < end; ++i)
      s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    partial[c] = s;
  }
};

struct SquaresTotal {
  const double* partial;
  int64_t chunks;
  double* sums_sq;
  int64_t slot;
  POLYAK_HD void operator()(int64_t) const {
    double s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c];
    sums_sq[slot] = s;
  }
};

// One body (global) or one per parameter. As optim/clip.cpp: the global norm sums the squares
// of the parameters' norms, and the scale factor is computed in double, stored in f32.
struct ClipCoefficients {
  const double* sums_sq;  // [P]
  int64_t P;
  double max_norm;
  bool global;
  float* norms;
  float* scales;
  POLYAK_HD void operator()(int64_t i) const {
    double norm = 0;
    if (global) {
      double total = 0;
      for (int64_t k = 0; k < P; ++k) {
        const double nk = ::sqrt(sums_sq[k]);
        total += nk * nk;
      }
      norm = ::sqrt(total);
    } else {
      norm = ::sqrt(sums_sq[i]);
    }
    const bool clip = norm - norm == 0 && norm > max_norm;  // finite (inf − inf and NaN fail)
    norms[i] = static_cast<float>(norm);
    scales[i] = clip ? static_cast<float>(max_norm / (norm + 1e-6)) : 1.0f;
  }
};

struct ScaleBy {
  const float* x;
  const float* scales;
  int64_t slot;
  float* out;
  POLYAK_HD void operator()(int64_t i) const { out[i] = x[i] * scales[slot]; }
};

// A multi-tensor body travels in a CUDA launch's arguments, which hold at most 4 KiB.
static_assert(sizeof(MultiTensor<AdamStep>) <= 4096 && sizeof(MultiTensor<SgdStep>) <= 4096 &&
                  sizeof(MultiTensor<SquaresChunk>) <= 4096 &&
                  sizeof(MultiTensor<SquaresTotal>) <= 4096 && sizeof(MultiTensor<ScaleBy>) <= 4096,
              "kTensorsPerLaunch too large for a kernel's arguments");

// ---- drivers: the Tensor-level entries of the table -------------------------------------

template <class Exec>
struct Optim {
  static float* f32(const Tensor& t) { return static_cast<float*>(t.raw_data()); }

  // Runs steps[k] over sizes[k] elements for every k, kTensorsPerLaunch tensors a launch.
  template <class Step>
  static void multi_tensor(Device device, int64_t count, const Step* steps, const int64_t* sizes) {
    Exec ex(device);
    for (int64_t first = 0; first < count; first += kTensorsPerLaunch) {
      MultiTensor<Step> body{};
      body.count =
          static_cast<int>(count - first < kTensorsPerLaunch ? count - first : kTensorsPerLaunch);
      for (int k = 0; k < body.count; ++k) {
        body.steps[k] = steps[first + k];
        body.start[k + 1] = body.start[k] + sizes[first + k];
      }
      ex.for_each(body.start[body.count], body);
    }
  }

  static void adam_steps(int64_t count, const AdamStepArgs* args, const Tensor* params,
                         const Tensor* grads, const Tensor* exp_avg, const Tensor* exp_avg_sq) {
    if (count <= 0) return;
    std::vector<AdamStep> steps;
    std::vector<int64_t> sizes;
    for (int64_t k = 0; k < count; ++k) {
      steps.push_back(
          AdamStep{args[k], f32(params[k]), f32(grads[k]), f32(exp_avg[k]), f32(exp_avg_sq[k])});
      sizes.push_back(params[k].numel());
    }
    multi_tensor(params[0].device(), count, steps.data(), sizes.data());
  }

  static void sgd_steps(int64_t count, const SgdStepArgs* args, const Tensor* params,
                        const Tensor* grads, const Tensor* momentum_buffers) {
    if (count <= 0) return;
    std::vector<SgdStep> steps;
    std::vector<int64_t> sizes;
    for (int64_t k = 0; k < count; ++k) {
      float* b = momentum_buffers[k].defined() ? f32(momentum_buffers[k]) : nullptr;
      steps.push_back(SgdStep{args[k], f32(params[k]), f32(grads[k]), b});
      sizes.push_back(params[k].numel());
    }
    multi_tensor(params[0].device(), count, steps.data(), sizes.data());
  }

  // Two launches for up to kTensorsPerLaunch tensors: one body per chunk of every tensor,
  // then one body per tensor over its chunks, in order.
  static void sum_squares(int64_t count, const Tensor* xs, const int64_t* slots, Tensor& sums_sq) {
    if (count <= 0) return;
    std::vector<int64_t> chunks, offsets, ones(static_cast<size_t>(count), 1);
    int64_t total = 0;
    for (int64_t k = 0; k < count; ++k) {
      chunks.push_back((xs[k].numel() + kNormChunk - 1) / kNormChunk);
      offsets.push_back(total);
      total += chunks.back();
    }
    const Tensor partial = Tensor::empty(Shape{total}, DType::f64, xs[0].device());
    auto* part = static_cast<double*>(partial.raw_data());
    auto* sums = static_cast<double*>(sums_sq.raw_data());
    std::vector<SquaresChunk> per_chunk;
    std::vector<SquaresTotal> per_tensor;
    for (size_t k = 0; k < chunks.size(); ++k) {
      per_chunk.push_back(SquaresChunk{f32(xs[k]), part + offsets[k], xs[k].numel()});
      per_tensor.push_back(SquaresTotal{part + offsets[k], chunks[k], sums, slots[k]});
    }
    multi_tensor(xs[0].device(), count, per_chunk.data(), chunks.data());
    multi_tensor(xs[0].device(), count, per_tensor.data(), ones.data());
  }

  static void clip_coefficients(const Tensor& sums_sq, double max_norm, bool global, Tensor& norms,
                                Tensor& scales) {
    Exec ex(sums_sq.device());
    const int64_t P = sums_sq.numel();
    ex.for_each(global ? 1 : P, ClipCoefficients{static_cast<const double*>(sums_sq.raw_data()), P,
                                                 max_norm, global, f32(norms), f32(scales)});
  }

  static void scale(int64_t count, const Tensor* xs, const Tensor& scales, const int64_t* slots,
                    const Tensor* outs) {
    if (count <= 0) return;
    std::vector<ScaleBy> steps;
    std::vector<int64_t> sizes;
    for (int64_t k = 0; k < count; ++k) {
      steps.push_back(ScaleBy{f32(xs[k]), f32(scales), slots[k], f32(outs[k])});
      sizes.push_back(xs[k].numel());
    }
    multi_tensor(xs[0].device(), count, steps.data(), sizes.data());
  }
};

template <class Exec>
OptimKernels optim_kernels() {
  OptimKernels k;
  k.adam_steps = &Optim<Exec>::adam_steps;
  k.sgd_steps = &Optim<Exec>::sgd_steps;
  k.sum_squares = &Optim<Exec>::sum_squares;
  k.clip_coefficients = &Optim<Exec>::clip_coefficients;
  k.scale = &Optim<Exec>::scale;
  return k;
}

}  // namespace polyak::kernels
