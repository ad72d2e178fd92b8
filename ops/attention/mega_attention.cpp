// Mega's chunked attention with a relative position bias, and its recurrent step.
// docs/math.md §6; Ma et al. 2022; facebookresearch/mega MovingAverageGatedAttention
// and SimpleRelativePositionalBias.
//
// Dimension legend: B batch, N positions, D query/key width, Dv value width, W window
// (chunk length ≤ N), L bias reach (rel_bias [2L − 1]). q, k [B,N,D], v [B,N,Dv] →
// y [B,N,Dv]. Per (b, chunk), with local positions i, j ∈ [0, len) (len = W, or less for
// the last chunk), the mask m_ij = [j ≤ i] when causal (else 1) and scale c = 1/√D
// (softmax) or 1/L (laplace):
//
//   S_ij = c · q_i·k_j + b[j − i + L − 1]                        [len,len]
//   softmax: P_ij = m_ij exp(S_ij) / Σ_l m_il exp(S_il)           saved: P
//   laplace: P_ij = m_ij f(S_ij),  f(s) = ½(1 + erf((s − μ)/(σ√2)))   saved: S
//   y_i = Σ_j P_ij v_j                                            [B,N,Dv]
//
// Backward. Given dy:
//   dv_j  = Σ_i P_ij dy_i                                         [B,N,Dv]
//   dP_ij = dy_i · v_j
//   softmax: dS_ij = P_ij (dP_ij − Σ_l dP_il P_il)
//   laplace: dS_ij = m_ij f′(S_ij) dP_ij,  f′(s) = exp(−(s − μ)²/(2σ²)) / (σ√(2π))
//   dq_i  = c Σ_j dS_ij k_j                                       [B,N,D]
//   dk_j  = c Σ_i dS_ij q_i                                       [B,N,D]
//   db[o + L − 1] = Σ_{chunks} Σ_{j − i = o} dS_ij                [2L − 1]
// Masked entries have P_ij = 0 (softmax) or are zeroed (laplace), so they drop out of every
// sum. The products are GEMMs on blocks of query rows (causal blocks skip the keys no row
// of theirs sees), one (b, chunk) per task; db is summed per task, then over the tasks in
// order. The saved [B,N,W] tensor holds each row's len entries.
#include "polyak/ops/attention/mega_attention.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <numbers>
#include <type_traits>
#include <unsupported/Eigen/SpecialFunctions>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/backend.h"
#include "polyak/core/kernels_attention.h"
#include "polyak/core/kernels_shape.h"
#include "polyak/core/threads.h"
#include "polyak/ops/attention/attention_checks.h"
#include "polyak/ops/attention/eigen_maps.h"
#include "polyak/ops/attention/vec.h"

