// The causal sweep as an op with its backward node, and its recurrent step (docs/math.md
// §2–3). The sweep's formulas, its gradients and its O(N·D) memory are in
// causal_sweep_isa.cpp, compiled once per ISA; the public ops that are forms of it are in
// causal_linear_attention.cpp, decayed_attention.cpp and momentum_attention.cpp.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width.
// Saved for backward: q, k, v, and when normalising y (without its graph) and den [B,H,N].
// Scratch during backward: dden [B,H,N].
#include "polyak/ops/attention/causal_sweep.h"

#include <cmath>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/kernels_attention.h"
#include "polyak/core/threads.h"
#include "polyak/ops/attention/vec.h"

namespace polyak::detail {
namespace {

// Calls f.template operator()<kDecay, kStates, kNormalize>() for the sweep's form: the
// forms the ops use, each compiled (causal_sweep_isa.cpp).
template <class F>
void with_form(const CausalSweep& s, F&& f) {
  using enum SweepDecay;
  POLYAK_CHECK(s.normalize || (s.decay != per_key && !s.momentum),
               "causal_sweep: per-key weights and momentum are compiled with a normaliser only");
  auto one_state = [&]<SweepDecay kDecay>() {
    if (s.normalize)
      f.template operator()<kDecay, 1, true>();
    else
      f.template operator()<kDecay, 1, false>();
  };
  if (s.momentum) {
    POLYAK_CHECK(s.decay == per_head,
                 "causal_sweep: momentum is compiled with per-head decay only");
    f.template operator()<per_head, 2, true>();
  } else if (s.decay == none) {
    one_state.template operator()<none>();
  } else if (s.decay == per_head) {
    one_state.template operator()<per_head>();
  } else {
    f.template operator()<per_key, 1, true>();
  }
}

std::vector<float> to_floats(const std::vector<double>& values) {
  return std::vector<float>(values.begin(), values.end());
}

// q, k, v on one device: the backend's chunked sweep (core/kernels_attention.h), forward and
// backward, with the same saved tensors as on the CPU.
Tensor causal_sweep_on_device(const char* fn, const char* node, const AttentionDims& d,
                              const Tensor& q, const Tensor& k, const Tensor& v,
                              const CausalSweep& sweep) {
  const auto kernel =
      device_kernel(fn, "q", q, &DeviceBackend::attention, &AttentionKernels::causal_sweep);
  CausalSweepArgs args;
  if (sweep.decay == SweepDecay::per_head) args.decays = to_floats(sweep.decays);
  if (sweep.decay == SweepDecay::per_key) args.weights = to_floats(sweep.weights);
  args.momentum = sweep.momentum;
  args.normalize = sweep.normalize;
  args.gamma = static_cast<float>(sweep.gamma);
  args.eps = static_cast<float>(sweep.eps);
  const Device dev = q.device();
  Tensor y = Tensor::empty({d.B, d.H, d.N, d.Dv}, DType::f32, dev);
  Tensor den = sweep.normalize ? Tensor::empty({d.B, d.H, d.N}, DType::f32, dev) : Tensor();
  kernel(q, k, v, args, y, den);

  Tensor y_saved = sweep.normalize ? y.detach() : Tensor();
  record(y, node, {q, k, v}, [q, k, v, y_saved, den, args, node](const Tensor& dy) {
    Tensor dq = Tensor::empty(q.shape(), DType::f32, dy.device());
    Tensor dk = Tensor::empty(k.shape(), DType::f32, dy.device());
    Tensor dv = Tensor::empty(v.shape(), DType::f32, dy.device());
    device_kernel(node, "gradient", dy, &DeviceBackend::attention,
                  &AttentionKernels::causal_sweep_backward)(q, k, v, y_saved, den, dy, args, dq, dk,
                                                            dv);
    return std::vector<Tensor>{dq, dk, dv};
  });
  return y;
}

}  // namespace

Tensor causal_sweep(const char* fn, const char* node, const AttentionDims& d, const Tensor& q,
                    const Tensor& k, const Tensor& v, const CausalSweep& sweep) {
  if (!q.device().is_cpu()) return causal_sweep_on_device(fn, node, d, q, k, v, sweep);
  const DType dtype = q.dtype();
  Tensor y = Tensor::empty({d.B, d.H, d.N, d.Dv}, dtype);
  Tensor den = sweep.normalize ? Tensor::empty({d.B, d.H, d.N}, dtype) : Tensor();
  with_form(sweep, [&]<SweepDecay kDecay, int kStates, bool kNormalize>() {
    dispatch(dtype, [&]<class T>() {
      with_active_isa([&](auto isa) {
        causal_sweep_forward<T, kDecay, kStates, kNormalize>(isa, d, sweep, q.data<T>(),
                                                             k.data<T>(), v.data<T>(), y.data<T>(),
                                                             kNormalize ? den.data<T>() : nullptr);
      });
    });
  });

  // dden_i = −(dy_i·y_i)/den_i reads the output, kept without its graph.
  Tensor y_saved = sweep.normalize ? y.detach() : Tensor();
  record(y, node, {q, k, v}, [q, k, v, y_saved, den, d, sweep](const Tensor& dy) {
    const DType dt = q.dtype();
    Tensor dq = Tensor::empty(q.shape(), dt);
    Tensor dk = Tensor::empty(k.shape(), dt);
    Tensor dv = Tensor::empty(v.shape(), dt);
    Tensor dden = sweep.normalize ? Tensor::empty({d.B, d.H, d.N}, dt) : Tensor();
    with_form(sweep, [&]<SweepDecay kDecay, int kStates, bool kNormalize>() {
      dispatch(dt, [&]<class T>() {
        with_active_isa([&](auto isa) {
          causal_sweep_backward<T, kDecay, kStates, kNormalize>(
              isa, d, sweep, q.data<T>(), k.data<T>(), v.data<T>(),
              kNormalize ? y_saved.data<T>() : nullptr, kNormalize ? den.data<T>() : nullptr,
              dy.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>(),
              kNormalize ? dden.data<T>() : nullptr);
        });
      });
    });
    return std::vector<Tensor>{dq, dk, dv};
  });
  return y;
}

Tensor causal_sweep_step(const char* fn, const StepDims& d, const Tensor& q, const Tensor& k,
                         const Tensor& v, const SweepStep& step) {
  if (!q.device().is_cpu()) {
    const auto kernel =
        device_kernel(fn, "q", q, &DeviceBackend::attention, &AttentionKernels::sweep_step);
    SweepStepArgs args;
    args.decays = to_floats(step.decays);
    args.c = static_cast<float>(step.c);
    args.g = static_cast<float>(step.g);
    args.eps = static_cast<float>(step.eps);
    Tensor y = Tensor::empty({d.B, d.H, d.Dv}, DType::f32, q.device());
    Tensor a = step.a, b = step.b, z = step.z;
    kernel(q, k, v, a, b, z, args, y);
    return y;
  }
  Tensor y = Tensor::empty({d.B, d.H, d.Dv}, q.dtype());
  dispatch(q.dtype(), [&]<class T>() {
    const int64_t D = d.D, Dv = d.Dv;
    const T c = static_cast<T>(step.c), g = static_cast<T>(step.g);
    const T* qp = q.data<T>();
    const T* kp = k.data<T>();
    const T* vp = v.data<T>();
    T* ap = step.a.data<T>();
    T* bp = step.b.defined() ? step.b.data<T>() : nullptr;
    T* zp = step.z.defined() ? step.z.data<T>() : nullptr;
    T* yp = y.data<T>();
    parallel_for(d.B * d.H, 3 * D * Dv + 1, [&](int64_t begin, int64_t end) {
      for (int64_t h = begin; h < end; ++h) {
        const T* qh = qp + h * D;
        const T* kh = kp + h * D;
        const T* vh = vp + h * Dv;
        T* yh = yp + h * Dv;
        const bool decayed = !step.decays.empty();
        const T lambda = decayed ? static_cast<T>(step.decays[static_cast<size_t>(h % d.H)]) : T(1);
        std::fill_n(yh, Dv, T(0));
        for (int64_t r = 0; r < D; ++r) {
          T* ar = ap + (h * D + r) * Dv;
          const T ck = c * kh[r];
          if (decayed) {
#pragma omp simd
            for (int64_t col = 0; col < Dv; ++col) ar[col] = lambda * ar[col] + ck * vh[col];
          } else {
            axpy(Dv, ck, vh, ar);
          }
          T* xr = ar;
          if (bp != nullptr) {
            xr = bp + (h * D + r) * Dv;
            axpy(Dv, g, ar, xr);
          }
          axpy(Dv, qh[r], xr, yh);
        }
        if (zp != nullptr) {
          T* zh = zp + h * D;
          axpy(D, T(1), kh, zh);
          const T inv = T(1) / (dot(D, qh, zh) + static_cast<T>(step.eps));
          for (int64_t col = 0; col < Dv; ++col) yh[col] *= inv;
        }
      }
    });
  });
  return y;
}

void check_decays(const char* fn, const std::vector<double>& decays, int64_t H) {
  POLYAK_CHECK(static_cast<int64_t>(decays.size()) == H, fn, ": decays has ", decays.size(),
               " entries, expected H = ", H, " (one per head)");
  for (size_t h = 0; h < decays.size(); ++h)
    POLYAK_CHECK(std::isfinite(decays[h]) && decays[h] > 0 && decays[h] <= 1, fn, ": decays[", h,
                 "] = ", decays[h], ", expected in (0, 1]");
}

}  // namespace polyak::detail
