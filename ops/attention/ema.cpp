// Mega's multi-dimensional damped EMA: the sweep, its backward with checkpoints, and the
// recurrent step. docs/math.md §6; Ma et al. 2022; facebookresearch/mega MultiHeadEMA
// (which evaluates the same recurrence as a convolution by FFT).
//
// Dimension legend: B batch, N positions, C channels, n EMA dimensions per channel.
// x [B,N,C]; g, q, w [C,n] → y [B,N,C]. Per (b, c), with h_{−1} = 0:
//
//   h_t = g ⊙ x_t + q ⊙ h_{t−1}         [n]
//   y_t = w · h_t                        []
//
// Backward. Let a_t = ∂L/∂h_t, the gradient reaching h_t through y_t and through h_{t+1}
// (∂h_{t+1}/∂h_t = diag(q)):
//
//   a_t  = w dy_t + q ⊙ a_{t+1}          (a_N = 0; a reverse sweep)          [n]
//   dx_t = g · a_t                                                            [B,N,C]
//   dg   = Σ_{b,t} a_t x_t                                                    [C,n]
//   dq   = Σ_{b,t} a_t ⊙ h_{t−1}                                              [C,n]
//   dw   = Σ_{b,t} h_t dy_t                                                   [C,n]
//
// dq and dw need h_t in the reverse sweep. Storing h for every position would cost n times
// the activation (N·C·n), so the forward keeps h only where a segment of kEmaSegment
// positions starts (h_{sK−1}, zero for s = 0; N·C·n/K in all) and the backward walks the
// segments from last to first, recomputing each segment's h from its checkpoint into a
// K·n scratch per channel before sweeping it in reverse. Time O(N·C·n) both ways; y and
// every gradient are exact (the recomputation repeats the forward's arithmetic).
//
// `reverse` runs everything with t ↦ N − 1 − t: h_t = g ⊙ x_t + q ⊙ h_{t+1}.
//
// Layout of the work. Tasks are (b, block of channels), a block being one cache line of a
// position's channels (16 f32, 8 f64): the block's channels are the vector lanes, since
// one position's channels are contiguous in x and the coefficients are transposed to
// [n, C]. Within a segment the loop over the n dimensions is outside and the loop over
// positions inside, so that one dimension's state (or gradient a), coefficients and
// gradient sums stay in registers while it runs down the segment; y and dx of the
// segment collect in an L1 buffer. No horizontal sums. The parameter gradients are summed
// per batch row first and over B at the end, so no two threads write one element.
#include "polyak/ops/attention/ema.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/backend.h"
#include "polyak/core/kernels_attention.h"
#include "polyak/core/threads.h"

