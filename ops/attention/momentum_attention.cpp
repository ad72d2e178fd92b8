// Momentum attention (momentum transformer eq. 12–14; docs/math.md §3): the public entry points,
// the parameter checks, the non-causal form and the recurrent step. Inputs are already
// feature-mapped.
//
// ---- causal (eq. 12–13) -------------------------------------------------------------------
// Forms of the causal sweep (causal_sweep.h, causal_sweep_isa.cpp, where the formulas and
// gradients are): the exact weighting is its two states, E_i = β E_{i−1} + k_i v_iᵀ and
// s_i = s_{i−1} + γ E_i (eq. 12 with m = −E), read as y_i = s_iᵀ q_i / (q_i·z_i + ε); the
// reference weighting is one undecayed state with key j's term weighted by
// ω_j = γ (1 − β^{N−j})/(1 − β) (0-based). The recurrent step is eq. 12 verbatim:
//   m = β m − k vᵀ;  s = s − γ m;  z += k;  y = sᵀ q / (q·z + ε)
//
// Dimension legend: B batch, H heads, N query positions, M key positions, D query/key
// width, Dv value width. q [B,H,N,D], k [B,H,M,D], v [B,H,M,Dv] → y [B,H,N,Dv].
//
// ---- non-causal (eq. 14) ------------------------------------------------------------------
// Per (b, h) with true key length n (keys j ≥ n are padding):
//   ω_j = γ (1 − β^{n−j})/(1 − β)  (0-based j < n; 0 for j ≥ n)
//   S = Σ_j ω_j k_j v_jᵀ [D,Dv],  z = Σ_{j<n} k_j [D],  den_i = q_i·z + ε,  y_i = Sᵀ q_i / den_i
// Backward, with o_i = Sᵀ q_i:
//   do_i = dy_i / den_i,  dden_i = −(do_i·o_i) / den_i
//   dq_i = S do_i + dden_i z                                      [B,H,N,D]
//   dS = Σ_i q_i do_iᵀ [D,Dv],  dz = Σ_i dden_i q_i [D]
//   dk_j = ω_j dS v_j + dz,  dv_j = ω_j dSᵀ k_j  (j < n; 0 for padding)   [B,H,M,D], [B,H,M,Dv]
// Every product is a GEMM per (b, h), as in linear_attention.cpp. Saved: q, k, v, den.
#include "polyak/ops/attention/momentum_attention.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/threads.h"
#include "polyak/ops/attention/attention_checks.h"
#include "polyak/ops/attention/causal_sweep.h"
#include "polyak/ops/attention/eigen_maps.h"

namespace polyak {
namespace {

using detail::AttentionDims;
using detail::CausalSweep;
using detail::check_eps;

// ω_j = γ (1 − β^{n−j}) / (1 − β) for 0-based j < n: the weight of the last of n positions.
std::vector<double> last_position_weights(int64_t n, double beta, double gamma) {
  std::vector<double> w(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j)
    w[static_cast<size_t>(j)] =
        gamma * (1.0 - std::pow(beta, static_cast<double>(n - j))) / (1.0 - beta);
  return w;
}

// ---- non-causal (eq. 14) ---------------------------------------------------------------

using detail::ConstMatrixMap;
using detail::ConstVectorMap;
using detail::Matrix;
using detail::MatrixMap;
using detail::Vector;
using detail::VectorMap;

// Query rows per block in the backward: bounds its [rows, Dv] scratch.
constexpr int64_t kRowBlock = 256;

// S = Σ_{j<n} ω_j k_j v_jᵀ and z = Σ_{j<n} k_j over the first n keys.
template <class T>
void momentum_state(ConstMatrixMap<T> k, ConstMatrixMap<T> v, const Vector<T>& w, Matrix<T>& S,
                    Vector<T>& z) {
  const int64_t n = w.size();
  S.noalias() = k.topRows(n).transpose() * (w.asDiagonal() * v.topRows(n));
  z = k.topRows(n).colwise().sum().transpose();
}

template <class T>
void momentum_forward_head(ConstMatrixMap<T> q, ConstMatrixMap<T> k, ConstMatrixMap<T> v,
                           const Vector<T>& w, T eps, MatrixMap<T> y, VectorMap<T> den) {
  Matrix<T> S;
  Vector<T> z;
  momentum_state<T>(k, v, w, S, z);
  den.noalias() = q * z;
  den.array() += eps;
  y.noalias() = q * S;
  y.array().colwise() /= den.array();
}

// Writes (overwrites) dq [N,D], dk [M,D], dv [M,Dv]; padding keys get zero gradients.
template <class T>
void momentum_backward_head(ConstMatrixMap<T> q, ConstMatrixMap<T> k, ConstMatrixMap<T> v,
                            const Vector<T>& w, ConstVectorMap<T> den, ConstMatrixMap<T> dy,
                            MatrixMap<T> dq, MatrixMap<T> dk, MatrixMap<T> dv) {
  const int64_t N = q.rows(), n = w.size();
  Matrix<T> S;
  Vector<T> z;
  momentum_state<T>(k, v, w, S, z);
  Matrix<T> dS = Matrix<T>::Zero(S.rows(), S.cols());
  Vector<T> dz = Vector<T>::Zero(z.size());
  Matrix<T> o, dout;
  Vector<T> dden;
  for (int64_t r0 = 0; r0 < N; r0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, N - r0);
    const auto qb = q.middleRows(r0, rows);
    const auto denb = den.segment(r0, rows).array();
    o.noalias() = qb * S;
    dout = dy.middleRows(r0, rows).array().colwise() / denb;  // do_i = dy_i / den_i
    dden = -(dout.array() * o.array()).rowwise().sum() / denb;
    dq.middleRows(r0, rows).noalias() = dout * S.transpose() + dden * z.transpose();
    dS.noalias() += qb.transpose() * dout;
    dz.noalias() += qb.transpose() * dden;
  }
  dk.topRows(n).noalias() = w.asDiagonal() * (v.topRows(n) * dS.transpose());
  dk.topRows(n).rowwise() += dz.transpose();
  dv.topRows(n).noalias() = w.asDiagonal() * (k.topRows(n) * dS);
  dk.bottomRows(k.rows() - n).setZero();
  dv.bottomRows(v.rows() - n).setZero();
}

// ω for batch row b: γ (1 − β^{n−j})/(1 − β), j < n.
template <class T>
Vector<T> row_weights(const std::vector<int64_t>& lengths, int64_t b, int64_t M, double beta,
                      double gamma) {
  const int64_t n = lengths.empty() ? M : lengths[static_cast<size_t>(b)];
  const std::vector<double> w = last_position_weights(n, beta, gamma);
  return Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, 1>>(w.data(), n).cast<T>();
}

}  // namespace