namespace polyak {
namespace {

using detail::ConstMatrixMap;
using detail::Matrix;
using detail::MatrixMap;

// A [rows, cols] block with row stride `stride` (a chunk's rows of the saved [B,N,W]).
template <class T>
using StridedMap = Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstStridedMap = Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using RowArray = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
template <class T>
using ConstRowArray = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;

// Query rows per GEMM block.
constexpr int64_t kRowBlock = 64;
// Capacity of a KV cache grown from a smaller one.
constexpr int64_t kMinCacheCapacity = 64;

// The laplace function and its derivative, μ = √½, σ = √(1/(4π)), on Eigen arrays
// (vectorised erf and exp). out = f(s) or out = out ⊙ f′(s).
struct Laplace {
  static constexpr double kMu = 0.70710678118654752440;
  static constexpr double kSigma = 0.28209479177387814347;
  template <class In, class Out>
  static void f(const In& s, Out&& out) {
    using T = typename In::Scalar;
    out = T(0.5) * (T(1) + ((s - T(kMu)) * T(1.0 / (kSigma * std::numbers::sqrt2))).erf());
  }
  template <class In, class Out>
  static void times_df(const In& s, Out&& out) {
    using T = typename In::Scalar;
    const T norm = T(1.0 / (kSigma * std::sqrt(2.0 * std::numbers::pi)));
    out *= (T(-0.5) * ((s - T(kMu)) * T(1.0 / kSigma)).square()).exp() * norm;
  }
};

// One query row's weights from its scores over the keys it sees, in place: softmax or
// laplace. Shared by the parallel form and the step, so that both round alike.
template <class Row>
void activate(MegaScore score, Row&& s) {
  using T = typename std::decay_t<Row>::Scalar;
  if (score == MegaScore::softmax) {
    s = (s - s.maxCoeff()).exp();
    s *= T(1) / s.sum();
  } else {
    Laplace::f(s, s);
  }
}

struct MegaDims {
  int64_t B = 0, N = 0, D = 0, Dv = 0, W = 0, L = 0;
  int64_t chunks() const { return W > 0 ? (N + W - 1) / W : 0; }
};

template <class T>
T score_scale(MegaScore score, int64_t D, int64_t L) {
  if (score == MegaScore::laplace) return T(1) / static_cast<T>(L);
  return D > 0 ? T(1) / std::sqrt(static_cast<T>(D)) : T(1);
}

// rel_bias [2L − 1] with q's dtype and device; returns L.
int64_t check_rel_bias(const char* fn, const Tensor& rel_bias, const Tensor& q) {
  check_rank(fn, "rel_bias", rel_bias, 1, "[2L − 1]");
  const int64_t entries = rel_bias.size(0);
  POLYAK_CHECK(entries % 2 == 1, fn, ": rel_bias has shape ", rel_bias.shape(),
               ", expected [2L − 1] (an odd number of offsets, −(L − 1) … L − 1)");
  check_same_dtype(fn, "q", q, "rel_bias", rel_bias);
  check_same_device(fn, "q", q, "rel_bias", rel_bias);
  return (entries + 1) / 2;
}

// ---- forward ---------------------------------------------------------------------------

// One chunk: y [len,Dv] from q, k [len,D], v [len,Dv]. S is the chunk's rows of the saved
// tensor: P (softmax) or the scores (laplace). P is [kRowBlock, W] scratch for laplace.
template <class T>
void forward_chunk(MegaScore score, bool causal, T scale, int64_t L, const T* bias,
                   ConstMatrixMap<T> q, ConstMatrixMap<T> k, ConstMatrixMap<T> v, StridedMap<T> S,
                   MatrixMap<T> y, Matrix<T>& P) {
  const int64_t len = q.rows();
  for (int64_t r0 = 0; r0 < len; r0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, len - r0), seen_max = causal ? r0 + rows : len;
    S.block(r0, 0, rows, seen_max).noalias() =
        scale * q.middleRows(r0, rows) * k.topRows(seen_max).transpose();
    for (int64_t i = r0; i < r0 + rows; ++i) {
      const int64_t seen = causal ? i + 1 : len;
      auto live = S.row(i).head(seen).array();
      live += ConstRowArray<T>(bias + (L - 1 - i), seen);  // rel_bias[j − i + L − 1]
      S.row(i).tail(len - seen).setZero();
      if (score == MegaScore::softmax) {
        activate(score, live);
      } else {
        P.row(i - r0).head(seen).array() = live;
        activate(score, P.row(i - r0).head(seen).array());
        P.row(i - r0).segment(seen, seen_max - seen).setZero();
      }
    }
    if (score == MegaScore::softmax)
      y.middleRows(r0, rows).noalias() = S.block(r0, 0, rows, seen_max) * v.topRows(seen_max);
    else
      y.middleRows(r0, rows).noalias() = P.topLeftCorner(rows, seen_max) * v.topRows(seen_max);
  }
}

template <class T>
void mega_forward(const MegaDims& d, MegaScore score, bool causal, const T* q, const T* k,
                  const T* v, const T* bias, T* saved, T* y) {
  const int64_t N = d.N, D = d.D, Dv = d.Dv, W = d.W, nc = d.chunks();
  const T scale = score_scale<T>(score, D, d.L);
  parallel_for(d.B * nc, W * W * (D + Dv) + 1, [&](int64_t begin, int64_t end) {
    const bool laplace = score == MegaScore::laplace;
    Matrix<T> P(laplace ? std::min(kRowBlock, W) : 0, laplace ? W : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nc, r0 = (task % nc) * W, len = std::min(W, N - r0);
      const int64_t row = b * N + r0;
      forward_chunk<T>(score, causal, scale, d.L, bias, ConstMatrixMap<T>(q + row * D, len, D),
                       ConstMatrixMap<T>(k + row * D, len, D),
                       ConstMatrixMap<T>(v + row * Dv, len, Dv),
                       StridedMap<T>(saved + row * W, len, len, Eigen::OuterStride<>(W)),
                       MatrixMap<T>(y + row * Dv, len, Dv), P);
    }
  });
}

// ---- backward --------------------------------------------------------------------------

// One chunk: writes (overwrites) dq, dk [len,D] and dv [len,Dv]; adds the chunk's dS
// diagonals into db [2L − 1]. P and dS are [kRowBlock, W] scratch.
template <class T>
void backward_chunk(MegaScore score, bool causal, T scale, int64_t L, ConstMatrixMap<T> q,
                    ConstMatrixMap<T> k, ConstMatrixMap<T> v, ConstStridedMap<T> saved,
                    ConstMatrixMap<T> dy, MatrixMap<T> dq, MatrixMap<T> dk, MatrixMap<T> dv, T* db,
                    Matrix<T>& P, Matrix<T>& dS) {
  const int64_t len = q.rows();
  dk.setZero();
  dv.setZero();
  for (int64_t r0 = 0; r0 < len; r0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, len - r0), seen_max = causal ? r0 + rows : len;
    auto dSb = dS.topLeftCorner(rows, seen_max);
    dSb.noalias() = dy.middleRows(r0, rows) * v.topRows(seen_max).transpose();  // dP
    if (score == MegaScore::softmax) {
      const auto Pb = saved.block(r0, 0, rows, seen_max);
      dv.topRows(seen_max).noalias() += Pb.transpose() * dy.middleRows(r0, rows);
      for (int64_t r = 0; r < rows; ++r) {
        const T rowsum = (dSb.row(r).array() * Pb.row(r).array()).sum();
        dSb.row(r).array() = Pb.row(r).array() * (dSb.row(r).array() - rowsum);
      }
    } else {
      auto Pb = P.topLeftCorner(rows, seen_max);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t seen = causal ? r0 + r + 1 : len;
        const auto s = saved.row(r0 + r).head(seen).array();
        Laplace::f(s, Pb.row(r).head(seen).array());
        Laplace::times_df(s, dSb.row(r).head(seen).array());
        Pb.row(r).tail(seen_max - seen).setZero();
        dSb.row(r).tail(seen_max - seen).setZero();
      }
      dv.topRows(seen_max).noalias() += Pb.transpose() * dy.middleRows(r0, rows);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r0 + r, seen = causal ? i + 1 : len;
      T* b = db + (L - 1 - i);
      for (int64_t j = 0; j < seen; ++j) b[j] += dSb(r, j);
    }
    dq.middleRows(r0, rows).noalias() = scale * dSb * k.topRows(seen_max);
    dk.topRows(seen_max).noalias() += scale * dSb.transpose() * q.middleRows(r0, rows);
  }
}

