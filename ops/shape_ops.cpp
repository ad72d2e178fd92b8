// Shape ops: they move elements, never combine them, so each backward moves g back.
//
//   permute      y = x with axes reordered, y.shape[j] = x.shape[dims[j]]
//                dx = permute(g, dims⁻¹)
//   transpose    permute swapping two axes; dx = transpose(g, same axes)
//   slice        y = x[..., begin:end, ...] along `axis`
//                dx = zeros(x.shape) with g written into [begin, end)
//                (a view along axis 0, through Tensor::narrow0)
//   concat       y = [x₀ | x₁ | …] along `axis`;  dxᵢ = slice of g at xᵢ's offset
//   split        one slice per piece; the pieces' gradients are summed by the engine
//   split_heads  [B, N, H·D] → [B, H, N, D]: y[b,h,n,d] = x[b,n,h·D+d];  dx = merge_heads(g)
//   merge_heads  [B, H, N, D] → [B, N, H·D]: the inverse;  dx = split_heads(g, H)
//
// Legend: B batch, N sequence length, H heads, D width per head.
// Everything except reshape and axis-0 slices makes a contiguous copy. permute, slice and
// concat take every dtype, integer ids as well as values; on a device (the shape kernels of
// cuda/kernels/shape.h) f32 values and i32/i64 ids.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/error.h"
#include "polyak/core/kernels_shape.h"
#include "polyak/core/threads.h"
#include "polyak/ops/attention/sweep.h"
#include "polyak/ops/shape_ops.h"

namespace polyak {
namespace {

bool needs_grad(const Tensor& t) {
  return GradMode::enabled() && t.requires_grad();
}

std::string str(const std::vector<int64_t>& v) {
  return Shape(v).str();
}

// ---- permute --------------------------------------------------------------------------

// y = x permuted. Output axes are coalesced where they stay adjacent and in order in x;
// then either the innermost output axis is contiguous in x (row copies), or the copy is a
// batch of 2-D transposes done in cache-sized tiles.
template <class T>
void permute_cpu(const T* x, const Shape& xs, const std::vector<int64_t>& perm, T* y) {
  const int64_t rank = xs.rank();
  std::vector<int64_t> in_stride(static_cast<size_t>(rank));
  for (int64_t a = rank - 1, s = 1; a >= 0; --a) {
    in_stride[a] = s;
    s *= xs[a];
  }
  std::vector<int64_t> dims, src;  // coalesced output extents, their strides in x
  for (int64_t j = 0; j < rank; ++j) {
    int64_t e = xs[perm[j]], s = in_stride[perm[j]];
    if (e == 1) continue;
    if (!dims.empty() && src.back() == s * e) {
      dims.back() *= e;
      src.back() = s;
    } else {
      dims.push_back(e);
      src.push_back(s);
    }
  }
  const int64_t numel = xs.numel();
  if (numel == 0) return;
  const int64_t r = static_cast<int64_t>(dims.size());
  if (r <= 1) {
    std::memcpy(y, x, static_cast<size_t>(numel) * sizeof(T));
    return;
  }
  std::vector<int64_t> dst(static_cast<size_t>(r));
  for (int64_t j = r - 1, s = 1; j >= 0; --j) {
    dst[j] = s;
    s *= dims[j];
  }

  if (src.back() == 1) {
    const int64_t n = dims.back(), rows = numel / n;
    parallel_for(rows, n, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        int64_t off = 0;
        for (int64_t j = r - 2, rem = row; j >= 0; --j) {
          off += (rem % dims[j]) * src[j];
          rem /= dims[j];
        }
        std::memcpy(y + row * n, x + off, static_cast<size_t>(n) * sizeof(T));
      }
    });
    return;
  }

