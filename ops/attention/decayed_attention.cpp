// Decayed ("retention") causal linear attention and key-weighted causal linear attention
// (docs/math.md §3 and §2): the ops and their backward nodes. The single-state sweeps, their
// formulas and their gradients are in decayed_attention_isa.cpp, compiled once per ISA.
//
// Saved for backward: q, k, v and den [B,H,N]. Scratch: dden [B,H,N].
#include <cmath>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/ops/attention/attention_checks.h"
#include "polyak/ops/attention/causal_sweeps.h"
#include "polyak/ops/attention/momentum_attention.h"

namespace polyak {
namespace {

using detail::AttentionDims;

// ---- the op ------------------------------------------------------------------------------

// `weights` (kWeighted only) has N entries, cast to T per dtype.
template <bool kWeighted, bool kNormalize>
Tensor sweep_op(const char* node, const AttentionDims& d, const Tensor& q, const Tensor& k,
                const Tensor& v, double decay, const std::vector<double>& weights, double eps) {
  const DType dtype = q.dtype();
  Tensor y = Tensor::empty({d.B, d.H, d.N, d.Dv}, dtype);
  Tensor den = kNormalize ? Tensor::empty({d.B, d.H, d.N}, dtype) : Tensor();
  dispatch(dtype, [&]<class T>() {
    const std::vector<T> w(weights.begin(), weights.end());
    with_active_isa([&](auto isa) {
      detail::decayed_sweep_forward<T, kWeighted, kNormalize>(
          isa, d, q.data<T>(), k.data<T>(), v.data<T>(), y.data<T>(),
          kNormalize ? den.data<T>() : nullptr, static_cast<T>(decay),
          kWeighted ? w.data() : nullptr, static_cast<T>(eps));
    });
  });

  record(y, node, {q, k, v},
         [q, k, v, den, d, weights, decay](const Tensor& dy) -> std::vector<Tensor> {
           const DType dt = q.dtype();
           Tensor dq = Tensor::empty(q.shape(), dt);
           Tensor dk = Tensor::empty(k.shape(), dt);
           Tensor dv = Tensor::empty(v.shape(), dt);
           Tensor dden = kNormalize ? Tensor::empty({d.B, d.H, d.N}, dt) : Tensor();
           dispatch(dt, [&]<class T>() {
             const std::vector<T> w(weights.begin(), weights.end());
             with_active_isa([&](auto isa) {
               detail::decayed_sweep_backward<T, kWeighted, kNormalize>(
                   isa, d, q.data<T>(), k.data<T>(), v.data<T>(),
                   kNormalize ? den.data<T>() : nullptr, dy.data<T>(), dq.data<T>(), dk.data<T>(),
                   dv.data<T>(), kNormalize ? dden.data<T>() : nullptr, static_cast<T>(decay),
                   kWeighted ? w.data() : nullptr);
             });
           });
           return {dq, dk, dv};
         });
  return y;
}

void check_decay(const char* fn, double decay) {
  POLYAK_CHECK(std::isfinite(decay) && decay >= 0 && decay <= 1, fn, ": decay = ", decay,
               ", expected in [0, 1]");
}

}  // namespace

namespace detail {

Tensor causal_key_weighted_attention(const char* node, const AttentionDims& d, const Tensor& q,
                                     const Tensor& k, const Tensor& v,
                                     const std::vector<double>& weights, double eps) {
  return sweep_op<true, true>(node, d, q, k, v, 1.0, weights, eps);
}

}  // namespace detail

Tensor decayed_causal_dot_product(const Tensor& q, const Tensor& k, const Tensor& v, double decay) {
  constexpr const char* fn = "decayed_causal_dot_product";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/true);
  check_decay(fn, decay);
  return sweep_op<false, false>("DecayedCausalDotProductBackward", d, q, k, v, decay, {}, 0.0);
}

Tensor decayed_causal_linear_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                       double decay, double eps) {
  constexpr const char* fn = "decayed_causal_linear_attention";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/true);
  check_decay(fn, decay);
  POLYAK_CHECK(std::isfinite(eps) && eps >= 0, fn, ": eps is ", eps,
               ", expected a finite value >= 0");
  return sweep_op<false, true>("DecayedCausalLinearAttentionBackward", d, q, k, v, decay, {}, eps);
}

}  // namespace polyak
