// Naive references for Mega (docs/math.md §6): plain loops over flat row-major
// std::vector<double>, obviously right, slow, tests only.
//
// Dimension legend: B batch, N positions, C channels (= d), n EMA dimensions, D query/key
// width, Dv value width.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <vector>

namespace polyak::testing::naive_mega {

inline double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
inline double silu(double x) {
  return x * sigmoid(x);
}
inline double laplace(double s) {
  const double mu = std::sqrt(0.5), sigma = std::sqrt(1.0 / (4.0 * std::numbers::pi));
  return 0.5 * (1.0 + std::erf((s - mu) / (sigma * std::sqrt(2.0))));
}

// x [B,N,C]; g, q, w [C,n] → y [B,N,C]: h_t = g ⊙ x_t + q ⊙ h_{t∓1}, y_t = Σ_n w ⊙ h_t, the
// recurrence running from the last position when `reverse`.
inline std::vector<double> ema(int64_t B, int64_t N, int64_t C, int64_t n,
                               const std::vector<double>& x, const std::vector<double>& g,
                               const std::vector<double>& q, const std::vector<double>& w,
                               bool reverse) {
  std::vector<double> y(static_cast<size_t>(B * N * C), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      std::vector<double> h(static_cast<size_t>(n), 0.0);
      for (int64_t i = 0; i < N; ++i) {
        const int64_t t = reverse ? N - 1 - i : i;
        const size_t at = static_cast<size_t>((b * N + t) * C + c);
        for (int64_t k = 0; k < n; ++k) {
          const size_t ck = static_cast<size_t>(c * n + k);
          h[static_cast<size_t>(k)] = g[ck] * x[at] + q[ck] * h[static_cast<size_t>(k)];
          y[at] += w[ck] * h[static_cast<size_t>(k)];
        }
      }
    }
  return y;
}

// Mega's attention as one dense N×N matrix per batch row, with the block mask written out:
// i sees j when both lie in the same chunk of `window` positions (and j ≤ i when causal).
//   s_ij = c q_i·k_j + bias[(j mod W) − (i mod W) + L − 1],  c = 1/√D (softmax), 1/L (laplace)
//   softmax: p_i = softmax over the seen j;  laplace: p_ij = laplace(s_ij) for the seen j
// q, k [B,N,D], v [B,N,Dv], bias [2L − 1] → y [B,N,Dv].
inline std::vector<double> attention(int64_t B, int64_t N, int64_t D, int64_t Dv,
                                     const std::vector<double>& q, const std::vector<double>& k,
                                     const std::vector<double>& v, const std::vector<double>& bias,
                                     int64_t window, bool causal, bool laplace_score) {
  const int64_t L = (static_cast<int64_t>(bias.size()) + 1) / 2;
  const double scale =
      laplace_score ? 1.0 / static_cast<double>(L) : 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> y(static_cast<size_t>(B * N * Dv), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < N; ++i) {
      std::vector<double> p(static_cast<size_t>(N), 0.0);
      std::vector<bool> seen(static_cast<size_t>(N), false);
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < N; ++j) {
        if (j / window != i / window || (causal && j > i)) continue;
        double s = 0;
        for (int64_t a = 0; a < D; ++a)
          s += q[static_cast<size_t>((b * N + i) * D + a)] *
               k[static_cast<size_t>((b * N + j) * D + a)];
        s = scale * s + bias[static_cast<size_t>(j % window - i % window + L - 1)];
        p[static_cast<size_t>(j)] = s;
        seen[static_cast<size_t>(j)] = true;
        mx = std::max(mx, s);
      }
      double total = 0;
      for (int64_t j = 0; j < N; ++j) {
        double& pj = p[static_cast<size_t>(j)];
        if (!seen[static_cast<size_t>(j)]) continue;
        pj = laplace_score ? laplace(pj) : std::exp(pj - mx);
        total += pj;
      }
      for (int64_t j = 0; j < N; ++j) {
        if (!seen[static_cast<size_t>(j)]) continue;
        const double pj = p[static_cast<size_t>(j)] / (laplace_score ? 1.0 : total);
        for (int64_t c = 0; c < Dv; ++c)
          y[static_cast<size_t>((b * N + i) * Dv + c)] +=
              pj * v[static_cast<size_t>((b * N + j) * Dv + c)];
      }
    }
  return y;
}