  // The axis contiguous in x (stride 1) becomes axis k of y; tiles of [rows of k, cols of
  // the last axis] are read along x's rows and written along y's.
  const int64_t k = std::find(src.begin(), src.end(), 1) - src.begin();
  const int64_t rows = dims[k], cols = dims.back();
  const int64_t col_src = src.back(), row_dst = dst[k];
  const int64_t batches = numel / (rows * cols);
  constexpr int64_t kTile = 32;
  auto tile = [&](int64_t bx, int64_t by, int64_t i0, int64_t i1) {
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t c1 = std::min(cols, c0 + kTile);
      for (int64_t i = i0; i < i1; ++i) {
        const T* s = x + bx + i;
        T* d = y + by + i * row_dst;
        for (int64_t c = c0; c < c1; ++c) d[c] = s[c * col_src];
      }
    }
  };
  auto batch_offsets = [&](int64_t b, int64_t& bx, int64_t& by) {
    bx = by = 0;
    for (int64_t j = r - 2; j >= 0; --j) {
      if (j == k) continue;
      bx += (b % dims[j]) * src[j];
      by += (b % dims[j]) * dst[j];
      b /= dims[j];
    }
  };
  if (batches >= 2 * num_threads()) {
    parallel_for(batches, rows * cols, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        int64_t bx, by;
        batch_offsets(b, bx, by);
        for (int64_t i0 = 0; i0 < rows; i0 += kTile) tile(bx, by, i0, std::min(rows, i0 + kTile));
      }
    });
  } else {
    for (int64_t b = 0; b < batches; ++b) {
      int64_t bx, by;
      batch_offsets(b, bx, by);
      const int64_t strips = (rows + kTile - 1) / kTile;
      parallel_for(strips, kTile * cols, [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s) tile(bx, by, s * kTile, std::min(rows, (s + 1) * kTile));
      });
    }
  }
}

// ---- row-block copies (slice, concat, split) ---------------------------------------------

// For o < outer: dst[o·dst_row + dst_off + j] = src[o·src_row + src_off + j], j < len.
template <class T>
void copy_blocks(const T* src, int64_t src_row, int64_t src_off, T* dst, int64_t dst_row,
                 int64_t dst_off, int64_t outer, int64_t len) {
  if (len == 0) return;
  parallel_for(outer, len, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      std::memcpy(dst + o * dst_row + dst_off, src + o * src_row + src_off,
                  static_cast<size_t>(len) * sizeof(T));
  });
}

// The shape group's kernel `entry` for op `fn` on t's device: f32 values, or i32/i64 ids (the
// copies move 4- and 8-byte elements without reading them; f64 stays off devices).
template <class Fn>
Fn copy_kernel(const char* fn, const char* arg, const Tensor& t, Fn ShapeKernels::*entry) {
  if (t.dtype() == DType::i32 || t.dtype() == DType::i64)
    return device_kernel(fn, t.device(), &DeviceBackend::shape, entry);
  return device_kernel(fn, arg, t, &DeviceBackend::shape, entry);
}

// copy_blocks of src into dst (one device), on the CPU or through the device's kernel for op
// `fn`, argument `arg`.
void copy_blocks_on(const char* fn, const char* arg, const Tensor& src, int64_t src_row,
                    int64_t src_off, Tensor& dst, int64_t dst_row, int64_t dst_off, int64_t outer,
                    int64_t len) {
  if (!src.device().is_cpu()) {
    copy_kernel(fn, arg, src, &ShapeKernels::copy_blocks)(src, src_row, src_off, dst, dst_row,
                                                          dst_off, outer, len);
    return;
  }
  dispatch_any(src.dtype(), [&]<class T>() {  // ids move as well as values
    copy_blocks(src.data<T>(), src_row, src_off, dst.data<T>(), dst_row, dst_off, outer, len);
  });
}