template <class T>
void mega_backward(const MegaDims& d, MegaScore score, bool causal, const T* q, const T* k,
                   const T* v, const T* saved, const T* dy, T* dq, T* dk, T* dv, T* db_tasks) {
  const int64_t N = d.N, D = d.D, Dv = d.Dv, W = d.W, nc = d.chunks(), nb = 2 * d.L - 1;
  const T scale = score_scale<T>(score, D, d.L);
  parallel_for(d.B * nc, 2 * W * W * (D + Dv) + 1, [&](int64_t begin, int64_t end) {
    const int64_t block = std::min(kRowBlock, W);
    Matrix<T> P(score == MegaScore::laplace ? block : 0, score == MegaScore::laplace ? W : 0);
    Matrix<T> dS(block, W);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nc, r0 = (task % nc) * W, len = std::min(W, N - r0);
      const int64_t row = b * N + r0;
      T* db = db_tasks + task * nb;
      std::fill_n(db, nb, T(0));
      backward_chunk<T>(
          score, causal, scale, d.L, ConstMatrixMap<T>(q + row * D, len, D),
          ConstMatrixMap<T>(k + row * D, len, D), ConstMatrixMap<T>(v + row * Dv, len, Dv),
          ConstStridedMap<T>(saved + row * W, len, len, Eigen::OuterStride<>(W)),
          ConstMatrixMap<T>(dy + row * Dv, len, Dv), MatrixMap<T>(dq + row * D, len, D),
          MatrixMap<T>(dk + row * D, len, D), MatrixMap<T>(dv + row * Dv, len, Dv), db, P, dS);
    }
  });
}

