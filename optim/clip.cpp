// Gradient clipping (formulas in clip.h).
#include "polyak/optim/clip.h"

#include <cmath>

#include "polyak/core/error.h"
#include "polyak/core/kernels_optim.h"
#include "polyak/core/threads.h"

namespace polyak {

namespace {

constexpr double kClipEps = 1e-6;  // as PyTorch: max_norm / (norm + 1e-6)

void check_max_norm(const char* fn, double max_norm) {
  POLYAK_CHECK(std::isfinite(max_norm) && max_norm > 0, fn, ": max_norm = ", max_norm,
               ", expected a finite value > 0");
}

// grad · scale as a new tensor (both on the CPU).
void scale_grad(const Tensor& param, const Tensor& grad, double scale) {
  Tensor out = Tensor::empty(grad.shape(), grad.dtype());
  const int64_t n = grad.numel();
  dispatch(grad.dtype(), [&]<class T>() {
    const T* g = grad.data<T>();
    T* o = out.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for(n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) o[i] = g[i] * s;
    });
  });
  param.set_grad(out);
}

// The one device that holds the gradients of `params` (the CPU when none has one).
Device gradients_device(const char* fn, const std::vector<Tensor>& params) {
  size_t first = params.size();
  Device device = Device::cpu();
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor g = params[i].grad();
    if (!g.defined()) continue;
    if (first == params.size()) {
      first = i;
      device = g.device();
    }
    POLYAK_CHECK(g.device() == device, fn, ": the gradient of parameter ", i, " is on ", g.device(),
                 " but the gradient of parameter ", first, " is on ", device,
                 ", expected every gradient on one device");
  }
  return device;
}

// Clipping on `device` with no host read, multi-tensor launches: the squared norms (f64 [P]),
// then the norms and scale factors (f32, [] global or [P]), then every gradient times its
// factor, as new tensors. Returns the norms.
Tensor clip_on_device(const char* fn, const std::vector<Tensor>& params, double max_norm,
                      bool global, Device device) {
  const DeviceBackend& backend = device_kernels(device, fn);
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor g = params[i].grad();
    POLYAK_CHECK(!g.defined() || g.dtype() == backend.kernel_dtype, fn,
                 ": the gradient of parameter ", i, " is ", g.dtype(), " on ", device,
                 ", expected ", backend.kernel_dtype, " (the ", backend.name,
                 " kernels compute in ", backend.kernel_dtype, ")");
  }
  const auto sum_squares =
      device_kernel(fn, device, &DeviceBackend::optim, &OptimKernels::sum_squares);
  const auto coefficients =
      device_kernel(fn, device, &DeviceBackend::optim, &OptimKernels::clip_coefficients);
  const auto scale = device_kernel(fn, device, &DeviceBackend::optim, &OptimKernels::scale);

  const auto P = static_cast<int64_t>(params.size());
  std::vector<Tensor> grads, outs;
  std::vector<int64_t> slots, scale_slots;
  for (int64_t i = 0; i < P; ++i) {
    const Tensor g = params[static_cast<size_t>(i)].grad();
    if (!g.defined()) continue;
    grads.push_back(g);
    outs.push_back(Tensor::empty(g.shape(), g.dtype(), device));
    slots.push_back(i);
    scale_slots.push_back(global ? 0 : i);
  }
  const auto count = static_cast<int64_t>(grads.size());
  Tensor sums_sq = Tensor::zeros(Shape{P}, DType::f64, device);
  sum_squares(count, grads.data(), slots.data(), sums_sq);
  const Shape shape = global ? Shape{} : Shape{P};
  Tensor norms = Tensor::empty(shape, backend.kernel_dtype, device);
  Tensor scales = Tensor::empty(shape, backend.kernel_dtype, device);
  coefficients(sums_sq, max_norm, global, norms, scales);
  scale(count, grads.data(), scales, scale_slots.data(), outs.data());
  for (int64_t k = 0; k < count; ++k)
    params[static_cast<size_t>(slots[static_cast<size_t>(k)])].set_grad(
        outs[static_cast<size_t>(k)]);
  return norms;
}

double clip_on_cpu(const std::vector<Tensor>& params, double max_norm) {
  double sum_sq = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    const double norm = l2_norm(g);
    sum_sq += norm * norm;
  }
  const double total = std::sqrt(sum_sq);
  if (std::isfinite(total) && total > max_norm) {
    const double scale = max_norm / (total + kClipEps);
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (g.defined()) scale_grad(p, g, scale);
    }
  }
  return total;
}

std::vector<double> clip_per_parameter_on_cpu(const std::vector<Tensor>& params, double max_norm) {
  std::vector<double> norms(params.size(), 0.0);
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    norms[i] = l2_norm(g);
    if (std::isfinite(norms[i]) && norms[i] > max_norm) {
      scale_grad(params[i], g, max_norm / (norms[i] + kClipEps));
    }
  }
  return norms;
}

}  // namespace

double l2_norm(const Tensor& t) {
  check_defined("l2_norm", "t", t);
  Tensor host = t.device().is_cpu() ? t : t.cpu();
  const int64_t n = host.numel();
  return dispatch(host.dtype(), [&]<class T>() {
    const T* x = host.data<T>();
    double sum = 0;
#pragma omp parallel for reduction(+ : sum) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    return std::sqrt(sum);
  });
}

namespace {

// Every form of clipping, for `fn`: the norms as a tensor on the gradients' device.
Tensor clip(const char* fn, const std::vector<Tensor>& params, double max_norm, bool global) {
  check_max_norm(fn, max_norm);
  NoGradGuard no_grad;
  const Device device = gradients_device(fn, params);
  if (!device.is_cpu()) return clip_on_device(fn, params, max_norm, global, device);
  if (global) return Tensor::scalar(clip_on_cpu(params, max_norm), DType::f64);
  const std::vector<double> norms = clip_per_parameter_on_cpu(params, max_norm);
  return Tensor::from(norms, Shape{static_cast<int64_t>(norms.size())}, DType::f64);
}

}  // namespace

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  return clip("clip_grad_norm", params, max_norm, /*global=*/true).item();
}

Tensor clip_grad_norm_tensor(const std::vector<Tensor>& params, double max_norm) {
  return clip("clip_grad_norm_tensor", params, max_norm, /*global=*/true);
}

std::vector<double> clip_grad_norm_per_parameter(const std::vector<Tensor>& params,
                                                 double max_norm) {
  return clip("clip_grad_norm_per_parameter", params, max_norm, /*global=*/false).to_vector();
}

Tensor clip_grad_norm_per_parameter_tensor(const std::vector<Tensor>& params, double max_norm) {
  return clip("clip_grad_norm_per_parameter_tensor", params, max_norm, /*global=*/false);
}

}  // namespace polyak