// [begin, end) of `axis` as a copy (inputs already validated, axis > 0), for op `fn`.
Tensor slice_copy(const char* fn, const Tensor& x, int64_t axis, int64_t begin, int64_t end) {
  const Shape& s = x.shape();
  const int64_t outer = s.numel(0, axis), inner = s.numel(axis + 1, s.rank());
  Shape ys = s;
  ys[axis] = end - begin;
  Tensor y = Tensor::empty(ys, x.dtype(), x.device());
  copy_blocks_on(fn, "x", x, s[axis] * inner, begin * inner, y, (end - begin) * inner, 0, outer,
                 (end - begin) * inner);
  return y;
}

// dx = zeros(shape) with g written at [begin, end) of `axis`.
Tensor unslice(const char* fn, const Tensor& g, const Shape& shape, int64_t axis, int64_t begin) {
  const int64_t outer = shape.numel(0, axis), inner = shape.numel(axis + 1, shape.rank());
  const int64_t len = g.shape()[axis];
  Tensor dx = Tensor::zeros(shape, g.dtype(), g.device());
  copy_blocks_on(fn, "gradient", g, len * inner, 0, dx, shape[axis] * inner, begin * inner, outer,
                 len * inner);
  return dx;
}

// A validated slice for op `fn`, recorded under `node`.
Tensor slice_impl(const char* fn, const Tensor& x, int64_t axis, int64_t begin, int64_t end,
                  const char* node) {
  if (axis == 0) return x.narrow0(begin, end);
  Tensor y = slice_copy(fn, x, axis, begin, end);
  if (needs_grad(x)) {
    record(y, node, {x},
           [fn, shape = x.shape(), axis, begin](const Tensor& g) -> std::vector<Tensor> {
             return {unslice(fn, g, shape, axis, begin)};
           });
  }
  return y;
}

// ---- heads ----------------------------------------------------------------------------------

// [B, N, H, D] ↔ [B, H, N, D]: y[b,h,n,:] = x[b,n,h,:] (to_heads) or the reverse. kD > 0
// fixes the head width, so that each row's copy is a few inline vector moves rather than a
// library call per row (rows are short: D = 32 is 128 bytes).
template <int kD, class T>
void move_heads_as(const T* x, T* y, int64_t B, int64_t N, int64_t H, int64_t d_runtime,
                   bool to_heads) {
  const int64_t D = kD > 0 ? kD : d_runtime;
  const size_t bytes = static_cast<size_t>(D) * sizeof(T);  // kD · sizeof(T), a constant
  parallel_for(B * H, N * D, [&](int64_t r0, int64_t r1) {
    for (int64_t bh = r0; bh < r1; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t heads_at = (bh * N + n) * D, tokens_at = ((b * N + n) * H + h) * D;
        const T* src = to_heads ? x + tokens_at : x + heads_at;
        T* dst = to_heads ? y + heads_at : y + tokens_at;
        std::memcpy(dst, src, bytes);
      }
    }
  });
}

template <class T>
void move_heads(const T* x, T* y, int64_t B, int64_t N, int64_t H, int64_t D, bool to_heads) {
  detail::with_fixed_dv(D, [&]<int kD>() { move_heads_as<kD>(x, y, B, N, H, D, to_heads); });
}

