// dropout: y = x ⊙ m / (1 − p),  m_i ~ Bernoulli(1 − p), when training; y = x otherwise.
//
//   dx = dy ⊙ m / (1 − p)                     [same shape as x]
//
// The mask comes from the counter-based generator: element i keeps when the uniform drawn
// from word i mod 4 of block (first + i / 4) exceeds p. Blocks are independent, so the mask
// is generated in parallel, and the backward regenerates it from (seed, first) instead of
// keeping an x-sized mask.
#include "core/autograd.h"
#include "core/threads.h"
#include "ops/nn_ops.h"

namespace polyak {
namespace {

// dst = src ⊙ mask · scale, with the mask of blocks [first, first + ⌈n/4⌉) of `seed`.
template <class T>
void apply_mask(const T* src, T* dst, int64_t n, uint64_t seed, uint64_t first, double p, T scale) {
  const Generator gen(seed);
  const int64_t blocks = (n + 3) / 4;
  parallel_for(blocks, 64, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const std::array<uint32_t, 4> w = gen.block(first + static_cast<uint64_t>(b));
      const int64_t i0 = 4 * b;
      for (int64_t j = 0; j < 4 && i0 + j < n; ++j)
        dst[i0 + j] = uint_to_unit(w[static_cast<size_t>(j)]) > p ? src[i0 + j] * scale : T(0);
    }
  });
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_defined("dropout", "x", x);
  POLYAK_CHECK(p >= 0 && p < 1, "dropout: p is ", p, ", expected p in [0, 1)");
  if (!training || p == 0) return x;
  check_cpu("dropout", "x", x);

  const int64_t n = x.numel();
  const uint64_t seed = gen.seed();
  const uint64_t first = gen.advance(static_cast<uint64_t>((n + 3) / 4));
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    apply_mask<T>(x.data<T>(), out.data<T>(), n, seed, first, p, static_cast<T>(1 / (1 - p)));
  });

  record(out, "DropoutBackward", {x}, [n, seed, first, p](const Tensor& g) -> std::vector<Tensor> {
    Tensor dx = Tensor::empty(g.shape(), g.dtype());
    dispatch(g.dtype(), [&]<class T>() {
      apply_mask<T>(g.data<T>(), dx.data<T>(), n, seed, first, p, static_cast<T>(1 / (1 - p)));
    });
    return {dx};
  });
  return out;
}

}  // namespace polyak
