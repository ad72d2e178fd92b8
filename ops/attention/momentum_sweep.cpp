// Causal momentum attention, exact weighting (momentum transformer eq. 12–13; docs/math.md §3):
// the op and its backward node. The sweeps, their formulas and their speed notes are in
// momentum_sweep_isa.cpp, compiled once per ISA.
//
// Saved for backward: q, k, v, den [B,H,N] and y (without its graph). Scratch: dden [B,H,N].
#include "polyak/core/autograd.h"
#include "polyak/ops/attention/causal_sweeps.h"

namespace polyak::detail {

Tensor causal_momentum_sweep(const AttentionDims& d, const Tensor& q, const Tensor& k,
                             const Tensor& v, double beta, double gamma, double eps) {
  const DType dtype = q.dtype();
  Tensor y = Tensor::empty({d.B, d.H, d.N, d.Dv}, dtype);
  Tensor den = Tensor::empty({d.B, d.H, d.N}, dtype);
  dispatch(dtype, [&]<class T>() {
    with_active_isa([&](auto isa) {
      momentum_sweep_forward<T>(isa, d, q.data<T>(), k.data<T>(), v.data<T>(), y.data<T>(),
                                den.data<T>(), beta, gamma, eps);
    });
  });

  Tensor y_saved = y.detach();  // the node keeps the output without its graph
  record(y, "CausalMomentumAttentionBackward", {q, k, v},
         [q, k, v, y_saved, den, d, beta, gamma](const Tensor& dy) -> std::vector<Tensor> {
           const DType dt = q.dtype();
           Tensor dq = Tensor::empty(q.shape(), dt);
           Tensor dk = Tensor::empty(k.shape(), dt);
           Tensor dv = Tensor::empty(v.shape(), dt);
           Tensor dden = Tensor::empty({d.B, d.H, d.N}, dt);
           dispatch(dt, [&]<class T>() {
             with_active_isa([&](auto isa) {
               momentum_sweep_backward<T>(isa, d, q.data<T>(), k.data<T>(), v.data<T>(),
                                          y_saved.data<T>(), den.data<T>(), dy.data<T>(),
                                          dq.data<T>(), dk.data<T>(), dv.data<T>(), dden.data<T>(),
                                          beta, gamma);
             });
           });
           return {dq, dk, dv};
         });
  return y;
}

}  // namespace polyak::detail
