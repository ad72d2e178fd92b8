// Broadcasting binary arithmetic, its scalar forms, and sum_to (the backward of broadcasting).
//
//   out = a ∘ b with NumPy broadcasting: shapes align from the right, extents equal or 1.
//   Let Σ↓s denote sum_to(·, s): summing over the axes that broadcasting expanded.
//
//   add   out = a + b    da = Σ↓a(g)            db = Σ↓b(g)
//   sub   out = a − b    da = Σ↓a(g)            db = −Σ↓b(g)
//   mul   out = a · b    da = Σ↓a(g · b)        db = Σ↓b(g · a)
//   div   out = a / b    da = Σ↓a(g / b)        db = −Σ↓b(g / b · out)       (a/b² = out/b)
//   scalar forms (s a double, no gradient):
//   a + s  da = g;  a · s  da = g · s;  s − b  db = −g;  s / b  db = −g · out / b;  −a  da = −g
//
//   sum_to(g, s): g [broadcast(s, …)] → [s]; its own backward broadcasts back.
//
// CPU kernels coalesce the broadcast pattern into as few axes as possible, so that the
// common layouts (same shape, a scalar, a bias row repeating along leading axes) become
// one flat loop or one [rows, cols] loop that the compiler vectorises; those loops are in
// binary_isa.cpp, compiled once per ISA. A device runs those layouts with its core kernels
// (binary, sum_rows, sum_all) and any other broadcast or reduction with the shape group's
// strided ones (broadcast_binary, sum_to: cuda/kernels/broadcast.h).
#include <algorithm>
#include <cstring>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/backend.h"
#include "polyak/core/error.h"
#include "polyak/core/kernels_shape.h"
#include "polyak/core/threads.h"
#include "polyak/ops/binary_kernels.h"
#include "polyak/ops/elementwise.h"

