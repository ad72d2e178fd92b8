// cross_entropy: fused log-softmax + negative log-likelihood, weighted mean over rows.
//
// Legend: R rows (leading axes of logits folded), V classes; logits x [R, V], targets t [R].
//   lse_r = max_v x_rv + log Σ_v exp(x_rv − max)
//   nll_r = lse_r − x_{r, t_r}
//   loss  = Σ_r w_r nll_r / W,   W = Σ_r w_r
//   w_r = 1[t_r ≠ ignore_index]  (first form)  or  mask_r  (second form); loss = 0 when W = 0.
//
//   dx_rv   = g · w_r / W · (softmax(x_r)_v − 1[v = t_r])          [R, V]
//   dmask_r = g · (nll_r − loss) / W                               [R]
// softmax(x_r) = exp(x_r − lse_r), so the node keeps x, lse and nll per row, never a
// softmax-sized copy.
//
// On a device (logits f32; targets i32/i64 and the mask on the same device) the backend's nn
// kernels compute the same per-row lse, nll and w, then W and the loss in one ordered sum; the
// node keeps them (and W, loss) as device tensors, so neither the loss nor its gradient reads
// anything back to the host. Bad targets or weights cannot be checked there without a read:
// a counted row whose target is not a class, or a negative or non-finite weight, makes the
// loss NaN where the CPU op throws.
#include <Eigen/Core>
#include <cmath>
#include <memory>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/kernels_nn.h"
#include "polyak/core/threads.h"
#include "polyak/ops/nn_ops.h"

namespace polyak {
namespace {

template <class T>
using ConstVec = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using Vec = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;

// Per-row results of the forward, kept for the backward.
struct Saved {
  std::vector<int32_t> targets;
  std::vector<double> weight, lse, nll;  // per row
  double total = 0;                      // W
  double loss = 0;
};

void check_logits(const Tensor& logits, const Indices& targets) {
  check_defined("cross_entropy", "logits", logits);
  check_cpu("cross_entropy", "logits", logits);
  POLYAK_CHECK(logits.dim() >= 1, "cross_entropy: logits has shape ", logits.shape(),
               ", expected rank ≥ 1 [..., V]");
  const Shape expected(std::vector<int64_t>(logits.shape().begin(), logits.shape().end() - 1));
  POLYAK_CHECK(targets.shape == expected, "cross_entropy: targets has shape ", targets.shape,
               ", expected ", expected, " matching logits ", logits.shape());
  POLYAK_CHECK(targets.numel() == expected.numel(), "cross_entropy: targets has ", targets.numel(),
               " values, expected ", expected.numel());
  POLYAK_CHECK(logits.size(-1) > 0, "cross_entropy: logits has shape ", logits.shape(),
               ", expected at least one class");
}

// Fills lse, nll for every row whose target is a class, and the weighted mean.
Tensor forward(const Tensor& logits, Saved& s) {
  const int64_t V = logits.size(-1), R = static_cast<int64_t>(s.targets.size());
  s.lse.assign(static_cast<size_t>(R), 0.0);
  s.nll.assign(static_cast<size_t>(R), 0.0);
  dispatch(logits.dtype(), [&]<class T>() {
    const T* x = logits.data<T>();
    parallel_for(R, 3 * V, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const size_t i = static_cast<size_t>(r);
        const int32_t t = s.targets[i];
        if (t < 0 || t >= V) continue;  // an ignored or masked-out row without a class
        ConstVec<T> xr(x + r * V, V);
        const T m = xr.maxCoeff();
        const double lse =
            static_cast<double>(m) + std::log(static_cast<double>((xr - m).exp().sum()));
        s.lse[i] = lse;
        s.nll[i] = lse - static_cast<double>(xr[t]);
      }
    });
  });
  double weighted = 0;
  for (size_t i = 0; i < s.nll.size(); ++i) {
    s.total += s.weight[i];
    weighted += s.weight[i] * s.nll[i];
  }
  s.loss = s.total > 0 ? weighted / s.total : 0.0;
  return Tensor::full(Shape{}, s.loss, logits.dtype());
}