namespace polyak {
namespace {

// Channels per task: one cache line of a position's channels.
template <class T>
constexpr int64_t kBlock = 64 / static_cast<int64_t>(sizeof(T));

struct EmaDims {
  int64_t B = 0, N = 0, C = 0, n = 0;
  int64_t segments() const { return (N + kEmaSegment - 1) / kEmaSegment; }
  template <class T>
  int64_t blocks() const {
    return (C + kBlock<T> - 1) / kBlock<T>;
  }
  // Offset of position i of the sweep (t = i, or N − 1 − i in reverse) of batch row b.
  int64_t row(bool reverse, int64_t b, int64_t i) const {
    return (b * N + (reverse ? N - 1 - i : i)) * C;
  }
};

// g, q, w [C,n] with x's dtype and device; C is x's last extent.
void check_coefficients(const char* fn, const Tensor& x, int64_t C, const Tensor& g,
                        const Tensor& q, const Tensor& w) {
  check_rank(fn, "g", g, 2, "[C,n]");
  check_rank(fn, "q", q, 2, "[C,n]");
  check_rank(fn, "w", w, 2, "[C,n]");
  POLYAK_CHECK(g.size(0) == C, fn, ": g has shape ", g.shape(), ", expected [C,n] with C = ", C,
               " matching x ", x.shape());
  POLYAK_CHECK(q.shape() == g.shape(), fn, ": q has shape ", q.shape(),
               ", expected [C,n] = ", g.shape(), " matching g");
  POLYAK_CHECK(w.shape() == g.shape(), fn, ": w has shape ", w.shape(),
               ", expected [C,n] = ", g.shape(), " matching g");
  check_same_dtype(fn, "x", x, "g", g);
  check_same_dtype(fn, "x", x, "q", q);
  check_same_dtype(fn, "x", x, "w", w);
  check_same_device(fn, "x", x, "g", g);
  check_same_device(fn, "x", x, "q", q);
  check_same_device(fn, "x", x, "w", w);
}

// The coefficients transposed to [n, C]: row k holds dimension k of every channel.
template <class T>
struct Coefficients {
  std::vector<T> g, q, w;
  Coefficients(const T* g_cn, const T* q_cn, const T* w_cn, int64_t C, int64_t n)
      : g(static_cast<size_t>(C * n)), q(g.size()), w(g.size()) {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < n; ++k) {
        g[static_cast<size_t>(k * C + c)] = g_cn[c * n + k];
        q[static_cast<size_t>(k * C + c)] = q_cn[c * n + k];
        w[static_cast<size_t>(k * C + c)] = w_cn[c * n + k];
      }
  }
};

// One block's view of a segment: `steps` positions, position i at offset rows[i] from the
// block's first channel, and cb channels. A full block (kCB = kBlock) has its width fixed
// at compile time so that its lane vectors live in registers; the last, partial block
// (kCB = 0) reads it at run time.
template <class T, int64_t kCB>
struct Segment {
  int64_t cb_runtime, steps, C;
  const int64_t* rows;
  int64_t cb() const { return kCB > 0 ? kCB : cb_runtime; }
};

// to[c] = from[c], c < count, as a plain loop: the lane arrays it fills or empties must not
// have their address escape (as through std::copy_n), or they leave the registers.
template <class T>
inline void copy_lanes(int64_t count, const T* from, T* to) {
#pragma omp simd
  for (int64_t c = 0; c < count; ++c) to[c] = from[c];
}

// ---- forward ---------------------------------------------------------------------------

// Dimensions [k0, k0 + kDims) of one block over one segment: h [n][cb] is the state
// before the segment and after it. kStates: every state goes to out [n][steps][cb] (the
// backward's recomputation); otherwise w ⊙ h is added to out [steps][cb] (y).
template <int kDims, bool kStates, class T, int64_t kCB>
void forward_dims(const Segment<T, kCB>& s, int64_t k0, const T* x, const T* g, const T* q,
                  const T* w, T* h, T* out) {
  const int64_t cb = s.cb();
  T gk[kDims][kBlock<T>], qk[kDims][kBlock<T>], wk[kDims][kBlock<T>], hk[kDims][kBlock<T>];
  for (int e = 0; e < kDims; ++e) {
    copy_lanes(cb, g + (k0 + e) * s.C, gk[e]);
    copy_lanes(cb, q + (k0 + e) * s.C, qk[e]);
    copy_lanes(cb, w + (k0 + e) * s.C, wk[e]);
    copy_lanes(cb, h + (k0 + e) * cb, hk[e]);
  }
  for (int64_t i = 0; i < s.steps; ++i) {
    const T* xt = x + s.rows[i];
    for (int e = 0; e < kDims; ++e) {
      T* o = kStates ? out + ((k0 + e) * s.steps + i) * cb : out + i * cb;
#pragma omp simd
      for (int64_t c = 0; c < cb; ++c) {
        hk[e][c] = std::fma(qk[e][c], hk[e][c], gk[e][c] * xt[c]);
        if constexpr (kStates)
          o[c] = hk[e][c];
        else
          o[c] += wk[e][c] * hk[e][c];
      }
    }
  }
  for (int e = 0; e < kDims; ++e) copy_lanes(cb, hk[e], h + (k0 + e) * cb);
}

// Every dimension of one block over one segment, two at a time: the recurrence is a chain
// of dependent FMAs per dimension, and two chains keep the FMA units busy.
template <bool kStates, class T, int64_t kCB>
void forward_segment(const Segment<T, kCB>& s, int64_t n, const T* x, const T* g, const T* q,
                     const T* w, T* h, T* out) {
  if constexpr (!kStates) std::fill_n(out, s.steps * s.cb(), T(0));
  int64_t k = 0;
  for (; k + 2 <= n; k += 2) forward_dims<2, kStates>(s, k, x, g, q, w, h, out);
  if (k < n) forward_dims<1, kStates>(s, k, x, g, q, w, h, out);
}

// y (and, when ckpt is not null, h where each segment starts: ckpt [B,S,n,C]).
template <class T>
void ema_forward(const EmaDims& d, bool reverse, const T* x, const Coefficients<T>& coef, T* y,
                 T* ckpt) {
  const int64_t N = d.N, C = d.C, n = d.n, S = d.segments(), blocks = d.blocks<T>();
  parallel_for(d.B * blocks, 4 * N * std::min(C, kBlock<T>) * n, [&](int64_t begin, int64_t end) {
    std::vector<T> h(static_cast<size_t>(n * kBlock<T>));
    std::vector<T> ys(static_cast<size_t>(kEmaSegment * kBlock<T>));
    std::vector<int64_t> rows(kEmaSegment);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, c0 = (task % blocks) * kBlock<T>;
      const int64_t cb = std::min(kBlock<T>, C - c0);
      std::fill(h.begin(), h.end(), T(0));
      for (int64_t s = 0; s < S; ++s) {
        const int64_t i0 = s * kEmaSegment, steps = std::min(kEmaSegment, N - i0);
        for (int64_t i = 0; i < steps; ++i)
          rows[static_cast<size_t>(i)] = d.row(reverse, b, i0 + i);
        if (ckpt != nullptr)
          for (int64_t k = 0; k < n; ++k)
            std::copy_n(h.data() + k * cb, cb, ckpt + ((b * S + s) * n + k) * C + c0);
        auto run = [&]<int64_t kCB>() {
          forward_segment<false>(Segment<T, kCB>{cb, steps, C, rows.data()}, n, x + c0,
                                 coef.g.data() + c0, coef.q.data() + c0, coef.w.data() + c0,
                                 h.data(), ys.data());
        };
        if (cb == kBlock<T>)
          run.template operator()<kBlock<T>>();
        else
          run.template operator()<0>();
        for (int64_t i = 0; i < steps; ++i)
          std::copy_n(ys.data() + i * cb, cb, y + rows[static_cast<size_t>(i)] + c0);
      }
    }
  });
}

