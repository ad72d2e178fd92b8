// Matrix products: matmul with BLAS-style transpose flags (batched), and linear.
//
// matmul:  C = op(A) · op(B)          op(A) [.., M, K], op(B) [.., K, N], C [.., M, N]
//   dA = dC · op(B)ᵀ          [.., M, K]   (A stored [M,K])
//   dA = op(B) · dCᵀ          [.., K, M]   (trans_a: A stored [K,M])
//   dB = op(A)ᵀ · dC          [.., K, N]   (B stored [K,N])
//   dB = dCᵀ · op(A)          [.., N, K]   (trans_b: B stored [N,K])
// A 2-D b is shared across a's batch, so its gradient is the sum over the batch.
//
// linear:  Y = X · Wᵀ + b             X [R, in] (leading axes folded into R), W [out, in]
//   dX = dY · W               [R, in]
//   dW = dYᵀ · X              [out, in]
//   db = Σ_r dY[r, :]         [out]
//
// relu_dropout_linear:  Y = H · Wᵀ + b,  H = relu_dropout(X) (ops/dropout.cpp)
//   dX = (dY · W) ⊙ [H > 0] / (1 − p)   [R, in]: the mask applied by the GEMM to each
//                                               tile of dY · W while it is in cache
//   dW = dYᵀ · H,  db as in linear
//
// Every f32 product is polyak's own packed GEMM (ops/gemm_kernel.h: its packing reads the
// transposes); f64 products (the gradchecks) are Eigen GEMMs on row-major maps. A large
// product is cut into one panel per thread; many small matrices (attention heads) run one
// single-threaded GEMM per batch entry, in parallel. Gradients are written straight into
// fresh buffers, never summed afterwards. A device's products follow the autocast scope
// (core/autocast.h: bf16 operands under Precision::bf16); the CPU's are always f32.
#include "polyak/ops/matmul.h"

#include <Eigen/Core>
#include <algorithm>
#include <type_traits>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/backend.h"
#include "polyak/core/threads.h"
#include "polyak/ops/gemm_kernel.h"
#include "polyak/ops/nn_ops.h"

