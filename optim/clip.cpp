// Gradient clipping (formulas in clip.h).
#include "polyak/optim/clip.h"

#include <cmath>

#include "polyak/core/error.h"
#include "polyak/core/threads.h"

namespace polyak {

namespace {

constexpr double kClipEps = 1e-6;  // as PyTorch: max_norm / (norm + 1e-6)

void check_max_norm(const char* fn, double max_norm) {
  POLYAK_CHECK(std::isfinite(max_norm) && max_norm > 0, fn, ": max_norm = ", max_norm,
               ", expected a finite value > 0");
}

// grad · scale as a new tensor on the gradient's device.
void scale_grad(const Tensor& param, const Tensor& grad, double scale) {
  Tensor host = grad.device().is_cpu() ? grad : grad.cpu();
  Tensor out = Tensor::empty(grad.shape(), grad.dtype());
  const int64_t n = grad.numel();
  dispatch(grad.dtype(), [&]<class T>() {
    const T* g = host.data<T>();
    T* o = out.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for(n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) o[i] = g[i] * s;
    });
  });
  param.set_grad(grad.device().is_cpu() ? out : out.to(grad.device()));
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

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  check_max_norm("clip_grad_norm", max_norm);
  NoGradGuard no_grad;
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

std::vector<double> clip_grad_norm_per_parameter(const std::vector<Tensor>& params,
                                                 double max_norm) {
  check_max_norm("clip_grad_norm_per_parameter", max_norm);
  NoGradGuard no_grad;
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

}  // namespace polyak
