// Dropout's mask loop and relu_dropout's backward (ops/dropout.cpp has the ops, their rules
// and their backward nodes), compiled once per ISA: the Philox words come from this ISA's
// block filler, and the compare and multiply run in this ISA's vectors.
#include <algorithm>

#include "polyak/core/philox.h"
#include "polyak/core/threads.h"
#include "polyak/ops/dropout_kernels.h"

namespace polyak::detail {

namespace {
// Philox's words read as 16-bit halves, element i taking half i (GCC/Clang's may_alias
// makes the view legal).
typedef uint16_t Half __attribute__((may_alias));

// dst[i] = f(src[i]) · scale where half i ≥ t, else 0; f is relu when kRelu; with kAdd,
// plus addend[i]. Locals and restrict pointers, so that the compiler vectorises it.
template <bool kRelu, bool kAdd, class T>
void mask_chunk(const T* __restrict src, T* __restrict dst, const T* __restrict addend,
                const Half* __restrict halves, int64_t count, int32_t t, T scale) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) {
    const int32_t h = halves[i];
    T v = src[i];
    if constexpr (kRelu) v = v < T(0) ? T(0) : v;  // relu's select: NaN stays NaN
    v *= h >= t ? scale : T(0);
    if constexpr (kAdd) v += addend[i];
    dst[i] = v;
  }
}
}  // namespace

template <class T>
void dropout_apply(POLYAK_KERNEL_ISA_TAG, const T* src, T* dst, int64_t n, uint64_t seed,
                   uint64_t first, uint32_t threshold, T scale, bool relu, const T* addend) {
  constexpr int64_t kPerBlock = 8;  // four 32-bit words, eight halves
  const int64_t blocks = (n + kPerBlock - 1) / kPerBlock;
  constexpr int64_t kChunk = 64;                      // blocks per draw: 256 words on the stack
  const int32_t t = static_cast<int32_t>(threshold);  // < 2¹⁶
  parallel_for((blocks + kChunk - 1) / kChunk, kPerBlock * kChunk, [=](int64_t begin, int64_t end) {
    alignas(64) uint32_t words[4 * kChunk];
    const Half* halves = reinterpret_cast<const Half*>(words);
    for (int64_t c = begin; c < end; ++c) {
      const int64_t b0 = c * kChunk, nb = std::min(kChunk, blocks - b0);
      philox_fill(POLYAK_KERNEL_ISA_TAG{}, seed, first + static_cast<uint64_t>(b0), nb, words);
      const int64_t i0 = kPerBlock * b0, count = std::min(kPerBlock * nb, n - i0);
      const T* add = addend ? addend + i0 : nullptr;
      if (relu)
        mask_chunk<true, false>(src + i0, dst + i0, add, halves, count, t, scale);
      else if (addend)
        mask_chunk<false, true>(src + i0, dst + i0, add, halves, count, t, scale);
      else
        mask_chunk<false, false>(src + i0, dst + i0, add, halves, count, t, scale);
    }
  });
}

template <class T>
void relu_dropout_backward(POLYAK_KERNEL_ISA_TAG, const T* y, const T* g, T* dx, int64_t n,
                           T scale) {
  parallel_for(n, 1, [=](int64_t begin, int64_t end) {
    const T* __restrict py = y;
    const T* __restrict pg = g;
    T* __restrict pdx = dx;
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const T kept = pg[i] * scale;  // both sides computed: a blend, not a branch
      pdx[i] = py[i] > T(0) ? kept : T(0);
    }
  });
}

template void dropout_apply<float>(POLYAK_KERNEL_ISA_TAG, const float*, float*, int64_t, uint64_t,
                                   uint64_t, uint32_t, float, bool, const float*);
template void dropout_apply<double>(POLYAK_KERNEL_ISA_TAG, const double*, double*, int64_t,
                                    uint64_t, uint64_t, uint32_t, double, bool, const double*);
template void relu_dropout_backward<float>(POLYAK_KERNEL_ISA_TAG, const float*, const float*,
                                           float*, int64_t, float);
template void relu_dropout_backward<double>(POLYAK_KERNEL_ISA_TAG, const double*, const double*,
                                            double*, int64_t, double);

}  // namespace polyak::detail