Tensor cross_entropy_impl(const Tensor& logits, const Tensor& mask, std::shared_ptr<Saved> saved) {
  Tensor out = forward(logits, *saved);
  std::vector<Tensor> inputs = {logits};
  if (mask.defined()) inputs.push_back(mask);
  record(
      out, "CrossEntropyBackward", inputs,
      [x = logits.detach(), saved, has_mask = mask.defined(), need_x = logits.requires_grad(),
       need_mask = mask.defined() && mask.requires_grad()](const Tensor& g) -> std::vector<Tensor> {
        const Saved& s = *saved;
        const int64_t V = x.size(-1), R = static_cast<int64_t>(s.targets.size());
        const double scale = s.total > 0 ? g.item() / s.total : 0.0;
        Tensor dx, dmask;
        if (need_x) {
          dx = Tensor::empty(x.shape(), x.dtype());
          dispatch(x.dtype(), [&]<class T>() {
            const T* px = x.data<T>();
            T* pdx = dx.data<T>();
            parallel_for(R, 3 * V, [&](int64_t begin, int64_t end) {
              for (int64_t r = begin; r < end; ++r) {
                const size_t i = static_cast<size_t>(r);
                Vec<T> dr(pdx + r * V, V);
                if (s.weight[i] == 0) {
                  dr.setZero();
                  continue;
                }
                const T k = static_cast<T>(scale * s.weight[i]);
                dr = (ConstVec<T>(px + r * V, V) - static_cast<T>(s.lse[i])).exp() * k;
                dr[s.targets[i]] -= k;
              }
            });
          });
        }
        if (need_mask) {
          std::vector<double> dm(static_cast<size_t>(R));
          for (size_t i = 0; i < dm.size(); ++i)
            dm[i] = s.targets[i] >= 0 && s.targets[i] < V ? scale * (s.nll[i] - s.loss) : 0.0;
          dmask =
              Tensor::from(dm,
                           x.shape().rank() > 1
                               ? Shape(std::vector<int64_t>(x.shape().begin(), x.shape().end() - 1))
                               : Shape{},
                           x.dtype());
        }
        std::vector<Tensor> grads = {dx};
        if (has_mask) grads.push_back(dmask);
        return grads;
      });
  return out;
}

// Logits on a device: the mask (undefined in the ignore_index form) weights the rows.
Tensor cross_entropy_on_device(const Tensor& logits, const Tensor& targets, const Tensor& mask,
                               int32_t ignore_index) {
  const char* fn = "cross_entropy";
  const auto kernel =
      device_kernel(fn, "logits", logits, &DeviceBackend::nn, &NnKernels::cross_entropy);
  POLYAK_CHECK(logits.dim() >= 1, fn, ": logits has shape ", logits.shape(),
               ", expected rank ≥ 1 [..., V]");
  POLYAK_CHECK(logits.size(-1) > 0, fn, ": logits has shape ", logits.shape(),
               ", expected at least one class");
  const Shape rows(std::vector<int64_t>(logits.shape().begin(), logits.shape().end() - 1));
  check_defined(fn, "targets", targets);
  POLYAK_CHECK(targets.dtype() == DType::i32 || targets.dtype() == DType::i64, fn, ": targets is ",
               targets.dtype(), ", expected an integer tensor (i32 or i64)");
  check_same_device(fn, "logits", logits, "targets", targets);
  POLYAK_CHECK(targets.shape() == rows, fn, ": targets has shape ", targets.shape(), ", expected ",
               rows, " matching logits ", logits.shape());
  if (mask.defined()) {
    POLYAK_CHECK(mask.shape() == rows, fn, ": mask has shape ", mask.shape(), ", expected ", rows,
                 " matching targets");
    check_same_device(fn, "logits", logits, "mask", mask);
    if (is_floating(mask.dtype())) check_same_dtype(fn, "logits", logits, "mask", mask);
  }
  const Device dev = logits.device();
  const int64_t R = rows.numel();
  Tensor weight = Tensor::empty(Shape{R}, DType::f32, dev);
  Tensor lse = Tensor::empty(Shape{R}, DType::f32, dev);
  Tensor nll = Tensor::empty(Shape{R}, DType::f32, dev);
  Tensor stats = Tensor::empty(Shape{2}, DType::f32, dev);  // (W, loss)
  Tensor out = Tensor::empty(Shape{}, DType::f32, dev);
  kernel(logits, targets, mask, ignore_index, weight, lse, nll, stats, out);

  // An integer mask is a constant weight: only a floating one is an input of the node.
  const bool mask_input = mask.defined() && is_floating(mask.dtype());
  std::vector<Tensor> inputs = {logits};
  if (mask_input) inputs.push_back(mask);
  record(out, "CrossEntropyBackward", inputs,
         [x = logits.detach(), targets, weight, lse, nll, stats, mask_input,
          need_x = logits.requires_grad(),
          need_mask = mask_input && mask.requires_grad()](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = need_x ? Tensor::empty(x.shape(), x.dtype(), x.device()) : Tensor();
           Tensor dmask =
               need_mask ? Tensor::empty(targets.shape(), x.dtype(), x.device()) : Tensor();
           device_kernel("cross_entropy (backward)", "gradient", g, &DeviceBackend::nn,
                         &NnKernels::cross_entropy_backward)(x, targets, weight, lse, nll, stats, g,
                                                             dx, dmask);
           std::vector<Tensor> grads = {dx};
           if (mask_input) grads.push_back(dmask);
           return grads;
         });
  return out;
}