// [tasks, 2L − 1] → [2L − 1], summed over the tasks in order (deterministic).
Tensor sum_task_rows(const Tensor& partial) {
  const int64_t tasks = partial.size(0), nb = partial.size(1);
  Tensor out = Tensor::zeros({nb}, partial.dtype());
  dispatch(partial.dtype(), [&]<class T>() {
    const T* p = partial.data<T>();
    T* o = out.data<T>();
    for (int64_t t = 0; t < tasks; ++t)
      for (int64_t i = 0; i < nb; ++i) o[i] += p[t * nb + i];
  });
  return out;
}

// ---- step ------------------------------------------------------------------------------

template <class T>
void mega_step(MegaScore score, int64_t B, int64_t C, int64_t D, int64_t Dv, int64_t L, int64_t row,
               const T* q, const T* kc, const T* vc, const T* bias, T* y) {
  const T scale = score_scale<T>(score, D, L);
  parallel_for(B, (row + 1) * (D + Dv) + 1, [&](int64_t begin, int64_t end) {
    std::vector<T> p(static_cast<size_t>(row + 1));
    for (int64_t b = begin; b < end; ++b) {
      const T* qb = q + b * D;
      const T* kb = kc + b * C * D;
      const T* vb = vc + b * C * Dv;
      const T* rb = bias + (L - 1 - row);
      for (int64_t j = 0; j <= row; ++j)
        p[static_cast<size_t>(j)] = scale * detail::dot(D, qb, kb + j * D) + rb[j];
      activate(score, RowArray<T>(p.data(), row + 1));
      T* yb = y + b * Dv;
      std::fill_n(yb, Dv, T(0));
      for (int64_t j = 0; j <= row; ++j)
        detail::axpy(Dv, p[static_cast<size_t>(j)], vb + j * Dv, yb);
    }
  });
}

// ---- on a device -----------------------------------------------------------------------

MegaAttentionArgs device_args(const MegaDims& d, bool causal, MegaScore score) {
  return MegaAttentionArgs{d.W, d.L, causal, score == MegaScore::laplace};
}

// q, k, v, rel_bias on one device: the backend's chunked attention (core/kernels_attention.h),
// forward and backward; the saved scores are padded to whole chunks there.
Tensor mega_on_device(const MegaDims& d, const Tensor& q, const Tensor& k, const Tensor& v,
                      const Tensor& rel_bias, bool causal, MegaScore score) {
  constexpr const char* fn = "mega_attention";
  const auto forward =
      device_kernel(fn, "q", q, &DeviceBackend::attention, &AttentionKernels::mega_attention);
  const Device dev = q.device();
  const MegaAttentionArgs args = device_args(d, causal, score);
  Tensor y = Tensor::empty({d.B, d.N, d.Dv}, DType::f32, dev);
  Tensor saved = Tensor::empty({d.B * d.chunks(), d.W, d.W}, DType::f32, dev);
  forward(q, k, v, rel_bias, args, y, saved);

  const char* node =
      score == MegaScore::softmax ? "MegaSoftmaxAttentionBackward" : "MegaLaplaceAttentionBackward";
  record(y, node, {q, k, v, rel_bias},
         [q, k, v, saved, d, args, node](const Tensor& dy) -> std::vector<Tensor> {
           const Device at = dy.device();
           Tensor dq = Tensor::empty(q.shape(), DType::f32, at);
           Tensor dk = Tensor::empty(k.shape(), DType::f32, at);
           Tensor dv = Tensor::empty(v.shape(), DType::f32, at);
           Tensor db = Tensor::empty({2 * d.L - 1}, DType::f32, at);
           device_kernel(node, "gradient", dy, &DeviceBackend::attention,
                         &AttentionKernels::mega_attention_backward)(q, k, v, saved, dy, args, dq,
                                                                     dk, dv, db);
           return {dq, dk, dv, db};
         });
  return y;
}

