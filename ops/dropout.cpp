// dropout: y = x ⊙ m / (1 − p),  m_i ~ Bernoulli(1 − p), when training; y = x otherwise.
//
//   dx = dy ⊙ m / (1 − p)                     [same shape as x]
//
// The mask comes from the counter-based generator: element i keeps when word i mod 4 of
// block (first + i / 4) is at least ⌊p·2³²⌋ (the uniform draw exceeds p). Blocks are
// independent, so the mask is drawn in parallel and the same (seed, offset) always gives
// the same mask. The node keeps no mask: the backward regenerates it from (seed, first)
// with the vectorised Philox, which is cheaper than storing and reading one. The mask loop
// is in dropout_isa.cpp, compiled once per ISA.
#include <algorithm>
#include <cmath>

#include "polyak/core/autograd.h"
#include "polyak/ops/dropout_kernels.h"
#include "polyak/ops/nn_ops.h"

namespace polyak {

namespace {
// dst[i] = src[i] · scale where word i of the stream starting at block `first` is
// ≥ threshold, else 0, through the loop compiled for the ISA in use. Forward and backward
// both call it.
void apply_mask(const Tensor& src, Tensor& dst, const Generator& gen, uint64_t first,
                uint32_t threshold, double scale) {
  dispatch(src.dtype(), [&]<class T>() {
    with_active_isa([&](auto isa) {
      detail::dropout_apply<T>(isa, src.data<T>(), dst.data<T>(), src.numel(), gen.seed(), first,
                               threshold, static_cast<T>(scale));
    });
  });
}
}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_defined("dropout", "x", x);
  POLYAK_CHECK(p >= 0 && p < 1, "dropout: p is ", p, ", expected p in [0, 1)");
  if (!training || p == 0) return x;
  check_cpu("dropout", "x", x);

  const int64_t n = x.numel(), blocks = (n + 3) / 4;
  const uint64_t first = gen.advance(static_cast<uint64_t>(blocks));
  // uint_to_unit(w) = (w + 1)/2³² > p  ⇔  w ≥ ⌊p·2³²⌋ for integer w.
  const uint32_t threshold = static_cast<uint32_t>(std::floor(std::ldexp(p, 32)));
  const double scale = 1 / (1 - p);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  apply_mask(x, out, gen, first, threshold, scale);

  // The mask is not saved: the backward draws the same counter-based words again, which
  // costs less than writing and reading a mask.
  record(out, "DropoutBackward", {x},
         [gen, first, threshold, scale](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = Tensor::empty(g.shape(), g.dtype());
           apply_mask(g, dx, gen, first, threshold, scale);
           return {dx};
         });
  return out;
}

}  // namespace polyak
