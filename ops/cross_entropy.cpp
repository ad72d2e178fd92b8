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
#include <Eigen/Core>
#include <cmath>
#include <memory>
#include <vector>

#include "polyak/core/autograd.h"
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

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Indices& targets, int32_t ignore_index) {
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
  check_logits(logits, targets);
  check_defined("cross_entropy", "mask", mask);
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
  return cross_entropy(logits, to_indices("cross_entropy", "targets", targets), ignore_index);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& mask) {
  return cross_entropy(logits, to_indices("cross_entropy", "targets", targets), mask);
}

}  // namespace polyak
