// dropout: y = x ⊙ m / (1 − p),  m_i ~ Bernoulli(1 − p), when training; y = x otherwise.
//
//   dx = dy ⊙ m / (1 − p)                     [same shape as x]
//
// The mask comes from the counter-based generator: element i keeps when word i mod 4 of
// block (first + i / 4) is at least ⌊p·2³²⌋ (the uniform draw exceeds p). Blocks are
// independent, so the mask is drawn in parallel and the same (seed, offset) always gives
// the same mask. The node keeps no mask: the backward regenerates it from (seed, first)
// with the vectorised Philox, which is cheaper than storing and reading one.
#include <algorithm>
#include <cmath>

#include "polyak/core/autograd.h"
#include "polyak/core/threads.h"
#include "polyak/ops/nn_ops.h"

namespace polyak {

namespace {
// dst[i] = src[i] · scale where word i of the stream starting at block `first` is
// ≥ threshold, else 0. Forward and backward both call it.
void apply_mask(const Tensor& src_t, Tensor& dst_t, const Generator& gen, uint64_t first,
                uint32_t threshold, double scale) {
  const int64_t n = src_t.numel(), blocks = (n + 3) / 4;
  constexpr int64_t kChunk = 64;  // blocks per draw: 256 words on the stack
  dispatch(src_t.dtype(), [&]<class T>() {
    const T* src = src_t.data<T>();
    T* dst = dst_t.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for((blocks + kChunk - 1) / kChunk, 4 * kChunk, [&](int64_t begin, int64_t end) {
      alignas(32) uint32_t words[4 * kChunk];
      for (int64_t c = begin; c < end; ++c) {
        const int64_t b0 = c * kChunk, nb = std::min(kChunk, blocks - b0);
        gen.fill_blocks(first + static_cast<uint64_t>(b0), nb, words);
        const int64_t i0 = 4 * b0, count = std::min(4 * nb, n - i0);
        // Unsigned w ≥ threshold as a signed compare of both with the top bit flipped: AVX2
        // compares signed lanes only, and this keeps the loop vectorised.
        const int32_t t = static_cast<int32_t>(threshold ^ 0x80000000u);
        for (int64_t i = 0; i < count; ++i) {
          const int32_t w = static_cast<int32_t>(words[i] ^ 0x80000000u);
          const T factor = w >= t ? s : T(0);
          dst[i0 + i] = src[i0 + i] * factor;
        }
      }
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