namespace polyak {
namespace {

template <class T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Strided = Eigen::Map<RowMajor<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ConstStrided = Eigen::Map<const RowMajor<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// One operand of a product: stored row-major with leading dimension `ld`, transposed by
// the product when `t`.
template <class T>
struct Operand {
  const T* p;
  int64_t ld;
  bool t;
};

// SgemmArgs::gate for either type: C's final value times (p > 0 ? scale : 0), p [m, ld].
template <class T>
struct Gate {
  const T* p = nullptr;
  int64_t ld = 0;
  T scale = T(1);
  Gate at(int64_t row, int64_t col) const { return {p ? p + row * ld + col : nullptr, ld, scale}; }
};

// c [m, n] (leading dimension ldc) gated in a pass of its own.
template <class T>
void apply_gate(T* c, int64_t ldc, int64_t m, int64_t n, Gate<T> gate) {
  for (int64_t i = 0; gate.p && i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      T& v = c[i * ldc + j];
      v = gate.p[i * gate.ld + j] > T(0) ? v * gate.scale : T(0);
    }
}

// gemm_block (below) with Eigen: c's rows start as the bias, then the product is added.
template <class T>
void eigen_gemm_block(Operand<T> a, Operand<T> b, T* c, int64_t ldc, int64_t m, int64_t n,
                      int64_t k, bool accumulate, const T* bias) {
  Strided<T> C(c, m, n, Eigen::OuterStride<>(ldc));
  if (bias && !accumulate) {
    for (int64_t r = 0; r < m; ++r) std::copy(bias, bias + n, c + r * ldc);
    accumulate = true;
  }
  if (k == 0) {
    if (!accumulate) C.setZero();
    return;
  }
  ConstStrided<T> A(a.p, a.t ? k : m, a.t ? m : k, Eigen::OuterStride<>(a.ld));
  ConstStrided<T> B(b.p, b.t ? n : k, b.t ? k : n, Eigen::OuterStride<>(b.ld));
  auto run = [&](const auto& opa, const auto& opb) {
    if (accumulate)
      C.noalias() += opa * opb;
    else
      C.noalias() = opa * opb;
  };
  if (!a.t && !b.t) run(A, B);
  if (!a.t && b.t) run(A, B.transpose());
  if (a.t && !b.t) run(A.transpose(), B);
  if (a.t && b.t) run(A.transpose(), B.transpose());
}

// c [m,n] (leading dimension ldc) = op(a) · op(b) (+ c when `accumulate`), one
// single-threaded GEMM. With `bias` (and not `accumulate`), c = bias + op(a) · op(b), the
// bias added to every row. With `a_sums`, a_sums [m] = op(a)'s row sums over the depth.
// With `gate`, c's final value is gated (SgemmArgs::gate).
// f32 runs polyak's own GEMM, which adds the bias in the pass that writes c, sums op(a)
// while packing it and gates each tile of c once written; f64 (the gradchecks) runs Eigen's.
// `isa` picks the compilation of polyak's GEMM (benchmarks compare them; ops use the active one).
template <class T>
void gemm_block(Operand<T> a, Operand<T> b, T* c, int64_t ldc, int64_t m, int64_t n, int64_t k,
                bool accumulate, const T* bias = nullptr, Isa isa = active_isa(),
                T* a_sums = nullptr, Gate<T> gate = {}) {
  if (m == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    const SgemmArgs args{a.t, b.t, m,          n,    k,      a.p,    a.ld,    b.p,       b.ld,
                         c,   ldc, accumulate, bias, a_sums, gate.p, gate.ld, gate.scale};
    with_isa(isa, [&](auto tag) { sgemm(tag, args); });
  } else {
    if (n > 0) eigen_gemm_block(a, b, c, ldc, m, n, k, accumulate, bias);
    apply_gate(c, ldc, m, n, gate);
    for (int64_t i = 0; a_sums && i < m; ++i) {
      T sum = T(0);
      for (int64_t p = 0; p < k; ++p) sum += a.t ? a.p[p * a.ld + i] : a.p[i * a.ld + p];
      a_sums[i] = sum;
    }
  }
}

// How many slices of the depth gemm_parallel cuts a product into: one per thread when k
// is long next to C's sides and each slice stays deep, else 1 (panels of C).
inline int64_t depth_slices(int64_t m, int64_t n, int64_t k) {
  const int64_t threads = num_threads();
  constexpr int64_t kMinSliceDepth = 1024;
  if (threads <= 1 || k < 4 * std::max(m, n) || k < kMinSliceDepth * threads) return 1;
  return threads;
}

// C = op(a) · op(b) (+ C, + bias) as `slices` products over consecutive slices of the depth.
// `a_sums` as in gemm_block: each slice sums its own share, added like C's. A gate is
// applied once the slices are summed.
template <class T>
void gemm_depth_sliced(Operand<T> a, Operand<T> b, T* c, int64_t m, int64_t n, int64_t k,
                       bool accumulate, const T* bias, Isa isa, int64_t slices, T* a_sums,
                       Gate<T> gate) {
  const int64_t size = m * n;
  // Scratch from the tensor allocator's cache: a fresh heap block this size would come
  // from the system, zeroed page by page, on every product.
  Tensor scratch = Tensor::empty(Shape{(slices - 1) * (size + m)}, dtype_of<T>());
  T* partial = scratch.data<T>();
  T* partial_sums = partial + (slices - 1) * size;
  parallel_for(slices, size * k / slices, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      // Slice bounds on multiples of 64 (whole cache lines of a depth-contiguous operand).
      const int64_t k0 = k * s / slices / 64 * 64;
      const int64_t k1 = s + 1 == slices ? k : k * (s + 1) / slices / 64 * 64;
      const Operand<T> as{a.t ? a.p + k0 * a.ld : a.p + k0, a.ld, a.t};
      const Operand<T> bs{b.t ? b.p + k0 : b.p + k0 * b.ld, b.ld, b.t};
      if (s == 0)
        gemm_block(as, bs, c, n, m, n, k1 - k0, accumulate, bias, isa, a_sums);
      else
        gemm_block(as, bs, partial + (s - 1) * size, n, m, n, k1 - k0, false,
                   static_cast<const T*>(nullptr), isa,
                   a_sums ? partial_sums + (s - 1) * m : nullptr);
    }
  });
  parallel_for(size, slices, [&](int64_t begin, int64_t end) {
    for (int64_t s = 1; s < slices; ++s) {
      const T* src = partial + (s - 1) * size;
      for (int64_t i = begin; i < end; ++i) c[i] += src[i];
    }
  });
  if (gate.p)
    parallel_for(m, n, [&](int64_t r0, int64_t r1) {
      apply_gate(c + r0 * n, n, r1 - r0, n, gate.at(r0, 0));
    });
  for (int64_t s = 1; a_sums && s < slices; ++s)
    for (int64_t i = 0; i < m; ++i) a_sums[i] += partial_sums[(s - 1) * m + i];
}