// ---- backward --------------------------------------------------------------------------

// One block over one segment, positions last to first. hs [n][steps][cb] holds the states
// after each position and h_start [n][cb] the state before the first. a [n][cb] is the
// gradient reaching the state after the last position (updated to the one before the
// first); sg, sq, sw [n][cb] accumulate dg, dq, dw; dxs [steps][cb] receives dx.
template <class T, int64_t kCB>
void backward_segment(const Segment<T, kCB>& s, int64_t n, const T* x, const T* dy, const T* g,
                      const T* q, const T* w, const T* hs, const T* h_start, T* a, T* sg, T* sq,
                      T* sw, T* dxs) {
  const int64_t cb = s.cb();
  std::fill_n(dxs, s.steps * cb, T(0));
  for (int64_t k = 0; k < n; ++k) {
    T gk[kBlock<T>], qk[kBlock<T>], wk[kBlock<T>], ak[kBlock<T>];
    T dgk[kBlock<T>], dqk[kBlock<T>], dwk[kBlock<T>];
    copy_lanes(cb, g + k * s.C, gk);
    copy_lanes(cb, q + k * s.C, qk);
    copy_lanes(cb, w + k * s.C, wk);
    copy_lanes(cb, a + k * cb, ak);
    copy_lanes(cb, sg + k * cb, dgk);
    copy_lanes(cb, sq + k * cb, dqk);
    copy_lanes(cb, sw + k * cb, dwk);
    const T* hk = hs + k * s.steps * cb;
    for (int64_t i = s.steps - 1; i >= 0; --i) {
      const T* xt = x + s.rows[i];
      const T* dyt = dy + s.rows[i];
      const T* ht = hk + i * cb;
      const T* hp = i > 0 ? ht - cb : h_start + k * cb;  // h_{t−1}
      T* dxi = dxs + i * cb;
#pragma omp simd
      for (int64_t c = 0; c < cb; ++c) {
        ak[c] = std::fma(qk[c], ak[c], wk[c] * dyt[c]);
        dxi[c] += gk[c] * ak[c];
        dgk[c] += ak[c] * xt[c];
        dqk[c] += ak[c] * hp[c];
        dwk[c] += ht[c] * dyt[c];
      }
    }
    copy_lanes(cb, ak, a + k * cb);
    copy_lanes(cb, dgk, sg + k * cb);
    copy_lanes(cb, dqk, sq + k * cb);
    copy_lanes(cb, dwk, sw + k * cb);
  }
}