// ---- public ------------------------------------------------------------------------------

const char* to_string(MomentumWeighting weighting) {
  return weighting == MomentumWeighting::exact ? "exact" : "reference";
}

MomentumWeighting parse_momentum_weighting(const std::string& name) {
  if (name == "exact") return MomentumWeighting::exact;
  if (name == "reference") return MomentumWeighting::reference;
  fail("parse_momentum_weighting: weighting \"", name, "\" is unknown, expected one of: exact, ",
       "reference");
}

void check_momentum_parameters(const char* fn, double beta, double gamma) {
  POLYAK_CHECK(std::isfinite(beta) && beta >= 0 && beta < 1, fn, ": beta = ", beta,
               ", expected in [0, 1)");
  POLYAK_CHECK(std::isfinite(gamma) && gamma > 0, fn, ": gamma = ", gamma,
               ", expected > 0 and finite");
}

Tensor causal_momentum_attention(const Tensor& q, const Tensor& k, const Tensor& v, double beta,
                                 double gamma, double eps, MomentumWeighting weighting) {
  constexpr const char* fn = "causal_momentum_attention";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/true,
                                                         /*on_device=*/true);
  check_momentum_parameters(fn, beta, gamma);
  check_eps(fn, eps);
  CausalSweep sweep;
  sweep.eps = eps;
  if (weighting == MomentumWeighting::reference) {
    sweep.decay = detail::SweepDecay::per_key;
    sweep.weights = last_position_weights(d.N, beta, gamma);
  } else {
    sweep.decay = detail::SweepDecay::per_head;
    sweep.momentum = true;
    sweep.decays.assign(static_cast<size_t>(d.H), beta);
    sweep.gamma = gamma;
  }
  return detail::causal_sweep(fn, "CausalMomentumAttentionBackward", d, q, k, v, sweep);
}