// The same product on all threads: C is cut into one panel of rows (or of columns, when
// it is wider than tall) per thread, and each panel is an independent GEMM that packs its
// own operands. Unlike a GEMM whose threads share packed blocks and wait for each other, a
// panel never waits, so a busy core slows only its own panel. Panels are cut at whole
// microkernel tiles (MR rows, NR columns): no thread gets a ragged tile in the middle of C,
// and column panels start on a 64-byte boundary of each row of a 64-byte-aligned C.
//   linear forward  X·Wᵀ  [R, out]:  rows (R ≫ out)
//   linear dX       dY·W  [R, in]:   rows
//   linear dW       dYᵀ·X [out, in]: slices of the depth R (below) when R is long next
//                   to out and in, else rows, or columns when in > out.
//
// A deep product with a small C (linear dW over every token: k = 8192, m = n = 256) cuts
// the depth instead: a row panel would leave each thread packing all of the shared
// operand, while a slice of the depth packs only its own share of both. Slice 0 writes C;
// the others write scratch blocks, added into C at the end. Its sums then depend on the
// thread count (not on the run).
//
// `a_sums` as in gemm_block: a row panel sums its own rows; of the column panels, which
// all pack the whole of op(a), the first alone sums. Each panel gates its own part of C.
template <class T>
void gemm_parallel(Operand<T> a, Operand<T> b, T* c, int64_t m, int64_t n, int64_t k,
                   bool accumulate, const T* bias = nullptr, Isa isa = active_isa(),
                   T* a_sums = nullptr, Gate<T> gate = {}) {
  const int64_t slices = depth_slices(m, n, k);
  if (slices > 1) {
    gemm_depth_sliced(a, b, c, m, n, k, accumulate, bias, isa, slices, a_sums, gate);
    return;
  }
  const SgemmShape tile = with_isa(isa, [](auto tag) { return sgemm_shape(tag); });
  if (m >= n) {
    const int64_t tiles = (m + tile.mr - 1) / tile.mr;
    parallel_for(tiles, tile.mr * n * k, [&](int64_t t0, int64_t t1) {
      const int64_t r0 = t0 * tile.mr, r1 = std::min(m, t1 * tile.mr);
      Operand<T> rows{a.t ? a.p + r0 : a.p + r0 * a.ld, a.ld, a.t};
      gemm_block(rows, b, c + r0 * n, n, r1 - r0, n, k, accumulate, bias, isa,
                 a_sums ? a_sums + r0 : nullptr, gate.at(r0, 0));
    });
  } else {
    const int64_t tiles = (n + tile.nr - 1) / tile.nr;
    parallel_for(tiles, tile.nr * m * k, [&](int64_t t0, int64_t t1) {
      const int64_t c0 = t0 * tile.nr, c1 = std::min(n, t1 * tile.nr);
      Operand<T> cols{b.t ? b.p + c0 * b.ld : b.p + c0, b.ld, b.t};
      gemm_block(a, cols, c + c0, n, m, c1 - c0, k, accumulate, bias ? bias + c0 : nullptr, isa,
                 c0 == 0 ? a_sums : nullptr, gate.at(0, c0));
    });
  }
}