// Writes (overwrites) dx [B,N,C] and the per-batch-row partial sums dg, dq, dw [B,n,C].
// Segments from last to first: each one's states are recomputed from its checkpoint, then
// swept in reverse.
template <class T>
void ema_backward(const EmaDims& d, bool reverse, const T* x, const Coefficients<T>& coef,
                  const T* ckpt, const T* dy, T* dx, T* dg, T* dq, T* dw) {
  const int64_t N = d.N, C = d.C, n = d.n, S = d.segments(), blocks = d.blocks<T>();
  parallel_for(d.B * blocks, 10 * N * std::min(C, kBlock<T>) * n, [&](int64_t begin, int64_t end) {
    const size_t state = static_cast<size_t>(n * kBlock<T>);
    std::vector<T> hs(kEmaSegment * state), h_start(state), h(state), a(state);
    std::vector<T> sg(state), sq(state), sw(state);
    std::vector<T> dxs(static_cast<size_t>(kEmaSegment * kBlock<T>));
    std::vector<int64_t> rows(kEmaSegment);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, c0 = (task % blocks) * kBlock<T>;
      const int64_t cb = std::min(kBlock<T>, C - c0);
      const T* g = coef.g.data() + c0;
      const T* q = coef.q.data() + c0;
      const T* w = coef.w.data() + c0;
      for (std::vector<T>* v : {&a, &sg, &sq, &sw}) std::fill(v->begin(), v->end(), T(0));
      for (int64_t s = S - 1; s >= 0; --s) {
        const int64_t i0 = s * kEmaSegment, steps = std::min(kEmaSegment, N - i0);
        for (int64_t i = 0; i < steps; ++i)
          rows[static_cast<size_t>(i)] = d.row(reverse, b, i0 + i);
        for (int64_t k = 0; k < n; ++k)
          std::copy_n(ckpt + ((b * S + s) * n + k) * C + c0, cb, h_start.data() + k * cb);
        std::copy(h_start.begin(), h_start.end(), h.begin());
        auto run = [&]<int64_t kCB>() {
          const Segment<T, kCB> seg{cb, steps, C, rows.data()};
          forward_segment<true>(seg, n, x + c0, g, q, w, h.data(), hs.data());
          backward_segment(seg, n, x + c0, dy + c0, g, q, w, hs.data(), h_start.data(), a.data(),
                           sg.data(), sq.data(), sw.data(), dxs.data());
        };
        if (cb == kBlock<T>)
          run.template operator()<kBlock<T>>();
        else
          run.template operator()<0>();
        for (int64_t i = 0; i < steps; ++i)
          std::copy_n(dxs.data() + i * cb, cb, dx + rows[static_cast<size_t>(i)] + c0);
      }
      for (int64_t k = 0; k < n; ++k) {
        const int64_t at = (b * n + k) * C + c0;
        std::copy_n(sg.data() + k * cb, cb, dg + at);
        std::copy_n(sq.data() + k * cb, cb, dq + at);
        std::copy_n(sw.data() + k * cb, cb, dw + at);
      }
    }
  });
}

// [B,n,C] → [C,n], summed over B in order.
Tensor sum_batch_rows(const Tensor& partial) {
  const int64_t B = partial.size(0), n = partial.size(1), C = partial.size(2);
  Tensor out = Tensor::zeros({C, n}, partial.dtype());
  dispatch(partial.dtype(), [&]<class T>() {
    const T* p = partial.data<T>();
    T* o = out.data<T>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t e = 0; e < n; ++e)
        for (int64_t c = 0; c < C; ++c) o[c * n + e] += p[(b * n + e) * C + c];
  });
  return out;
}

// x, g, q, w on one device: the backend's scan (core/kernels_attention.h), forward and backward,
// with the same checkpoints.
Tensor ema_on_device(const EmaDims& d, const Tensor& x, const Tensor& g, const Tensor& q,
                     const Tensor& w, bool reverse) {
  constexpr const char* fn = "ema";
  const auto forward = device_kernel(fn, "x", x, &DeviceBackend::attention, &AttentionKernels::ema);
  const Device dev = x.device();
  const EmaArgs args{kEmaSegment, reverse};
  const bool grad = any_requires_grad({x, g, q, w});
  Tensor y = Tensor::empty(x.shape(), DType::f32, dev);
  Tensor ckpt = grad ? Tensor::empty({d.B, d.segments(), d.n, d.C}, DType::f32, dev) : Tensor();
  forward(x, g, q, w, args, y, ckpt);
  if (!grad) return y;

  const char* node = reverse ? "ReverseEmaBackward" : "EmaBackward";
  record(y, node, {x, g, q, w},
         [x, g, q, w, ckpt, d, args, node](const Tensor& dy) -> std::vector<Tensor> {
           const Device at = dy.device();
           Tensor dx = Tensor::empty(x.shape(), DType::f32, at);
           Tensor dg = Tensor::empty(g.shape(), DType::f32, at);
           Tensor dq = Tensor::empty(g.shape(), DType::f32, at);
           Tensor dw = Tensor::empty(g.shape(), DType::f32, at);
           device_kernel(node, "gradient", dy, &DeviceBackend::attention,
                         &AttentionKernels::ema_backward)(x, g, q, w, ckpt, dy, args, dx, dg, dq,
                                                          dw);
           return {dx, dg, dq, dw};
         });
  return y;
}

}  // namespace