// y = x with axes 1 and 2 of [B, N, H, D] swapped (either way), for op `fn`: on the CPU, or
// as a permute through the device's kernel.
void move_heads_on(const char* fn, const Tensor& x, Tensor& y, int64_t B, int64_t N, int64_t H,
                   int64_t D, bool to_heads) {
  if (!x.device().is_cpu()) {
    const int64_t perm[4] = {0, 2, 1, 3};
    const Tensor x4 = x.detach().reshape(to_heads ? Shape{B, N, H, D} : Shape{B, H, N, D});
    device_kernel(fn, "x", x, &DeviceBackend::shape, &ShapeKernels::permute)(x4, perm, y);
    return;
  }
  dispatch(x.dtype(),
           [&]<class T>() { move_heads(x.data<T>(), y.data<T>(), B, N, H, D, to_heads); });
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  check_defined("reshape", "x", x);
  return x.reshape(shape);
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  check_defined("permute", "x", x);
  const int64_t rank = x.dim();
  POLYAK_CHECK(static_cast<int64_t>(dims.size()) == rank, "permute: dims ", str(dims), " has ",
               dims.size(), " entries, expected ", rank, " (one per axis of x ", x.shape(), ")");
  std::vector<int64_t> perm(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t j = 0; j < dims.size(); ++j) {
    POLYAK_CHECK(dims[j] >= -rank && dims[j] < rank, "permute: dims ", str(dims), " holds axis ",
                 dims[j], ", expected axes in [", -rank, ", ", rank, ") for x ", x.shape());
    perm[j] = dims[j] < 0 ? dims[j] + rank : dims[j];
    POLYAK_CHECK(!seen[perm[j]], "permute: dims ", str(dims), " repeats axis ", perm[j],
                 ", expected a permutation of the axes of x ", x.shape());
    seen[perm[j]] = true;
  }
  std::vector<int64_t> out_dims(dims.size());
  std::vector<int64_t> inverse(dims.size());
  for (size_t j = 0; j < perm.size(); ++j) {
    out_dims[j] = x.shape()[perm[j]];
    inverse[perm[j]] = static_cast<int64_t>(j);
  }
  Tensor y = Tensor::empty(Shape(out_dims), x.dtype(), x.device());
  if (!x.device().is_cpu()) {
    const auto kernel = copy_kernel("permute", "x", x, &ShapeKernels::permute);
    POLYAK_CHECK(rank <= ShapeKernels::kMaxRank, "permute: x has shape ", x.shape(), " of rank ",
                 rank, ", expected at most ", ShapeKernels::kMaxRank, " axes on ", x.device());
    kernel(x, perm.data(), y);
  } else {
    dispatch_any(x.dtype(),
                 [&]<class T>() { permute_cpu(x.data<T>(), x.shape(), perm, y.data<T>()); });
  }
  if (needs_grad(x)) {
    record(y, "PermuteBackward", {x},
           [inverse](const Tensor& g) -> std::vector<Tensor> { return {permute(g, inverse)}; });
  }
  return y;
}

Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1) {
  check_defined("transpose", "x", x);
  axis0 = normalize_axis("transpose", axis0, x.dim());
  axis1 = normalize_axis("transpose", axis1, x.dim());
  std::vector<int64_t> dims(static_cast<size_t>(x.dim()));
  for (int64_t i = 0; i < x.dim(); ++i) dims[i] = i;
  std::swap(dims[axis0], dims[axis1]);
  return permute(x, dims);
}

Tensor slice(const Tensor& x, int64_t axis, int64_t begin, int64_t end) {
  check_defined("slice", "x", x);
  axis = normalize_axis("slice", axis, x.dim());
  const int64_t extent = x.shape()[axis];
  POLYAK_CHECK(0 <= begin && begin <= end && end <= extent, "slice: begin = ", begin,
               ", end = ", end, " along axis ", axis, " of x ", x.shape(),
               ", expected 0 ≤ begin ≤ end ≤ ", extent);
  return slice_impl("slice", x, axis, begin, end, "SliceBackward");
}

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  POLYAK_CHECK(!xs.empty(), "concat: xs is empty, expected at least one tensor");
  check_defined("concat", "xs[0]", xs[0]);
  const Shape& first = xs[0].shape();
  axis = normalize_axis("concat", axis, first.rank());
  int64_t total = 0;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < xs.size(); ++i) {
    const std::string arg = "xs[" + std::to_string(i) + "]";
    check_defined("concat", arg.c_str(), xs[i]);
    check_same_dtype("concat", "xs[0]", xs[0], arg.c_str(), xs[i]);
    check_same_device("concat", "xs[0]", xs[0], arg.c_str(), xs[i]);
    const Shape& s = xs[i].shape();
    bool match = s.rank() == first.rank();
    for (int64_t a = 0; match && a < s.rank(); ++a) match = a == axis || s[a] == first[a];
    POLYAK_CHECK(match, "concat: ", arg, " has shape ", s, ", expected xs[0]'s shape ", first,
                 " on every axis but ", axis);
    sizes.push_back(s[axis]);
    total += s[axis];
  }
  Shape ys = first;
  ys[axis] = total;
  Tensor y = Tensor::empty(ys, xs[0].dtype(), xs[0].device());
  const int64_t outer = first.numel(0, axis), inner = first.numel(axis + 1, first.rank());
  int64_t at = 0;  // xs[i]'s first index along axis in y
  for (size_t i = 0; i < xs.size(); ++i) {
    copy_blocks_on("concat", "xs[0]", xs[i], sizes[i] * inner, 0, y, total * inner, at * inner,
                   outer, sizes[i] * inner);
    at += sizes[i];
  }
  if (any_requires_grad(xs)) {
    std::vector<bool> wanted;
    for (const Tensor& x : xs) wanted.push_back(x.requires_grad());
    record(y, "ConcatBackward", xs, [sizes, wanted, axis](const Tensor& g) -> std::vector<Tensor> {
      std::vector<Tensor> dxs(sizes.size());
      int64_t offset = 0;
      for (size_t i = 0; i < sizes.size(); ++i) {
        if (wanted[i]) dxs[i] = slice_copy("concat (backward)", g, axis, offset, offset + sizes[i]);
        offset += sizes[i];
      }
      return dxs;
    });
  }
  return y;
}