// One GEMM per batch entry i: out[i] = op(a[i]) · op(b[i]). Strides are in elements; a
// stride of 0 shares that operand across the batch. out_stride 0 sums every product into
// one output (the gradient of a shared operand).
template <class T>
void gemm_batched_cpu(const T* a, const T* b, T* out, const GemmArgs& s) {
  const int64_t lda = s.trans_a ? s.m : s.k, ldb = s.trans_b ? s.k : s.n;
  auto op_a = [&](int64_t i) { return Operand<T>{a + i * s.a_stride, lda, s.trans_a}; };
  auto op_b = [&](int64_t i) { return Operand<T>{b + i * s.b_stride, ldb, s.trans_b}; };
  const int64_t size = s.m * s.n, cost = std::max<int64_t>(1, s.m * s.n * s.k);
  const int64_t threads = num_threads();
  // A few large products are each split across the threads; many (or small) products run
  // one single-threaded GEMM per batch entry, in parallel.
  const bool over_batch = s.batch >= 4 * threads || cost < (int64_t{1} << 22);

  if (s.out_stride == 0 && s.batch != 1) {  // a sum over the batch
    const int64_t chunks = over_batch ? std::min<int64_t>(s.batch, threads) : 1;
    if (chunks <= 1) {
      if (s.batch == 0) std::fill(out, out + size, T(0));  // an empty sum
      for (int64_t i = 0; i < s.batch; ++i)
        gemm_parallel(op_a(i), op_b(i), out, s.m, s.n, s.k, /*accumulate=*/i > 0);
      return;
    }
    // Each chunk of the batch sums into its own buffer (chunk 0 into out); then they add.
    Tensor scratch = Tensor::empty(Shape{(chunks - 1) * size}, dtype_of<T>());  // cached
    T* partial = scratch.data<T>();
    parallel_for(chunks, cost * s.batch / chunks, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        T* dst = c == 0 ? out : partial + (c - 1) * size;
        const int64_t first = s.batch * c / chunks, last = s.batch * (c + 1) / chunks;
        for (int64_t i = first; i < last; ++i)
          gemm_block(op_a(i), op_b(i), dst, s.n, s.m, s.n, s.k, /*accumulate=*/i > first);
      }
    });
    for (int64_t c = 1; c < chunks; ++c) {
      const T* src = partial + (c - 1) * size;
      for (int64_t j = 0; j < size; ++j) out[j] += src[j];
    }
    return;
  }
  if (!over_batch || s.batch == 1) {
    for (int64_t i = 0; i < s.batch; ++i)
      gemm_parallel(op_a(i), op_b(i), out + i * s.out_stride, s.m, s.n, s.k, false);
    return;
  }
  parallel_for(s.batch, cost, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      gemm_block(op_a(i), op_b(i), out + i * s.out_stride, s.n, s.m, s.n, s.k, false);
  });
}

// Element range [begin, begin + n) of t, as a 1-D view.
Tensor flat_view(const Tensor& t, int64_t begin, int64_t n) {
  return t.reshape(Shape{t.numel()}).narrow0(begin, begin + n);
}

// out ← the products described by `s`, on out's device. out is overwritten.
void gemm_into(const Tensor& a, const Tensor& b, Tensor& out, const GemmArgs& s) {
  if (!out.device().is_cpu()) {
    const DeviceBackend& kernels = device_kernels("matmul", "out", out);
    if (s.batch == 0) {
      if (s.out_stride == 0) out.zero_();  // an empty sum
      return;
    }
    if (s.out_stride == 0 && s.batch > 1) {
      // A sum over the batch: accumulate one product at a time (beta = 1 after the first).
      const int64_t a_size = s.m * s.k, b_size = s.k * s.n;
      for (int64_t i = 0; i < s.batch; ++i) {
        GemmArgs one{1, s.m, s.n, s.k, s.trans_a, s.trans_b, 0, 0, 0};
        one.beta = i > 0 ? 1.0f : 0.0f;
        kernels.gemm(flat_view(a, i * s.a_stride, a_size), flat_view(b, i * s.b_stride, b_size),
                     out, autocast(one));
      }
      return;
    }
    kernels.gemm(a, b, out, autocast(s));
    return;
  }
  dispatch(out.dtype(),
           [&]<class T>() { gemm_batched_cpu<T>(a.data<T>(), b.data<T>(), out.data<T>(), s); });
}