// Row `row` of the cache [B,C,W] = x [B,W], on the device.
void write_row(const char* fn, const char* arg, const Tensor& x, Tensor& cache, int64_t row) {
  const int64_t W = x.size(1);
  device_kernel(fn, arg, cache, &DeviceBackend::shape, &ShapeKernels::copy_blocks)(
      x, W, 0, cache, cache.size(1) * W, row * W, x.size(0), W);
}

Tensor mega_step_on_device(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& k_cache,
                           Tensor& v_cache, int64_t row, const Tensor& rel_bias, MegaScore score,
                           int64_t L) {
  constexpr const char* fn = "mega_attention_step";
  const auto step =
      device_kernel(fn, "q", q, &DeviceBackend::attention, &AttentionKernels::mega_attention_step);
  detail::grow_when_full(k_cache, v_cache, row, kMinCacheCapacity);  // on the device
  write_row(fn, "k_cache", k, k_cache, row);
  write_row(fn, "v_cache", v, v_cache, row);
  Tensor y = Tensor::empty({q.size(0), v.size(1)}, DType::f32, q.device());
  const MegaAttentionArgs args{row + 1, L, true, score == MegaScore::laplace};
  step(q, k_cache, v_cache, row, rel_bias, args, y);
  return y;
}

}  // namespace

const char* to_string(MegaScore score) {
  return score == MegaScore::laplace ? "laplace" : "softmax";
}

MegaScore parse_mega_score(const std::string& name) {
  if (name == "softmax") return MegaScore::softmax;
  if (name == "laplace") return MegaScore::laplace;
  fail("parse_mega_score: score = '", name, "' is not one of: softmax, laplace");
}

Tensor mega_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& rel_bias,
                      int64_t chunk, bool causal, MegaScore score) {
  constexpr const char* fn = "mega_attention";
  detail::check_rank3_qkv(fn, q, k, v, "[B,N,D]", "[B,N,Dv]", "B,N",
                          /*on_device=*/!q.device().is_cpu());
  const Shape& qs = q.shape();
  const int64_t L = check_rel_bias(fn, rel_bias, q);
  POLYAK_CHECK(chunk > 0, fn, ": chunk = ", chunk, ", expected a positive chunk length");
  const MegaDims d{qs[0], qs[1], qs[2], v.size(2), std::min(chunk, qs[1]), L};
  POLYAK_CHECK(L >= d.W, fn, ": rel_bias has ", 2 * L - 1, " entries (L = ", L, "), expected L ≥ ",
               d.W, " = min(chunk, N) so that every offset inside a chunk has a bias");
  if (!q.device().is_cpu()) return mega_on_device(d, q, k, v, rel_bias, causal, score);

  const DType dtype = q.dtype();
  Tensor y = Tensor::empty({d.B, d.N, d.Dv}, dtype);
  Tensor saved = Tensor::empty({d.B, d.N, d.W}, dtype);
  dispatch(dtype, [&]<class T>() {
    mega_forward<T>(d, score, causal, q.data<T>(), k.data<T>(), v.data<T>(), rel_bias.data<T>(),
                    saved.data<T>(), y.data<T>());
  });

  record(
      y,
      score == MegaScore::softmax ? "MegaSoftmaxAttentionBackward" : "MegaLaplaceAttentionBackward",
      {q, k, v, rel_bias},
      [q, k, v, saved, d, causal, score](const Tensor& dy) -> std::vector<Tensor> {
        const DType dt = q.dtype();
        Tensor dq = Tensor::empty(q.shape(), dt);
        Tensor dk = Tensor::empty(k.shape(), dt);
        Tensor dv = Tensor::empty(v.shape(), dt);
        Tensor db = Tensor::empty({d.B * d.chunks(), 2 * d.L - 1}, dt);
        dispatch(dt, [&]<class T>() {
          mega_backward<T>(d, score, causal, q.data<T>(), k.data<T>(), v.data<T>(), saved.data<T>(),
                           dy.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>(), db.data<T>());
        });
        return {dq, dk, dv, sum_task_rows(db)};
      });
  return y;
}