bool on_device(const Tensor& logits) {
  return logits.defined() && !logits.device().is_cpu();
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Indices& targets, int32_t ignore_index) {
  if (on_device(logits))
    return cross_entropy_on_device(logits, to_tensor(targets, DType::i32).to(logits.device()),
                                   Tensor(), ignore_index);
  check_logits(logits, targets);
  const int64_t V = logits.size(-1);
  auto saved = std::make_shared<Saved>();
  saved->targets = targets.values;
  saved->weight.resize(targets.values.size());
  for (int64_t i = 0; i < targets.numel(); ++i) {
    const int32_t t = targets[i];
    POLYAK_CHECK(t == ignore_index || (t >= 0 && t < V), "cross_entropy: targets has value ", t,
                 " at index ", i, ", expected values in [0, ", V, ") (logits has ", V,
                 " classes) or ignore_index ", ignore_index);
    saved->weight[static_cast<size_t>(i)] = t == ignore_index ? 0.0 : 1.0;
  }
  return cross_entropy_impl(logits, Tensor(), std::move(saved));
}

Tensor cross_entropy(const Tensor& logits, const Indices& targets, const Tensor& mask) {
  check_defined("cross_entropy", "mask", mask);
  if (on_device(logits))
    return cross_entropy_on_device(logits, to_tensor(targets, DType::i32).to(logits.device()), mask,
                                   0);
  check_logits(logits, targets);
  POLYAK_CHECK(mask.shape() == targets.shape, "cross_entropy: mask has shape ", mask.shape(),
               ", expected ", targets.shape, " matching targets");
  check_cpu("cross_entropy", "mask", mask);
  // An integer mask (0/1 ids of the positions that count) is a constant weight.
  const Tensor weights = is_floating(mask.dtype()) ? mask : mask.to(logits.dtype());
  check_same_dtype("cross_entropy", "logits", logits, "mask", weights);
  const int64_t V = logits.size(-1);
  auto saved = std::make_shared<Saved>();
  saved->targets = targets.values;
  saved->weight = weights.to_vector();
  for (int64_t i = 0; i < targets.numel(); ++i) {
    const double w = saved->weight[static_cast<size_t>(i)];
    POLYAK_CHECK(w >= 0 && std::isfinite(w), "cross_entropy: mask has value ", w, " at index ", i,
                 ", expected finite weights ≥ 0");
    if (w == 0) continue;  // a masked-out row may hold any target (padding)
    const int32_t t = targets[i];
    POLYAK_CHECK(t >= 0 && t < V, "cross_entropy: targets has value ", t, " at index ", i,
                 ", expected values in [0, ", V, ") (logits has ", V,
                 " classes) where mask is non-zero");
  }
  return cross_entropy_impl(logits, weights, std::move(saved));
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index) {
  if (on_device(logits)) return cross_entropy_on_device(logits, targets, Tensor(), ignore_index);
  return cross_entropy(logits, to_indices("cross_entropy", "targets", targets), ignore_index);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& mask) {
  if (on_device(logits)) {
    check_defined("cross_entropy", "mask", mask);
    return cross_entropy_on_device(logits, targets, mask, 0);
  }
  return cross_entropy(logits, to_indices("cross_entropy", "targets", targets), mask);
}

}  // namespace polyak