// On a device, `t` must be in the dtype its kernels compute in.
void check_kernel_dtype(const char* fn, const char* arg, const Tensor& t) {
  if (!t.device().is_cpu()) device_kernels(fn, arg, t);
}

std::string flags_note(bool ta, bool tb) {
  if (ta && tb) return " (trans_a, trans_b)";
  if (ta) return " (trans_a)";
  if (tb) return " (trans_b)";
  return "";
}

}  // namespace

// ---- matmul ------------------------------------------------------------------------------

void sgemm_threads(Isa isa, const SgemmArgs& g) {
  POLYAK_CHECK(isa <= supported_isas().back(), "sgemm_threads: isa ", isa_name(isa),
               " is not supported by this CPU");
  gemm_parallel<float>({g.a, g.lda, g.trans_a}, {g.b, g.ldb, g.trans_b}, g.c, g.m, g.n, g.k,
                       g.accumulate, g.bias, isa, g.a_sums, {g.gate, g.ldg, g.gate_scale});
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  check_defined("matmul", "a", a);
  check_defined("matmul", "b", b);
  POLYAK_CHECK(a.dim() >= 2, "matmul: a has shape ", a.shape(), ", expected rank ≥ 2 ",
               trans_a ? "[..., K, M]" : "[..., M, K]");
  POLYAK_CHECK(b.dim() >= 2, "matmul: b has shape ", b.shape(), ", expected rank ≥ 2 ",
               trans_b ? "[..., N, K]" : "[..., K, N]");
  check_same_dtype("matmul", "a", a, "b", b);
  check_floating("matmul", "a", a);
  check_same_device("matmul", "a", a, "b", b);
  check_kernel_dtype("matmul", "a", a);

  const int64_t M = a.size(trans_a ? -1 : -2), K = a.size(trans_a ? -2 : -1);
  const int64_t Kb = b.size(trans_b ? -1 : -2), N = b.size(trans_b ? -2 : -1);
  POLYAK_CHECK(Kb == K, "matmul: b has shape ", b.shape(), ", expected ",
               trans_b ? "[N,K]" : "[K,N]", " with K = ", K, " matching a ", a.shape(),
               flags_note(trans_a, trans_b));
  const bool shared_b = b.dim() == 2;
  std::vector<int64_t> batch_dims(a.shape().begin(), a.shape().end() - 2);
  if (!shared_b) {
    std::vector<int64_t> b_batch(b.shape().begin(), b.shape().end() - 2);
    POLYAK_CHECK(b_batch == batch_dims, "matmul: b has shape ", b.shape(), ", expected batch axes ",
                 Shape(batch_dims), " matching a ", a.shape(),
                 " (or a 2-D b shared across the batch)");
  }
  const int64_t batch = a.shape().numel(0, a.dim() - 2);

  std::vector<int64_t> out_dims = batch_dims;
  out_dims.push_back(M);
  out_dims.push_back(N);
  Tensor out = Tensor::empty(Shape(out_dims), a.dtype(), a.device());
  // With a shared, untransposed b the batch folds into the rows of one GEMM.
  if (shared_b && !trans_a)
    gemm_into(a, b, out, {1, batch * M, N, K, false, trans_b, 0, 0, 0});
  else
    gemm_into(a, b, out, {batch, M, N, K, trans_a, trans_b, M * K, shared_b ? 0 : K * N, M * N});

  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  Tensor saved_a = need_b ? a.detach() : Tensor();  // dB needs A
  Tensor saved_b = need_a ? b.detach() : Tensor();  // dA needs B
  record(out, "MatmulBackward", {a, b},
         [saved_a, saved_b, a_shape = a.shape(), b_shape = b.shape(), trans_a, trans_b, shared_b,
          batch, M, N, K](const Tensor& g) -> std::vector<Tensor> {
           const bool ta = trans_a, tb = trans_b;
           Tensor da, db;
           if (saved_b.defined()) {
             da = Tensor::empty(a_shape, g.dtype(), g.device());
             if (ta)  // dA [K,M] = op(B) · dCᵀ
               gemm_into(saved_b, g, da,
                         {batch, K, M, N, tb, true, shared_b ? 0 : K * N, M * N, M * K});
             else if (shared_b)  // dA [batch·M, K] = dC · op(B)ᵀ, folded
               gemm_into(g, saved_b, da, {1, batch * M, K, N, false, !tb, 0, 0, 0});
             else
               gemm_into(g, saved_b, da, {batch, M, K, N, false, !tb, M * N, K * N, M * K});
           }
           if (saved_a.defined()) {
             db = Tensor::empty(b_shape, g.dtype(), g.device());
             // A shared b sums over the batch: folded into one GEMM's depth when a is
             // untransposed, else accumulated product by product (out stride 0).
             const bool fold = shared_b && !ta;
             const int64_t out_stride = shared_b ? 0 : K * N;
             if (!tb) {  // dB [K,N] = op(A)ᵀ · dC
               if (fold)
                 gemm_into(saved_a, g, db, {1, K, N, batch * M, true, false, 0, 0, 0});
               else
                 gemm_into(saved_a, g, db, {batch, K, N, M, !ta, false, M * K, M * N, out_stride});
             } else {  // dB [N,K] = dCᵀ · op(A)
               if (fold)
                 gemm_into(g, saved_a, db, {1, N, K, batch * M, true, false, 0, 0, 0});
               else
                 gemm_into(g, saved_a, db, {batch, N, K, M, true, ta, M * N, M * K, out_stride});
             }
           }
           return {da, db};
         });
  return out;
}

