// layer_norm and rms_norm over the last axis (width C), fused forward and backward.
//
// Legend: R rows (all leading axes folded), C the normalised width; gamma, beta [C].
//
// layer_norm (Ba et al. 2016):
//   μ = mean(x),  rstd = 1/√(mean((x − μ)²) + eps),  x̂ = (x − μ)·rstd,  y = γ ⊙ x̂ + β
//   with ĝ = dy ⊙ γ:
//   dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂))                [R, C]
//   dγ = Σ_rows dy ⊙ x̂                                        [C]
//   dβ = Σ_rows dy                                            [C]
//   (x̂ depends on x through μ and rstd: ∂μ/∂x = 1/C, ∂rstd/∂x = −rstd³·(x − μ)/C; the two
//   mean terms are those paths.) The node keeps x, γ and μ, rstd per row.
//
// rms_norm (TransNormer's SRMSNorm, docs/math.md §5; eps outside the root):
//   r = √(mean(x²)),  s = 1/(r + eps),  y = γ ⊙ x · s
//   with ĝ = dy ⊙ γ:   ∂s/∂x = −s² · x/(C·r)
//   dx = s · ĝ − s² · (Σ ĝ ⊙ x)/(C·r) · x                        [R, C]
//   dγ = Σ_rows dy ⊙ x · s                                    [C]
//   The node keeps x, γ and r per row.
//
// On a device (x, γ, β on one device, f32) the same formulas run as the backend's nn kernels
// (core/kernels_nn.h): one body per row for y and dx, one per column for dγ and dβ.
//
// The row loops are in norm_isa.cpp, compiled once per ISA: dx is one pass per row; dγ, dβ
// are summed per chunk of rows and the chunks added at the end, so the result does not
// depend on scheduling.
#include <cmath>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/kernels_nn.h"
#include "polyak/ops/nn_ops.h"
#include "polyak/ops/norm_kernels.h"

namespace polyak {
namespace {

void check_affine(const char* fn, const char* arg, const Tensor& p, const Tensor& x) {
  if (!p.defined()) return;
  const int64_t C = x.size(-1);
  POLYAK_CHECK(p.dim() == 1 && p.size(0) == C, fn, ": ", arg, " has shape ", p.shape(),
               ", expected [C] = [", C, "] matching the last axis of x ", x.shape());
  check_same_dtype(fn, "x", x, arg, p);
  check_same_device(fn, "x", x, arg, p);
}

void check_input(const char* fn, const Tensor& x, double eps) {
  check_defined(fn, "x", x);
  POLYAK_CHECK(x.dim() >= 1, fn, ": x has shape ", x.shape(), ", expected rank ≥ 1 [..., C]");
  POLYAK_CHECK(eps >= 0 && std::isfinite(eps), fn, ": eps is ", eps, ", expected eps ≥ 0");
}

bool wants_grad(const Tensor& p) {
  return p.defined() && p.requires_grad();
}

// A norm node's inputs: x, then γ and β where defined.
std::vector<Tensor> norm_inputs(const Tensor& x, const Tensor& gamma, const Tensor& beta) {
  std::vector<Tensor> inputs = {x};
  if (gamma.defined()) inputs.push_back(gamma);
  if (beta.defined()) inputs.push_back(beta);
  return inputs;
}

// The gradients a norm's node returns: dx, then dγ and dβ for the parameters it has.
std::vector<Tensor> norm_grads(Tensor dx, bool has_gamma, Tensor dgamma, bool has_beta,
                               Tensor dbeta) {
  std::vector<Tensor> grads = {std::move(dx)};
  if (has_gamma) grads.push_back(std::move(dgamma));
  if (has_beta) grads.push_back(std::move(dbeta));
  return grads;
}

// A gradient the node computes when `wanted`, on x's device (undefined: not wanted).
Tensor grad_buffer(bool wanted, const Shape& shape, const Tensor& x) {
  return wanted ? Tensor::empty(shape, x.dtype(), x.device()) : Tensor();
}

Tensor layer_norm_on_device(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
  const char* fn = "layer_norm";
  const auto kernel = device_kernel(fn, "x", x, &DeviceBackend::nn, &NnKernels::layer_norm);
  const int64_t C = x.size(-1), R = x.shape().numel(0, x.dim() - 1);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty(Shape{R}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty(Shape{R}, x.dtype(), x.device());
  if (C > 0) kernel(x, gamma, beta, eps, out, mean, rstd);

  const bool need_x = x.requires_grad(), need_g = wants_grad(gamma), need_b = wants_grad(beta);
  record(out, "LayerNormBackward", norm_inputs(x, gamma, beta),
         [xs = x.detach(), gs = gamma.defined() ? gamma.detach() : Tensor(), mean, rstd,
          has_beta = beta.defined(), need_x, need_g, need_b, C](const Tensor& g) {
           Tensor dx = grad_buffer(need_x, xs.shape(), xs);
           Tensor dgamma = grad_buffer(need_g, Shape{C}, xs);
           Tensor dbeta = grad_buffer(need_b, Shape{C}, xs);
           if (C > 0)
             device_kernel("layer_norm (backward)", "gradient", g, &DeviceBackend::nn,
                           &NnKernels::layer_norm_backward)(xs, g, mean, rstd, gs, dx, dgamma,
                                                            dbeta);
           return norm_grads(dx, gs.defined(), dgamma, has_beta, dbeta);
         });
  return out;
}

Tensor rms_norm_on_device(const Tensor& x, const Tensor& gamma, double eps) {
  const char* fn = "rms_norm";
  const auto kernel = device_kernel(fn, "x", x, &DeviceBackend::nn, &NnKernels::rms_norm);
  const int64_t C = x.size(-1), R = x.shape().numel(0, x.dim() - 1);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor rms = Tensor::empty(Shape{R}, x.dtype(), x.device());
  if (C > 0) kernel(x, gamma, eps, out, rms);

  const bool need_x = x.requires_grad(), need_g = wants_grad(gamma);
  record(out, "RMSNormBackward", norm_inputs(x, gamma, Tensor()),
         [xs = x.detach(), gs = gamma.defined() ? gamma.detach() : Tensor(), rms, eps, need_x,
          need_g, C](const Tensor& g) {
           Tensor dx = grad_buffer(need_x, xs.shape(), xs);
           Tensor dgamma = grad_buffer(need_g, Shape{C}, xs);
           if (C > 0)
             device_kernel("rms_norm (backward)", "gradient", g, &DeviceBackend::nn,
                           &NnKernels::rms_norm_backward)(xs, g, rms, gs, eps, dx, dgamma);
           return norm_grads(dx, gs.defined(), dgamma, false, Tensor());
         });
  return out;
}

}  // namespace

// ---- layer_norm ------------------------------------------------------------------------

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
  check_input("layer_norm", x, eps);
  check_affine("layer_norm", "gamma", gamma, x);
  check_affine("layer_norm", "beta", beta, x);
  if (!x.device().is_cpu()) return layer_norm_on_device(x, gamma, beta, eps);
  const int64_t C = x.size(-1), R = x.shape().numel(0, x.dim() - 1);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  Tensor mean = Tensor::empty(Shape{R}, x.dtype());
  Tensor rstd = Tensor::empty(Shape{R}, x.dtype());
  if (C > 0)
    dispatch(x.dtype(), [&]<class T>() {
      with_active_isa([&](auto isa) {
        detail::layer_norm_forward<T>(isa, x.data<T>(), gamma.defined() ? gamma.data<T>() : nullptr,
                                      beta.defined() ? beta.data<T>() : nullptr, out.data<T>(),
                                      mean.data<T>(), rstd.data<T>(), R, C, static_cast<T>(eps));
      });
    });