Tensor mega_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& k_cache,
                           Tensor& v_cache, int64_t row, const Tensor& rel_bias, MegaScore score) {
  constexpr const char* fn = "mega_attention_step";
  check_rank(fn, "q", q, 2, "[B,D]");
  check_rank(fn, "k", k, 2, "[B,D]");
  check_rank(fn, "v", v, 2, "[B,Dv]");
  check_rank(fn, "k_cache", k_cache, 3, "[B,C,D]");
  check_rank(fn, "v_cache", v_cache, 3, "[B,C,Dv]");
  check_same_dtype(fn, "q", q, "k", k);
  check_same_dtype(fn, "q", q, "v", v);
  check_same_dtype(fn, "q", q, "k_cache", k_cache);
  check_same_dtype(fn, "q", q, "v_cache", v_cache);
  check_same_device(fn, "q", q, "k", k);
  check_same_device(fn, "q", q, "v", v);
  check_same_device(fn, "q", q, "k_cache", k_cache);
  check_same_device(fn, "q", q, "v_cache", v_cache);
  const int64_t B = q.size(0), D = q.size(1), Dv = v.size(1), C = k_cache.size(1);
  POLYAK_CHECK(k.shape() == q.shape(), fn, ": k has shape ", k.shape(),
               ", expected [B,D] = ", q.shape(), " matching q");
  POLYAK_CHECK(v.size(0) == B, fn, ": v has shape ", v.shape(), ", expected [B,Dv] with B = ", B,
               " matching q");
  const Shape k_expected{B, C, D}, v_expected{B, C, Dv};
  POLYAK_CHECK(k_cache.shape() == k_expected, fn, ": k_cache has shape ", k_cache.shape(),
               ", expected [B,C,D] = ", k_expected, " matching q ", q.shape());
  POLYAK_CHECK(v_cache.shape() == v_expected, fn, ": v_cache has shape ", v_cache.shape(),
               ", expected [B,C,Dv] = ", v_expected, " matching k_cache in C and v in Dv");
  POLYAK_CHECK(!k_cache.shares_storage(v_cache), fn,
               ": k_cache and v_cache share storage, expected two distinct caches");
  const int64_t L = check_rel_bias(fn, rel_bias, q);
  POLYAK_CHECK(row >= 0 && row <= C, fn, ": row = ", row, ", expected in [0, ", C,
               "] (the cache capacity)");
  POLYAK_CHECK(row < L, fn, ": row = ", row, ", expected < L = ", L,
               " (rel_bias has offsets down to −(L − 1) only)");
  if (!q.device().is_cpu())
    return mega_step_on_device(q, k, v, k_cache, v_cache, row, rel_bias, score, L);

  detail::grow_when_full(k_cache, v_cache, row, kMinCacheCapacity);
  const int64_t cap = k_cache.size(1);
  Tensor y = Tensor::empty({B, Dv}, q.dtype());
  dispatch(q.dtype(), [&]<class T>() {
    T* kc = k_cache.data<T>();
    T* vc = v_cache.data<T>();
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(k.data<T>() + b * D, D, kc + (b * cap + row) * D);
      std::copy_n(v.data<T>() + b * Dv, Dv, vc + (b * cap + row) * Dv);
    }
    mega_step<T>(score, B, cap, D, Dv, L, row, q.data<T>(), kc, vc, rel_bias.data<T>(),
                 y.data<T>());
  });
  return y;
}

}  // namespace polyak
