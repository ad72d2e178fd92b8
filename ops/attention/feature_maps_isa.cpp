// The elu + 1 feature map's loops (feature_maps.cpp has the ops and their formulas),
// compiled once per ISA: Eigen's packet exp then runs in the ISA's widest vectors.
//
//   y = e^min(x,0) + max(x,0),   dx = dy ⊙ e^min(x,0)
//
// The heads form takes x [B, N, H·D] as the projections make it and writes y [B, H, N, D]:
// each token's row of H·D maps in one pass into a block in L1, whose D-wide pieces are then
// copied to their heads (the backward gathers dy's pieces into the block first).
#include "polyak/ops/eigen_isa.h"
// (first: it renames Eigen for this compilation)
#include <cstring>
#include <memory>
#include <vector>

#include "polyak/core/threads.h"
#include "polyak/ops/attention/feature_map_kernels.h"
#include "polyak/ops/attention/sweep.h"

namespace polyak::detail {
namespace POLYAK_ISA_NAMESPACE {
namespace {

// Work per element for parallel_for.
constexpr int64_t kCostPerElement = 4;

template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Where piece h of token row `row` (b·N + n) sits in a [B, H, N, D] tensor.
inline int64_t piece_at(int64_t row, int64_t h, int64_t N, int64_t H, int64_t D) {
  return ((row / N * H + h) * N + row % N) * D;
}

// Token row `row`'s block [H·D] to its pieces in `heads` [B, H, N, D] (to_heads), or back.
// D is fixed at kD when kD > 0, so that each piece is a few vector moves.
template <int kD, class T>
void move_pieces(const T* from, T* to, int64_t row, int64_t N, int64_t H, int64_t d_runtime,
                 bool to_heads) {
  const int64_t D = kD > 0 ? kD : d_runtime;
  const size_t bytes = static_cast<size_t>(D) * sizeof(T);  // a constant when kD > 0
  for (int64_t h = 0; h < H; ++h) {
    const int64_t at = piece_at(row, h, N, H, D);
    if (to_heads)
      std::memcpy(to + at, from + h * D, bytes);
    else
      std::memcpy(to + h * D, from + at, bytes);
  }
}

// body(row, block) for every token row of [B, N, H·D], in parallel; `block` holds H·D and
// starts on a 64-byte boundary. (Eigen aligns its vector loop on the destination: a block
// at a varying address would move the elements that take the scalar exp from run to run.)
template <class T, class Body>
void for_token_rows(int64_t B, int64_t N, int64_t H, int64_t D, const Body& body) {
  parallel_for(B * N, H * D * kCostPerElement, [&](int64_t r0, int64_t r1) {
    constexpr size_t kAlign = 64;
    std::vector<T> storage(static_cast<size_t>(H * D) + kAlign / sizeof(T));
    void* start = storage.data();
    size_t room = storage.size() * sizeof(T);
    T* block = static_cast<T*>(std::align(kAlign, sizeof(T) * H * D, start, room));
    for (int64_t row = r0; row < r1; ++row) body(row, block);
  });
}

}  // namespace
}  // namespace POLYAK_ISA_NAMESPACE

template <class T>
void elu_feature_map_heads_forward(POLYAK_KERNEL_ISA_TAG, const T* x, T* y, int64_t B, int64_t N,
                                   int64_t H, int64_t D) {
  using namespace POLYAK_ISA_NAMESPACE;
  const int64_t W = H * D;
  for_token_rows<T>(B, N, H, D, [&](int64_t row, T* block) {
    ConstArrayMap<T> xs(x + row * W, W);
    ArrayMap<T>(block, W) = xs.min(T(0)).exp() + xs.max(T(0));
    with_fixed_dv(D, [&]<int kD>() { move_pieces<kD>(block, y, row, N, H, D, true); });
  });
}

template <class T>
void elu_feature_map_heads_backward(POLYAK_KERNEL_ISA_TAG, const T* x, const T* dy, T* dx,
                                    int64_t B, int64_t N, int64_t H, int64_t D) {
  using namespace POLYAK_ISA_NAMESPACE;
  const int64_t W = H * D;
  for_token_rows<T>(B, N, H, D, [&](int64_t row, T* block) {
    with_fixed_dv(D, [&]<int kD>() { move_pieces<kD>(dy, block, row, N, H, D, false); });
    ConstArrayMap<T> xs(x + row * W, W);
    ArrayMap<T>(dx + row * W, W) = ArrayMap<T>(block, W) * xs.min(T(0)).exp();
  });
}

template <class T>
void elu_feature_map_forward(POLYAK_KERNEL_ISA_TAG, const T* x, T* y, int64_t n) {
  using namespace POLYAK_ISA_NAMESPACE;
  parallel_for(n, kCostPerElement, [&](int64_t begin, int64_t end) {
    ConstArrayMap<T> xs(x + begin, end - begin);
    ArrayMap<T>(y + begin, end - begin) = xs.min(T(0)).exp() + xs.max(T(0));
  });
}

template <class T>
void elu_feature_map_backward(POLYAK_KERNEL_ISA_TAG, const T* x, const T* dy, T* dx, int64_t n) {
  using namespace POLYAK_ISA_NAMESPACE;
  parallel_for(n, kCostPerElement, [&](int64_t begin, int64_t end) {
    ConstArrayMap<T> xs(x + begin, end - begin);
    ConstArrayMap<T> dys(dy + begin, end - begin);
    ArrayMap<T>(dx + begin, end - begin) = dys * xs.min(T(0)).exp();
  });
}

#define POLYAK_INSTANTIATE(T)                                                                    \
  template void elu_feature_map_forward<T>(POLYAK_KERNEL_ISA_TAG, const T*, T*, int64_t);        \
  template void elu_feature_map_backward<T>(POLYAK_KERNEL_ISA_TAG, const T*, const T*, T*,       \
                                            int64_t);                                            \
  template void elu_feature_map_heads_forward<T>(POLYAK_KERNEL_ISA_TAG, const T*, T*, int64_t,   \
                                                 int64_t, int64_t, int64_t);                     \
  template void elu_feature_map_heads_backward<T>(POLYAK_KERNEL_ISA_TAG, const T*, const T*, T*, \
                                                  int64_t, int64_t, int64_t, int64_t);
POLYAK_INSTANTIATE(float)
POLYAK_INSTANTIATE(double)
#undef POLYAK_INSTANTIATE

}  // namespace polyak::detail