// y = x Wᵀ + bias for x [rows, in], W [out, in] → [rows, out].
inline std::vector<double> linear(int64_t rows, int64_t in, int64_t out,
                                  const std::vector<double>& x, const std::vector<double>& W,
                                  const std::vector<double>& bias) {
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = bias[static_cast<size_t>(o)];
      for (int64_t i = 0; i < in; ++i)
        s += x[static_cast<size_t>(r * in + i)] * W[static_cast<size_t>(o * in + i)];
      y[static_cast<size_t>(r * out + o)] = s;
    }
  return y;
}

// The parameters of one MegaAttention, flat.
struct MegaParams {
  int64_t d, n, z, v;
  bool causal;
  int64_t window;  // the attention's chunk (≥ N: the whole sequence)
  bool laplace_score;
  std::vector<double> delta, alpha, beta, eta;  // [K,d,n], K = 1 (causal) or 2
  std::vector<double> omega;                    // [d]
  std::vector<double> Wv, bv, Wmx, bmx, Wh, bh;
  std::vector<double> qk_scale, qk_offset;  // [2,z]
  std::vector<double> rel_bias;             // [2L − 1]
};

// MegaAttention's forward (before dropout), x [B,N,d] → [B,N,d], written out step by step
// from docs/math.md §6.
inline std::vector<double> mega_block(const MegaParams& P, int64_t B, int64_t N,
                                      const std::vector<double>& x) {
  const int64_t d = P.d, n = P.n, z = P.z, v = P.v, rows = B * N, width = 2 * d + z + v;
  auto at = [](const std::vector<double>& t, int64_t i) { return t[static_cast<size_t>(i)]; };

  // The EMA: the forward direction, plus the reverse one when not causal.
  std::vector<double> y(static_cast<size_t>(rows * d), 0.0);
  for (int64_t dir = 0; dir < (P.causal ? 1 : 2); ++dir) {
    std::vector<double> g(static_cast<size_t>(d * n)), q(g.size()), w(g.size());
    for (int64_t i = 0; i < d * n; ++i) {
      const int64_t e = dir * d * n + i;
      const double p = sigmoid(at(P.delta, e));
      g[static_cast<size_t>(i)] = p * at(P.beta, e);
      q[static_cast<size_t>(i)] = 1.0 - p * sigmoid(at(P.alpha, e));
      w[static_cast<size_t>(i)] = at(P.eta, e) / std::sqrt(static_cast<double>(n));
    }
    const std::vector<double> part = ema(B, N, d, n, x, g, q, w, dir == 1);
    for (size_t i = 0; i < y.size(); ++i) y[i] += part[i];
  }
  std::vector<double> mx(y.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c)
      mx[static_cast<size_t>(r * d + c)] =
          silu(at(y, r * d + c) + at(P.omega, c) * at(x, r * d + c));

  std::vector<double> V = linear(rows, d, v, x, P.Wv, P.bv);
  for (double& e : V) e = silu(e);
  const std::vector<double> base = linear(rows, d, width, mx, P.Wmx, P.bmx);
  std::vector<double> Q(static_cast<size_t>(rows * z)), K(Q.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t a = 0; a < z; ++a) {
      const double Z = silu(at(base, r * width + d + a));
      Q[static_cast<size_t>(r * z + a)] = Z * at(P.qk_scale, a) + at(P.qk_offset, a);
      K[static_cast<size_t>(r * z + a)] = Z * at(P.qk_scale, z + a) + at(P.qk_offset, z + a);
    }
  const std::vector<double> O =
      attention(B, N, z, v, Q, K, V, P.rel_bias, P.window, P.causal, P.laplace_score);
  std::vector<double> Or(O.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < v; ++c)
      Or[static_cast<size_t>(r * v + c)] = at(O, r * v + c) * silu(at(base, r * width + d + z + c));
  const std::vector<double> Hp = linear(rows, v, d, Or, P.Wh, P.bh);
  std::vector<double> out(static_cast<size_t>(rows * d));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c) {
      const double u = sigmoid(at(base, r * width + c));
      const double H = silu(at(base, r * width + d + z + v + c) + at(Hp, r * d + c));
      out[static_cast<size_t>(r * d + c)] = u * (H - at(x, r * d + c));
    }
  return out;
}

}  // namespace polyak::testing::naive_mega