std::vector<Tensor> split(const Tensor& x, int64_t axis, const std::vector<int64_t>& sizes) {
  check_defined("split", "x", x);
  axis = normalize_axis("split", axis, x.dim());
  const int64_t extent = x.shape()[axis];
  int64_t total = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    POLYAK_CHECK(sizes[i] >= 0, "split: sizes ", str(sizes), " has sizes[", i, "] = ", sizes[i],
                 ", expected sizes ≥ 0");
    total += sizes[i];
  }
  POLYAK_CHECK(total == extent, "split: sizes ", str(sizes), " sum to ", total,
               ", expected the extent ", extent, " of axis ", axis, " of x ", x.shape());
  std::vector<Tensor> pieces;
  int64_t offset = 0;
  for (int64_t size : sizes) {
    pieces.push_back(slice_impl("split", x, axis, offset, offset + size, "SplitBackward"));
    offset += size;
  }
  return pieces;
}

Tensor split_heads(const Tensor& x, int64_t heads) {
  check_rank("split_heads", "x", x, 3, "[B, N, H·D]");
  const int64_t B = x.size(0), N = x.size(1), W = x.size(2);
  POLYAK_CHECK(heads >= 1, "split_heads: heads = ", heads, ", expected ≥ 1");
  POLYAK_CHECK(W % heads == 0, "split_heads: x has shape ", x.shape(), " whose width ", W,
               " is not divisible by heads = ", heads, ", expected [B, N, H·D]");
  const int64_t D = W / heads;
  Tensor y = Tensor::empty({B, heads, N, D}, x.dtype(), x.device());
  move_heads_on("split_heads", x, y, B, N, heads, D, true);
  if (needs_grad(x)) {
    record(y, "SplitHeadsBackward", {x},
           [](const Tensor& g) -> std::vector<Tensor> { return {merge_heads(g)}; });
  }
  return y;
}

Tensor merge_heads(const Tensor& x) {
  check_rank("merge_heads", "x", x, 4, "[B, H, N, D]");
  const int64_t B = x.size(0), H = x.size(1), N = x.size(2), D = x.size(3);
  Tensor y = Tensor::empty({B, N, H * D}, x.dtype(), x.device());
  move_heads_on("merge_heads", x, y, B, N, H, D, false);
  if (needs_grad(x)) {
    record(y, "MergeHeadsBackward", {x},
           [H](const Tensor& g) -> std::vector<Tensor> { return {split_heads(g, H)}; });
  }
  return y;
}

}  // namespace polyak
