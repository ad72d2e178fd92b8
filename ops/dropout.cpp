// dropout: y = x ⊙ m / (1 − p),  m_i ~ Bernoulli(1 − p), when training; y = x otherwise.
//
//   dx = dy ⊙ m / (1 − p)                     [same shape as x]
//
// The mask comes from the counter-based generator: element i keeps when word i mod 4 of
// block (first + i / 4) is at least ⌊p·2³²⌋ (the uniform draw exceeds p). Blocks are
// independent, so the mask is drawn in parallel and the same (seed, offset) always gives
// the same mask. The node keeps the mask as one byte per element (a quarter of an f32
// activation), so the backward is a multiply rather than a second pass of Philox.
#include <cmath>
#include <memory>
#include <vector>

#include "core/autograd.h"
#include "core/threads.h"
#include "ops/nn_ops.h"

namespace polyak {

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_defined("dropout", "x", x);
  POLYAK_CHECK(p >= 0 && p < 1, "dropout: p is ", p, ", expected p in [0, 1)");
  if (!training || p == 0) return x;
  check_cpu("dropout", "x", x);

  const int64_t n = x.numel(), blocks = (n + 3) / 4;
  const uint64_t first = gen.advance(static_cast<uint64_t>(blocks));
  // uint_to_unit(w) = (w + 1)/2³² > p  ⇔  w ≥ ⌊p·2³²⌋ for integer w.
  const uint64_t threshold = static_cast<uint64_t>(std::floor(std::ldexp(p, 32)));
  const double scale = 1 / (1 - p);
  auto mask = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(n));
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* src = x.data<T>();
    T* dst = out.data<T>();
    uint8_t* m = mask->data();
    const T s = static_cast<T>(scale);
    parallel_for(blocks, 64, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const std::array<uint32_t, 4> w = gen.block(first + static_cast<uint64_t>(b));
        for (int64_t j = 0, i = 4 * b; j < 4 && i < n; ++j, ++i) {
          const bool keep = w[static_cast<size_t>(j)] >= threshold;
          m[i] = keep;
          dst[i] = keep ? src[i] * s : T(0);
        }
      }
    });
  });

  record(out, "DropoutBackward", {x}, [mask, scale](const Tensor& g) -> std::vector<Tensor> {
    Tensor dx = Tensor::empty(g.shape(), g.dtype());
    dispatch(g.dtype(), [&]<class T>() {
      const T* dy = g.data<T>();
      T* d = dx.data<T>();
      const uint8_t* m = mask->data();
      const T s = static_cast<T>(scale);
      parallel_for(g.numel(), 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) d[i] = dy[i] * (s * static_cast<T>(m[i]));
      });
    });
    return {dx};
  });
  return out;
}

}  // namespace polyak