namespace polyak {
namespace {

using detail::BroadcastPlan;

// ---- the broadcast plan (ops/binary_kernels.h) ------------------------------------------
BroadcastPlan make_plan(const Shape& a, const Shape& b, const Shape& out) {
  const int64_t rank = out.rank();
  std::vector<bool> ba, bb;
  BroadcastPlan p;
  for (int64_t i = 0; i < rank; ++i) {
    int64_t o = out[i];
    if (o == 1) continue;
    int64_t ia = i - (rank - a.rank()), ib = i - (rank - b.rank());
    bool xa = ia < 0 || a[ia] == 1, xb = ib < 0 || b[ib] == 1;
    if (!p.dims.empty() && ba.back() == xa && bb.back() == xb) {
      p.dims.back() *= o;
    } else {
      p.dims.push_back(o);
      ba.push_back(xa);
      bb.push_back(xb);
    }
  }
  const size_t r = p.dims.size();
  p.sa.assign(r, 0);
  p.sb.assign(r, 0);
  int64_t stride_a = 1, stride_b = 1;
  for (size_t k = r; k-- > 0;) {
    if (!ba[k]) {
      p.sa[k] = stride_a;
      stride_a *= p.dims[k];
    }
    if (!bb[k]) {
      p.sb[k] = stride_b;
      stride_b *= p.dims[k];
    }
  }
  return p;
}

// The coalesced axes `dims` and the operands' strides along them as a device kernel's walk;
// `sb` may be empty (one operand).
StridedAxes walk(const char* fn, const std::vector<int64_t>& dims, const std::vector<int64_t>& sa,
                 const std::vector<int64_t>& sb) {
  const int64_t rank = static_cast<int64_t>(dims.size());
  POLYAK_CHECK(rank <= StridedAxes::kMaxRank, fn, ": the broadcast coalesces into ", rank,
               " axes, expected at most ", StridedAxes::kMaxRank, " on a device");
  StridedAxes axes;
  axes.rank = static_cast<int>(rank);
  for (size_t k = 0; k < dims.size(); ++k) {
    axes.dims[k] = dims[k];
    axes.stride[0][k] = sa[k];
    axes.stride[1][k] = sb.empty() ? 0 : sb[k];
  }
  return axes;
}

// True when b's extents (leading 1s dropped) are a suffix of a's: b repeats along a's
// leading axes (same shape, a bias row, a scalar).
bool repeats_along_leading(const Shape& a, const Shape& b) {
  int64_t skip = 0;
  while (skip < b.rank() && b[skip] == 1) ++skip;
  int64_t len = b.rank() - skip;
  if (len > a.rank()) return false;
  for (int64_t i = 0; i < len; ++i)
    if (b[skip + i] != a[a.rank() - len + i]) return false;
  return true;
}

// The forward of a broadcasting binary op (validation included).
Tensor binary_forward(const char* fn, BinaryOp op, const Tensor& a, const Tensor& b) {
  check_defined(fn, "a", a);
  check_defined(fn, "b", b);
  check_same_dtype(fn, "a", a, "b", b);
  check_floating(fn, "a", a);
  check_same_device(fn, "a", a, "b", b);
  Shape shape = broadcast_shapes(fn, a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (!a.device().is_cpu()) {
    const DeviceBackend& kernels = device_kernels(fn, "a", a);
    if (out.numel() == 0) return out;  // nothing to compute (and no kernel takes an empty b)
    const bool commutes = op == BinaryOp::add || op == BinaryOp::mul;
    const bool b_repeats = a.shape() == shape && repeats_along_leading(shape, b.shape());
    const bool a_repeats =
        commutes && b.shape() == shape && repeats_along_leading(shape, a.shape());
    if (b_repeats) {
      kernels.binary(op, a, b, out);
    } else if (a_repeats) {
      kernels.binary(op, b, a, out);
    } else {
      const BroadcastPlan plan = make_plan(a.shape(), b.shape(), shape);
      const auto kernel =
          device_kernel(fn, "a", a, &DeviceBackend::shape, &ShapeKernels::broadcast_binary);
      kernel(op, a, b, walk(fn, plan.dims, plan.sa, plan.sb), out);
    }
    return out;
  }
  BroadcastPlan plan = make_plan(a.shape(), b.shape(), shape);
  dispatch(a.dtype(), [&]<class T>() {
    with_active_isa([&](auto isa) {
      detail::binary_apply<T>(isa, op, plan, a.data<T>(), b.data<T>(), out.data<T>(), out.numel());
    });
  });
  return out;
}

// out = f(x) elementwise for the scalar forms; on a device through its binary_scalar.
template <class F>
Tensor scalar_forward(const char* fn, const char* arg, const Tensor& x, BinaryOp op, double s,
                      bool scalar_first, F&& cpu_body) {
  check_defined(fn, arg, x);
  check_floating(fn, arg, x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (!x.device().is_cpu()) {
    device_kernels(fn, arg, x).binary_scalar(op, x, s, scalar_first, out);
    return out;
  }
  const int64_t n = x.numel();
  dispatch(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    parallel_for(
        n, 1, [&](int64_t begin, int64_t end) { cpu_body(px + begin, po + begin, end - begin); });
  });
  return out;
}

bool needs_grad(const Tensor& t) {
  return GradMode::enabled() && t.requires_grad();
}

}  // namespace

// ---- broadcasting ------------------------------------------------------------------------

Shape broadcast_shapes(const char* fn, const Shape& a, const Shape& b) {
  const int64_t rank = std::max(a.rank(), b.rank());
  std::vector<int64_t> dims(static_cast<size_t>(rank));
  for (int64_t i = 0; i < rank; ++i) {
    int64_t ia = i - (rank - a.rank()), ib = i - (rank - b.rank());
    int64_t ea = ia < 0 ? 1 : a[ia], eb = ib < 0 ? 1 : b[ib];
    POLYAK_CHECK(ea == eb || ea == 1 || eb == 1, fn, ": b has shape ", b, ", which does not ",
                 "broadcast with a ", a, " (axis ", i - rank, ": ", eb, " vs ", ea,
                 "), expected equal extents or 1");
    dims[static_cast<size_t>(i)] = ea == 1 ? eb : ea;
  }
  return Shape(std::move(dims));
}

// ---- add, sub, mul, div -----------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("add", BinaryOp::add, a, b);
  if (needs_grad(a) || needs_grad(b)) {
    record(out, "AddBackward", {a, b},
           [sa = a.shape(), sb = b.shape(), ga = a.requires_grad(),
            gb = b.requires_grad()](const Tensor& g) -> std::vector<Tensor> {
             return {ga ? sum_to(g, sa) : Tensor(), gb ? sum_to(g, sb) : Tensor()};
           });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("sub", BinaryOp::sub, a, b);
  if (needs_grad(a) || needs_grad(b)) {
    record(out, "SubBackward", {a, b},
           [sa = a.shape(), sb = b.shape(), ga = a.requires_grad(),
            gb = b.requires_grad()](const Tensor& g) -> std::vector<Tensor> {
             return {ga ? sum_to(g, sa) : Tensor(), gb ? neg(sum_to(g, sb)) : Tensor()};
           });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("mul", BinaryOp::mul, a, b);
  if (needs_grad(a) || needs_grad(b)) {
    // da needs b, db needs a: keep only what a requested gradient uses.
    Tensor keep_b = a.requires_grad() ? b : Tensor();
    Tensor keep_a = b.requires_grad() ? a : Tensor();
    record(
        out, "MulBackward", {a, b},
        [keep_a, keep_b, sa = a.shape(), sb = b.shape()](const Tensor& g) -> std::vector<Tensor> {
          return {keep_b.defined() ? sum_to(mul(g, keep_b), sa) : Tensor(),
                  keep_a.defined() ? sum_to(mul(g, keep_a), sb) : Tensor()};
        });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward("div", BinaryOp::div, a, b);
  if (needs_grad(a) || needs_grad(b)) {
    // The output is kept as a detached alias, so that its own node does not own it.
    Tensor keep_out = b.requires_grad() ? out.detach() : Tensor();
    record(out, "DivBackward", {a, b},
           [keep_b = b, keep_out, sa = a.shape(), sb = b.shape(),
            ga = a.requires_grad()](const Tensor& g) -> std::vector<Tensor> {
             Tensor g_over_b = div(g, keep_b);
             return {ga ? sum_to(g_over_b, sa) : Tensor(),
                     keep_out.defined() ? neg(sum_to(mul(g_over_b, keep_out), sb)) : Tensor()};
           });
  }
  return out;
}

// ---- scalar forms --------------------------------------------------------------------------

Tensor add(const Tensor& a, double b) {
  Tensor out = scalar_forward("add", "a", a, BinaryOp::add, b, false,
                              [b]<class T>(const T* x, T* y, int64_t n) {
                                const T s = static_cast<T>(b);
                                for (int64_t i = 0; i < n; ++i) y[i] = x[i] + s;
                              });
  if (needs_grad(a))
    record(out, "AddScalarBackward", {a},
           [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  return out;
}

Tensor mul(const Tensor& a, double b) {
  Tensor out = scalar_forward("mul", "a", a, BinaryOp::mul, b, false,
                              [b]<class T>(const T* x, T* y, int64_t n) {
                                const T s = static_cast<T>(b);
                                for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
                              });
  if (needs_grad(a))
    record(out, "MulScalarBackward", {a},
           [b](const Tensor& g) -> std::vector<Tensor> { return {mul(g, b)}; });
  return out;
}

Tensor rsub(double a, const Tensor& b) {
  Tensor out = scalar_forward("rsub", "b", b, BinaryOp::sub, a, true,
                              [a]<class T>(const T* x, T* y, int64_t n) {
                                const T s = static_cast<T>(a);
                                for (int64_t i = 0; i < n; ++i) y[i] = s - x[i];
                              });
  if (needs_grad(b))
    record(out, "RsubBackward", {b},
           [](const Tensor& g) -> std::vector<Tensor> { return {neg(g)}; });
  return out;
}

Tensor rdiv(double a, const Tensor& b) {
  Tensor out = scalar_forward("rdiv", "b", b, BinaryOp::div, a, true,
                              [a]<class T>(const T* x, T* y, int64_t n) {
                                const T s = static_cast<T>(a);
                                for (int64_t i = 0; i < n; ++i) y[i] = s / x[i];
                              });
  if (needs_grad(b))
    record(out, "RdivBackward", {b},
           [keep_b = b, keep_out = out.detach()](const Tensor& g) -> std::vector<Tensor> {
             return {neg(div(mul(g, keep_out), keep_b))};
           });
  return out;
}

// ---- sum_to --------------------------------------------------------------------------------

namespace {

// Σ over n contiguous elements, eight independent accumulators so that the loop vectorises
// without reassociating a single running sum.
template <class T>
T sum_contiguous(const T* x, int64_t n) {
  T acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += x[i + k];
  T s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += x[i];
  return s;
}

// out[c] = Σ_r x[r, c]: the bias-gradient case. Large inputs are cut into a fixed number of
// row blocks (whatever the thread count, so results do not depend on it); threads sum
// blocks into their own partial rows, which are then added in order.
template <class T>
void sum_rows_cpu(const T* x, int64_t rows, int64_t cols, T* out) {
  auto block = [&](int64_t r0, int64_t r1, T* dst) {
    std::memcpy(dst, x + r0 * cols, static_cast<size_t>(cols) * sizeof(T));
    for (int64_t r = r0 + 1; r < r1; ++r) {
      const T* row = x + r * cols;
      for (int64_t c = 0; c < cols; ++c) dst[c] += row[c];
    }
  };
  constexpr int64_t kBlocks = 8;
  const int64_t chunks = std::min<int64_t>(kBlocks, rows);
  if (chunks <= 1 || rows * cols < 65536) {
    block(0, rows, out);
    return;
  }
  std::vector<T> partial(static_cast<size_t>(chunks * cols));
  parallel_for(chunks, rows * cols / chunks, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      block(rows * c / chunks, rows * (c + 1) / chunks, partial.data() + c * cols);
  });
  std::memcpy(out, partial.data(), static_cast<size_t>(cols) * sizeof(T));
  for (int64_t c = 1; c < chunks; ++c) {
    const T* p = partial.data() + c * cols;
    for (int64_t j = 0; j < cols; ++j) out[j] += p[j];
  }
}

// General case: groups of kept and summed axes, alternating (coalesced like the plan).
template <class T>
void sum_to_general(const T* x, const std::vector<int64_t>& dims, const std::vector<bool>& kept,
                    T* out, int64_t out_numel) {
  std::fill(out, out + out_numel, T(0));
  const int64_t rank = static_cast<int64_t>(dims.size());
  std::vector<int64_t> so(static_cast<size_t>(rank), 0);
  int64_t stride = 1;
  for (int64_t k = rank - 1; k >= 0; --k) {
    if (kept[k]) {
      so[k] = stride;
      stride *= dims[k];
    }
  }
  const int64_t n = dims.back(), outer = rank - 1;
  int64_t total = 1;
  for (int64_t d : dims) total *= d;
  std::vector<int64_t> idx(static_cast<size_t>(outer), 0);
  int64_t oo = 0;
  for (int64_t r = 0; r < total / n; ++r) {
    const T* row = x + r * n;
    if (kept.back()) {
      T* dst = out + oo;
      for (int64_t j = 0; j < n; ++j) dst[j] += row[j];
    } else {
      out[oo] += sum_contiguous(row, n);
    }
    for (int64_t k = outer - 1; k >= 0; --k) {
      oo += so[k];
      if (++idx[k] < dims[k]) break;
      oo -= so[k] * dims[k];
      idx[k] = 0;
    }
  }
}

// Any other reduction on a device: grad's coalesced axes split into the kept walk (out's
// layout) and the summed one, each with its strides in grad.
void sum_to_on_device(const Tensor& grad, const std::vector<int64_t>& dims,
                      const std::vector<bool>& kept, Tensor& out) {
  const auto kernel =
      device_kernel("sum_to", "grad", grad, &DeviceBackend::shape, &ShapeKernels::sum_to);
  std::vector<int64_t> kept_dims, kept_strides, summed_dims, summed_strides;
  int64_t stride = 1;
  for (size_t k = dims.size(); k-- > 0;) {
    auto& d = kept[k] ? kept_dims : summed_dims;
    auto& s = kept[k] ? kept_strides : summed_strides;
    d.insert(d.begin(), dims[k]);
    s.insert(s.begin(), stride);
    stride *= dims[k];
  }
  kernel(grad, walk("sum_to", kept_dims, kept_strides, {}),
         walk("sum_to", summed_dims, summed_strides, {}), out);
}

}  // namespace

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  check_defined("sum_to", "grad", grad);
  const Shape& gs = grad.shape();
  if (gs == shape) return grad;
  const int64_t rank = gs.rank();
  bool reachable = shape.rank() <= rank;
  for (int64_t i = 0; reachable && i < shape.rank(); ++i) {
    int64_t e = shape[i], ge = gs[rank - shape.rank() + i];
    reachable = e == ge || e == 1;
  }
  POLYAK_CHECK(reachable, "sum_to: shape ", shape, " does not broadcast to grad's shape ", gs,
               ", expected a shape whose extents match grad's trailing axes or are 1");

  // Coalesce grad's axes into alternating groups: kept (extent in `shape`) or summed.
  std::vector<int64_t> dims;
  std::vector<bool> kept;
  for (int64_t i = 0; i < rank; ++i) {
    if (gs[i] == 1) continue;
    int64_t is = i - (rank - shape.rank());
    bool keep = is >= 0 && shape[is] != 1;
    if (!dims.empty() && kept.back() == keep) {
      dims.back() *= gs[i];
    } else {
      dims.push_back(gs[i]);
      kept.push_back(keep);
    }
  }

  Tensor out = Tensor::empty(shape, grad.dtype(), grad.device());
  if (!grad.device().is_cpu()) {
    const DeviceBackend& kernels = device_kernels("sum_to", "grad", grad);
    const bool all = dims.size() == 1 && !kept[0];
    const bool rows = dims.size() == 2 && !kept[0] && kept[1];
    if (all)
      kernels.sum_all(grad, out);
    else if (rows)
      kernels.sum_rows(grad, dims[0], dims[1], out);
    else if (dims.empty() || (dims.size() == 1 && kept[0]))
      out.copy_(grad.reshape(shape));
    else
      sum_to_on_device(grad, dims, kept, out);
  } else if (grad.numel() == 0 || dims.empty()) {
    // Nothing summed over a non-empty axis: either all extents are 1 or there is no data.
    dispatch(grad.dtype(), [&]<class T>() {
      if (out.numel() > 0 && grad.numel() > 0)
        out.data<T>()[0] = grad.data<T>()[0];
      else
        std::fill(out.data<T>(), out.data<T>() + out.numel(), T(0));
    });
  } else {
    dispatch(grad.dtype(), [&]<class T>() {
      const T* x = grad.data<T>();
      T* o = out.data<T>();
      if (dims.size() == 1 && kept[0]) {
        std::memcpy(o, x, grad.nbytes());  // only extent-1 axes differ
      } else if (dims.size() == 1) {
        o[0] = sum_contiguous(x, dims[0]);
      } else if (dims.size() == 2 && !kept[0]) {
        sum_rows_cpu(x, dims[0], dims[1], o);
      } else if (dims.size() == 2) {
        parallel_for(dims[0], dims[1], [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) o[r] = sum_contiguous(x + r * dims[1], dims[1]);
        });
      } else {
        sum_to_general(x, dims, kept, o, out.numel());
      }
    });
  }
  if (needs_grad(grad)) {
    record(out, "SumToBackward", {grad},
           [gs, dt = grad.dtype(), dev = grad.device()](const Tensor& g) -> std::vector<Tensor> {
             return {add(Tensor::zeros(gs, dt, dev), g)};
           });
  }
  return out;
}

}  // namespace polyak