Tensor momentum_attention(const Tensor& q, const Tensor& k, const Tensor& v, double beta,
                          double gamma, double eps, const std::vector<int64_t>& lengths) {
  constexpr const char* fn = "momentum_attention";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/false,
                                                         /*on_device=*/true);
  check_momentum_parameters(fn, beta, gamma);
  check_eps(fn, eps);
  POLYAK_CHECK(lengths.empty() || static_cast<int64_t>(lengths.size()) == d.B, fn, ": lengths has ",
               lengths.size(), " entries, expected 0 or B = ", d.B);
  for (size_t b = 0; b < lengths.size(); ++b)
    POLYAK_CHECK(lengths[b] >= 1 && lengths[b] <= d.M, fn, ": lengths[", b, "] = ", lengths[b],
                 ", expected in [1, ", d.M, "] (the key length)");
  if (!q.device().is_cpu()) {
    // ω_bj = γ (1 − β^{n_b−j})/(1 − β) and μ_bj = 1 for j < n_b, both 0 for padding.
    LinearAttentionArgs args;
    args.weights.assign(static_cast<size_t>(d.B * d.M), 0.0f);
    args.key_mask.assign(static_cast<size_t>(d.B * d.M), 0.0f);
    for (int64_t b = 0; b < d.B; ++b) {
      const int64_t n = lengths.empty() ? d.M : lengths[static_cast<size_t>(b)];
      const std::vector<double> w = last_position_weights(n, beta, gamma);
      for (int64_t j = 0; j < n; ++j) {
        args.weights[static_cast<size_t>(b * d.M + j)] =
            static_cast<float>(w[static_cast<size_t>(j)]);
        args.key_mask[static_cast<size_t>(b * d.M + j)] = 1.0f;
      }
    }
    args.eps = static_cast<float>(eps);
    return detail::linear_attention_on_device(fn, "MomentumAttentionBackward", d, q, k, v, args);
  }

  const DType dtype = q.dtype();
  Tensor y = Tensor::empty({d.B, d.H, d.N, d.Dv}, dtype);
  Tensor den = Tensor::empty({d.B, d.H, d.N}, dtype);
  dispatch(dtype, [&]<class T>() {
    const T* qp = q.data<T>();
    const T* kp = k.data<T>();
    const T* vp = v.data<T>();
    T* yp = y.data<T>();
    T* denp = den.data<T>();
    const int64_t N = d.N, M = d.M, D = d.D, Dv = d.Dv;
    parallel_for(d.B * d.H, (N + M) * D * Dv + 1, [&](int64_t begin, int64_t end) {
      for (int64_t h = begin; h < end; ++h) {
        const Vector<T> w = row_weights<T>(lengths, h / d.H, M, beta, gamma);
        momentum_forward_head<T>(
            ConstMatrixMap<T>(qp + h * N * D, N, D), ConstMatrixMap<T>(kp + h * M * D, M, D),
            ConstMatrixMap<T>(vp + h * M * Dv, M, Dv), w, static_cast<T>(eps),
            MatrixMap<T>(yp + h * N * Dv, N, Dv), VectorMap<T>(denp + h * N, N));
      }
    });
  });

  record(
      y, "MomentumAttentionBackward", {q, k, v},
      [q, k, v, den, d, beta, gamma, lengths](const Tensor& dy) -> std::vector<Tensor> {
        const DType dt = q.dtype();
        Tensor dq = Tensor::empty(q.shape(), dt);
        Tensor dk = Tensor::empty(k.shape(), dt);
        Tensor dv = Tensor::empty(v.shape(), dt);
        dispatch(dt, [&]<class T>() {
          const int64_t N = d.N, M = d.M, D = d.D, Dv = d.Dv;
          const T* qp = q.data<T>();
          const T* kp = k.data<T>();
          const T* vp = v.data<T>();
          const T* denp = den.data<T>();
          const T* dyp = dy.data<T>();
          T* dqp = dq.data<T>();
          T* dkp = dk.data<T>();
          T* dvp = dv.data<T>();
          parallel_for(d.B * d.H, 3 * (N + M) * D * Dv + 1, [&](int64_t begin, int64_t end) {
            for (int64_t h = begin; h < end; ++h) {
              const Vector<T> w = row_weights<T>(lengths, h / d.H, M, beta, gamma);
              momentum_backward_head<T>(
                  ConstMatrixMap<T>(qp + h * N * D, N, D), ConstMatrixMap<T>(kp + h * M * D, M, D),
                  ConstMatrixMap<T>(vp + h * M * Dv, M, Dv), w, ConstVectorMap<T>(denp + h * N, N),
                  ConstMatrixMap<T>(dyp + h * N * Dv, N, Dv), MatrixMap<T>(dqp + h * N * D, N, D),
                  MatrixMap<T>(dkp + h * M * D, M, D), MatrixMap<T>(dvp + h * M * Dv, M, Dv));
            }
          });
        });
        return {dq, dk, dv};
      });
  return y;
}

Tensor momentum_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& m,
                               Tensor& s, Tensor& z, double beta, double gamma, double eps) {
  constexpr const char* fn = "momentum_attention_step";
  const detail::StepDims d = detail::check_step_inputs(fn, q, k, v, /*on_device=*/true);
  check_momentum_parameters(fn, beta, gamma);
  check_eps(fn, eps);
  const DType dtype = q.dtype();
  detail::check_or_init_state(fn, "m", m, {d.B, d.H, d.D, d.Dv}, "[B,H,D,Dv]", dtype, q.device());
  detail::check_or_init_state(fn, "s", s, {d.B, d.H, d.D, d.Dv}, "[B,H,D,Dv]", dtype, q.device());
  detail::check_or_init_state(fn, "z", z, {d.B, d.H, d.D}, "[B,H,D]", dtype, q.device());
  POLYAK_CHECK(!m.shares_storage(s), fn, ": m and s share storage, expected two distinct states");
  // The sweep's two states with a = m (decay β, its update −k vᵀ) and b = s (b += −γ a).
  detail::SweepStep step;
  step.a = m;
  step.b = s;
  step.z = z;
  step.decays.assign(static_cast<size_t>(d.H), beta);
  step.c = -1;
  step.g = -gamma;
  step.eps = eps;
  return detail::causal_sweep_step(fn, d, q, k, v, step);
}

}  // namespace polyak