// ---- linear ------------------------------------------------------------------------------

namespace {

// out[j] = Σ_r x[r, j], split over columns so that each thread owns its sums.
template <class T>
void column_sums(const T* x, T* out, int64_t rows, int64_t cols) {
  parallel_for(cols, rows, [&](int64_t begin, int64_t end) {
    std::fill(out + begin, out + end, T(0));
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = x + r * cols;
      for (int64_t j = begin; j < end; ++j) out[j] += row[j];
    }
  });
}

}  // namespace

namespace {

// linear's argument checks, for `fn`.
void check_linear(const char* fn, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_defined(fn, "x", x);
  check_rank(fn, "weight", weight, 2, "[out, in]");
  POLYAK_CHECK(x.dim() >= 1, fn, ": x has shape ", x.shape(), ", expected rank ≥ 1 [..., in]");
  check_same_dtype(fn, "x", x, "weight", weight);
  check_floating(fn, "x", x);
  check_same_device(fn, "x", x, "weight", weight);
  check_kernel_dtype(fn, "x", x);
  const int64_t in = x.size(-1), out_features = weight.size(0);
  POLYAK_CHECK(weight.size(1) == in, fn, ": weight has shape ", weight.shape(),
               ", expected [out, in] with in = ", in, " matching x ", x.shape());
  if (bias.defined()) {
    POLYAK_CHECK(bias.dim() == 1 && bias.size(0) == out_features, fn, ": bias has shape ",
                 bias.shape(), ", expected [out] = [", out_features, "] matching weight ",
                 weight.shape());
    check_same_dtype(fn, "x", x, "bias", bias);
    check_same_device(fn, "x", x, "bias", bias);
  }
}

// linear's forward and its node. Without `relu_input`, the node differentiates into x. With
// it, x = relu_dropout(relu_input) (values only, no node) and the node differentiates into
// relu_input instead: dX's GEMM is gated by x with `gate_scale` (dropout's 1/(1 − p)).
Tensor linear_node(const char* fn, const Tensor& x, const Tensor& weight, const Tensor& bias,
                   const Tensor& relu_input = Tensor(), double gate_scale = 1) {
  check_linear(fn, x, weight, bias);
  const int64_t in = x.size(-1), out_features = weight.size(0);
  const int64_t rows = x.shape().numel(0, x.dim() - 1);
  std::vector<int64_t> out_dims(x.shape().begin(), x.shape().end() - 1);
  out_dims.push_back(out_features);
  Tensor out = Tensor::empty(Shape(out_dims), x.dtype(), x.device());

  if (!x.device().is_cpu()) {
    const DeviceBackend& kernels = device_kernels(fn, "x", x);
    kernels.gemm(x, weight, out, autocast({1, rows, out_features, in, false, true, 0, 0, 0}));
    if (bias.defined()) kernels.binary(BinaryOp::add, out, bias, out);
  } else {
    dispatch(x.dtype(), [&]<class T>() {
      gemm_parallel<T>({x.data<T>(), in, false}, {weight.data<T>(), in, true}, out.data<T>(), rows,
                       out_features, in, false, bias.defined() ? bias.data<T>() : nullptr);
    });
  }

  const Tensor& source = relu_input.defined() ? relu_input : x;
  const bool gated = relu_input.defined();
  const bool need_x = source.requires_grad(), need_w = weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  // dW needs X; so does the gate of dX.
  Tensor saved_x = need_w || (gated && need_x) ? x.detach() : Tensor();
  Tensor saved_w = need_x ? weight.detach() : Tensor();  // dX needs W
  std::vector<Tensor> inputs = {source, weight};
  if (bias.defined()) inputs.push_back(bias);
  record(out, "LinearBackward", inputs,
         [saved_x, saved_w, x_shape = x.shape(), w_shape = weight.shape(),
          has_bias = bias.defined(), need_w, need_b, rows, in, out_features, gated,
          gate_scale](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx, dw, db;
           if (need_b) db = Tensor::empty(Shape{out_features}, g.dtype(), g.device());
           const bool cpu = g.device().is_cpu();
           if (saved_w.defined() && gated) {  // dX [R,in] = dY · W where X > 0, times the scale
             dx = Tensor::empty(x_shape, g.dtype(), g.device());
             dispatch(g.dtype(), [&]<class T>() {
               gemm_parallel<T>({g.data<T>(), out_features, false}, {saved_w.data<T>(), in, false},
                                dx.data<T>(), rows, in, out_features, false, nullptr, active_isa(),
                                nullptr, {saved_x.data<T>(), in, static_cast<T>(gate_scale)});
             });
           } else if (saved_w.defined()) {  // dX [R,in] = dY · W
             dx = Tensor::empty(x_shape, g.dtype(), g.device());
             gemm_into(g, saved_w, dx, {1, rows, in, out_features, false, false, 0, 0, 0});
           }
           if (need_w) {  // dW [out,in] = dYᵀ · X
             dw = Tensor::empty(w_shape, g.dtype(), g.device());
             if (cpu) {
               // db [out] = Σ_r dY[r, :] is op(A)'s row sums: taken while dYᵀ is packed.
               dispatch(g.dtype(), [&]<class T>() {
                 gemm_parallel<T>({g.data<T>(), out_features, true}, {saved_x.data<T>(), in, false},
                                  dw.data<T>(), out_features, in, rows, false, nullptr,
                                  active_isa(), need_b ? db.data<T>() : nullptr);
               });
             } else {
               gemm_into(g, saved_x, dw, {1, out_features, in, rows, true, false, 0, 0, 0});
             }
           }
           if (need_b && !(cpu && need_w)) {  // db [out] = Σ_r dY[r, :]
             if (!cpu) {
               device_kernels("backward", "gradient", g).sum_rows(g, rows, out_features, db);
             } else {
               dispatch(g.dtype(), [&]<class T>() {
                 column_sums(g.data<T>(), db.data<T>(), rows, out_features);
               });
             }
           }
           std::vector<Tensor> grads = {dx, dw};
           if (has_bias) grads.push_back(db);
           return grads;
         });
  return out;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  return linear_node("linear", x, weight, bias);
}

Tensor relu_dropout_linear(const Tensor& x, double p, bool training, Generator& gen,
                           const Tensor& weight, const Tensor& bias) {
  check_linear("relu_dropout_linear", x, weight, bias);
  POLYAK_CHECK(p >= 0 && p < 1, "relu_dropout_linear: p is ", p, ", expected p in [0, 1)");
  if (!x.device().is_cpu()) return linear(relu_dropout(x, p, training, gen), weight, bias);
  Tensor h;
  {
    NoGradGuard no_grad;  // relu_dropout's values; the gradient is linear_node's
    h = relu_dropout(x, p, training, gen);
  }
  return linear_node("relu_dropout_linear", h, weight, bias, x,
                     training && p > 0 ? 1 / (1 - p) : 1.0);
}

}  // namespace polyak