  const bool need_x = x.requires_grad(), need_g = wants_grad(gamma), need_b = wants_grad(beta);
  record(out, "LayerNormBackward", norm_inputs(x, gamma, beta),
         [xs = x.detach(), gs = gamma.defined() ? gamma.detach() : Tensor(), mean, rstd,
          has_beta = beta.defined(), need_x, need_g, need_b, R,
          C](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = grad_buffer(need_x, xs.shape(), xs);
           Tensor dgamma = grad_buffer(need_g, Shape{C}, xs);
           Tensor dbeta = grad_buffer(need_b, Shape{C}, xs);
           dispatch(xs.dtype(), [&]<class T>() {
             with_active_isa([&](auto isa) {
               detail::layer_norm_backward<T>(
                   isa, xs.data<T>(), g.data<T>(), mean.data<T>(), rstd.data<T>(),
                   gs.defined() ? gs.data<T>() : nullptr, need_x ? dx.data<T>() : nullptr,
                   need_g ? dgamma.data<T>() : nullptr, need_b ? dbeta.data<T>() : nullptr, R, C);
             });
           });
           return norm_grads(dx, gs.defined(), dgamma, has_beta, dbeta);
         });
  return out;
}

// ---- rms_norm --------------------------------------------------------------------------

Tensor rms_norm(const Tensor& x, const Tensor& gamma, double eps) {
  check_input("rms_norm", x, eps);
  check_affine("rms_norm", "gamma", gamma, x);
  if (!x.device().is_cpu()) return rms_norm_on_device(x, gamma, eps);
  const int64_t C = x.size(-1), R = x.shape().numel(0, x.dim() - 1);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  Tensor rms = Tensor::empty(Shape{R}, x.dtype());
  if (C > 0)
    dispatch(x.dtype(), [&]<class T>() {
      with_active_isa([&](auto isa) {
        detail::rms_norm_forward<T>(isa, x.data<T>(), gamma.defined() ? gamma.data<T>() : nullptr,
                                    out.data<T>(), rms.data<T>(), R, C, static_cast<T>(eps));
      });
    });

  const bool need_x = x.requires_grad(), need_g = wants_grad(gamma);
  record(out, "RMSNormBackward", norm_inputs(x, gamma, Tensor()),
         [xs = x.detach(), gs = gamma.defined() ? gamma.detach() : Tensor(), rms, eps, need_x,
          need_g, R, C](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = grad_buffer(need_x, xs.shape(), xs);
           Tensor dgamma = grad_buffer(need_g, Shape{C}, xs);
           dispatch(xs.dtype(), [&]<class T>() {
             with_active_isa([&](auto isa) {
               detail::rms_norm_backward<T>(
                   isa, xs.data<T>(), g.data<T>(), rms.data<T>(),
                   gs.defined() ? gs.data<T>() : nullptr, need_x ? dx.data<T>() : nullptr,
                   need_g ? dgamma.data<T>() : nullptr, R, C, static_cast<T>(eps));
             });
           });
           return norm_grads(dx, gs.defined(), dgamma, false, Tensor());
         });
  return out;
}

}  // namespace polyak