Tensor ema(const Tensor& x, const Tensor& g, const Tensor& q, const Tensor& w, bool reverse) {
  constexpr const char* fn = "ema";
  check_rank(fn, "x", x, 3, "[B,N,C]");
  check_coefficients(fn, x, x.size(2), g, q, w);
  const EmaDims d{x.size(0), x.size(1), x.size(2), g.size(1)};
  if (!x.device().is_cpu()) return ema_on_device(d, x, g, q, w, reverse);
  const DType dtype = x.dtype();
  const bool grad = any_requires_grad({x, g, q, w});
  Tensor y = Tensor::empty(x.shape(), dtype);
  Tensor ckpt = grad ? Tensor::empty({d.B, d.segments(), d.n, d.C}, dtype) : Tensor();
  dispatch(dtype, [&]<class T>() {
    const Coefficients<T> k(g.data<T>(), q.data<T>(), w.data<T>(), d.C, d.n);
    ema_forward<T>(d, reverse, x.data<T>(), k, y.data<T>(), grad ? ckpt.data<T>() : nullptr);
  });
  if (!grad) return y;

  record(y, reverse ? "ReverseEmaBackward" : "EmaBackward", {x, g, q, w},
         [x, g, q, w, ckpt, d, reverse](const Tensor& dy) -> std::vector<Tensor> {
           const DType dt = x.dtype();
           Tensor dx = Tensor::empty(x.shape(), dt);
           Tensor dg = Tensor::empty({d.B, d.n, d.C}, dt);
           Tensor dq = Tensor::empty({d.B, d.n, d.C}, dt);
           Tensor dw = Tensor::empty({d.B, d.n, d.C}, dt);
           dispatch(dt, [&]<class T>() {
             const Coefficients<T> k(g.data<T>(), q.data<T>(), w.data<T>(), d.C, d.n);
             ema_backward<T>(d, reverse, x.data<T>(), k, ckpt.data<T>(), dy.data<T>(), dx.data<T>(),
                             dg.data<T>(), dq.data<T>(), dw.data<T>());
           });
           return {dx, sum_batch_rows(dg), sum_batch_rows(dq), sum_batch_rows(dw)};
         });
  return y;
}

Tensor ema_step(const Tensor& x, Tensor& h, const Tensor& g, const Tensor& q, const Tensor& w) {
  constexpr const char* fn = "ema_step";
  check_rank(fn, "x", x, 2, "[B,C]");
  const int64_t B = x.size(0), C = x.size(1);
  check_coefficients(fn, x, C, g, q, w);
  const int64_t n = g.size(1);
  const Shape expected{B, C, n};
  if (!h.defined()) h = Tensor::zeros(expected, x.dtype(), x.device());
  POLYAK_CHECK(h.shape() == expected, fn, ": h has shape ", h.shape(),
               ", expected [B,C,n] = ", expected, " matching x ", x.shape(), " and g ", g.shape());
  check_same_dtype(fn, "x", x, "h", h);
  check_same_device(fn, "x", x, "h", h);
  if (!x.device().is_cpu()) {
    const auto step =
        device_kernel(fn, "x", x, &DeviceBackend::attention, &AttentionKernels::ema_step);
    Tensor y = Tensor::empty({B, C}, DType::f32, x.device());
    step(x, h, g, q, w, y);
    return y;
  }
  Tensor y = Tensor::empty({B, C}, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* xp = x.data<T>();
    const T* gp = g.data<T>();
    const T* qp = q.data<T>();
    const T* wp = w.data<T>();
    T* hp = h.data<T>();
    T* yp = y.data<T>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) {
        T* hc = hp + (b * C + c) * n;
        T acc = T(0);
        for (int64_t e = 0; e < n; ++e) {
          hc[e] = std::fma(qp[c * n + e], hc[e], gp[c * n + e] * xp[b * C + c]);
          acc += wp[c * n + e] * hc[e];
        }
        yp[b * C + c] = acc;
      }
  });
  return y;
}

}  // namespace polyak
