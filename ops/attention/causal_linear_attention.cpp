// Causal linear attention and the causal dot product (docs/math.md §2; Katharopoulos et al.
// 2020, eq. 7–8): the ops and their backward nodes. The two sweeps, their formulas and their
// O(N·D) memory are in causal_linear_attention_isa.cpp, compiled once per ISA.
//
// Saved for backward: q, k, v and den (causal_linear_attention only). Scratch during
// backward: dden [B,H,N].
#include <cmath>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/ops/attention/attention_checks.h"
#include "polyak/ops/attention/causal_sweeps.h"
#include "polyak/ops/attention/linear_attention.h"

namespace polyak {
namespace {

using detail::AttentionDims;

// ---- the ops ---------------------------------------------------------------------------

template <bool kNormalize>
Tensor causal_attention_op(const char* fn, const char* node, const Tensor& q, const Tensor& k,
                           const Tensor& v, double eps) {
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/true);
  POLYAK_CHECK(std::isfinite(eps) && eps >= 0, fn, ": eps is ", eps,
               ", expected a finite value >= 0");
  const DType dtype = q.dtype();
  Tensor y = Tensor::empty({d.B, d.H, d.N, d.Dv}, dtype);
  Tensor den = kNormalize ? Tensor::empty({d.B, d.H, d.N}, dtype) : Tensor();
  dispatch(dtype, [&]<class T>() {
    with_active_isa([&](auto isa) {
      detail::causal_linear_sweep_forward<T, kNormalize>(
          isa, d, q.data<T>(), k.data<T>(), v.data<T>(), y.data<T>(),
          kNormalize ? den.data<T>() : nullptr, static_cast<T>(eps));
    });
  });

  record(y, node, {q, k, v}, [q, k, v, den, d](const Tensor& dy) -> std::vector<Tensor> {
    const DType dt = q.dtype();
    Tensor dq = Tensor::empty(q.shape(), dt);
    Tensor dk = Tensor::empty(k.shape(), dt);
    Tensor dv = Tensor::empty(v.shape(), dt);
    Tensor dden = kNormalize ? Tensor::empty({d.B, d.H, d.N}, dt) : Tensor();
    dispatch(dt, [&]<class T>() {
      with_active_isa([&](auto isa) {
        detail::causal_linear_sweep_backward<T, kNormalize>(
            isa, d, q.data<T>(), k.data<T>(), v.data<T>(), kNormalize ? den.data<T>() : nullptr,
            dy.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>(),
            kNormalize ? dden.data<T>() : nullptr);
      });
    });
    return {dq, dk, dv};
  });
  return y;
}

}  // namespace

Tensor causal_linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, double eps) {
  return causal_attention_op<true>("causal_linear_attention", "CausalLinearAttentionBackward", q, k,
                                   v, eps);
}

Tensor causal_dot_product(const Tensor& q, const Tensor& k, const Tensor& v) {
  return causal_attention_op<false>("causal_dot_product", "CausalDotProductBackward", q, k, v, 0.0);
}

}  // namespace polyak
