// Naive quadratic references for the attention tests: obviously right, slow, tests only.
//
// Dimension legend: B batch, H heads, N query positions, M key positions, D query/key
// width, Dv value width. Data are flat row-major std::vector<double> of [B,H,·,·].
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace polyak::testing::naive {

struct Dims {
  int64_t B, H, N, M, D, Dv;
};

struct Grads {
  std::vector<double> dq, dk, dv;
};

// A_ij = q_i·k_j, masked to j ≤ i when causal. Returns [B,H,N,M].
inline std::vector<double> scores(const Dims& d, const std::vector<double>& q,
                                  const std::vector<double>& k, bool causal) {
  std::vector<double> A(static_cast<size_t>(d.B * d.H * d.N * d.M), 0.0);
  for (int64_t h = 0; h < d.B * d.H; ++h)
    for (int64_t i = 0; i < d.N; ++i)
      for (int64_t j = 0; j < d.M; ++j) {
        if (causal && j > i) continue;
        double s = 0;
        for (int64_t a = 0; a < d.D; ++a)
          s += q[static_cast<size_t>((h * d.N + i) * d.D + a)] *
               k[static_cast<size_t>((h * d.M + j) * d.D + a)];
        A[static_cast<size_t>((h * d.N + i) * d.M + j)] = s;
      }
  return A;
}

// Linear attention in its quadratic form:
//   y = (mask ⊙ q kᵀ) v / ((mask ⊙ q kᵀ) 1 + eps)       (normalize)
//   y = (mask ⊙ q kᵀ) v                                  (causal dot product)
// With `dy`, also returns the gradients through the same quadratic form:
//   dnum_i = dy_i / den_i,  dden_i = −dy_i·y_i / den_i,  dA_ij = dnum_i·v_j + dden_i
//   dq_i = Σ_j dA_ij k_j,   dk_j = Σ_i dA_ij q_i,        dv_j = Σ_i A_ij dnum_i
inline std::vector<double> linear_attention(const Dims& d, const std::vector<double>& q,
                                            const std::vector<double>& k,
                                            const std::vector<double>& v, bool causal,
                                            bool normalize, double eps,
                                            const std::vector<double>* dy = nullptr,
                                            Grads* grads = nullptr) {
  const std::vector<double> A = scores(d, q, k, causal);
  std::vector<double> y(static_cast<size_t>(d.B * d.H * d.N * d.Dv), 0.0);
  std::vector<double> den(static_cast<size_t>(d.B * d.H * d.N), 1.0);
  auto at = [](const std::vector<double>& x, int64_t i) { return x[static_cast<size_t>(i)]; };
  for (int64_t h = 0; h < d.B * d.H; ++h)
    for (int64_t i = 0; i < d.N; ++i) {
      double s = 0;
      for (int64_t j = 0; j < d.M; ++j) {
        const double a = at(A, (h * d.N + i) * d.M + j);
        s += a;
        for (int64_t c = 0; c < d.Dv; ++c)
          y[static_cast<size_t>((h * d.N + i) * d.Dv + c)] += a * at(v, (h * d.M + j) * d.Dv + c);
      }
      if (normalize) {
        den[static_cast<size_t>(h * d.N + i)] = s + eps;
        for (int64_t c = 0; c < d.Dv; ++c)
          y[static_cast<size_t>((h * d.N + i) * d.Dv + c)] /= s + eps;
      }
    }
  if (dy == nullptr || grads == nullptr) return y;

  grads->dq.assign(q.size(), 0.0);
  grads->dk.assign(k.size(), 0.0);
  grads->dv.assign(v.size(), 0.0);
  for (int64_t h = 0; h < d.B * d.H; ++h)
    for (int64_t i = 0; i < d.N; ++i) {
      const double dn = at(den, h * d.N + i);
      double dden = 0;
      if (normalize)
        for (int64_t c = 0; c < d.Dv; ++c)
          dden -= at(*dy, (h * d.N + i) * d.Dv + c) * at(y, (h * d.N + i) * d.Dv + c) / dn;
      for (int64_t j = 0; j < d.M; ++j) {
        if (causal && j > i) continue;
        double dA = dden;
        for (int64_t c = 0; c < d.Dv; ++c) {
          const double dnum = at(*dy, (h * d.N + i) * d.Dv + c) / dn;
          dA += dnum * at(v, (h * d.M + j) * d.Dv + c);
          grads->dv[static_cast<size_t>((h * d.M + j) * d.Dv + c)] +=
              at(A, (h * d.N + i) * d.M + j) * dnum;
        }
        for (int64_t a = 0; a < d.D; ++a) {
          grads->dq[static_cast<size_t>((h * d.N + i) * d.D + a)] +=
              dA * at(k, (h * d.M + j) * d.D + a);
          grads->dk[static_cast<size_t>((h * d.M + j) * d.D + a)] +=
              dA * at(q, (h * d.N + i) * d.D + a);
        }
      }
    }
  return y;
}

// y = softmax(q kᵀ/√D, masked to j ≤ i when causal) v, computed row by row.
inline std::vector<double> softmax_attention(const Dims& d, const std::vector<double>& q,
                                             const std::vector<double>& k,
                                             const std::vector<double>& v, bool causal) {
  const std::vector<double> A = scores(d, q, k, causal);
  std::vector<double> y(static_cast<size_t>(d.B * d.H * d.N * d.Dv), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d.D));
  for (int64_t h = 0; h < d.B * d.H; ++h)
    for (int64_t i = 0; i < d.N; ++i) {
      const int64_t L = causal ? i + 1 : d.M;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < L; ++j)
        mx = std::max(mx, scale * A[static_cast<size_t>((h * d.N + i) * d.M + j)]);
      std::vector<double> p(static_cast<size_t>(L));
      double total = 0;
      for (int64_t j = 0; j < L; ++j) {
        p[static_cast<size_t>(j)] =
            std::exp(scale * A[static_cast<size_t>((h * d.N + i) * d.M + j)] - mx);
        total += p[static_cast<size_t>(j)];
      }
      for (int64_t j = 0; j < L; ++j)
        for (int64_t c = 0; c < d.Dv; ++c)
          y[static_cast<size_t>((h * d.N + i) * d.Dv + c)] +=
              p[static_cast<size_t>(j)] / total * v[static_cast<size_t>((h * d.M + j) * d.Dv + c)];
    }
  return y;
}

// Weighted linear attention in its quadratic form, the reference for the decayed and
// momentum ops. For batch row b, query i and key j (masked to j ≤ i when causal):
//   y_i = Σ_j W(b,i,j) A_ij v_j / (Σ_j C(b,i,j) A_ij + eps)      A_ij = q_i·k_j
// (no denominator when !normalize). A weight of 0 drops the key (padding). With `dy`, also
// returns the gradients of the same form:
//   dnum_i = dy_i / den_i,  dden_i = −dy_i·y_i / den_i,  dA_ij = W_ij dnum_i·v_j + C_ij dden_i
//   dq_i = Σ_j dA_ij k_j,   dk_j = Σ_i dA_ij q_i,        dv_j = Σ_i W_ij A_ij dnum_i
template <class NumWeight, class DenWeight>
std::vector<double> weighted_attention(const Dims& d, const std::vector<double>& q,
                                       const std::vector<double>& k, const std::vector<double>& v,
                                       bool causal, bool normalize, double eps, NumWeight W,
                                       DenWeight C, const std::vector<double>* dy = nullptr,
                                       Grads* grads = nullptr) {
  const std::vector<double> A = scores(d, q, k, causal);
  std::vector<double> y(static_cast<size_t>(d.B * d.H * d.N * d.Dv), 0.0);
  std::vector<double> den(static_cast<size_t>(d.B * d.H * d.N), 1.0);
  auto at = [](const std::vector<double>& x, int64_t i) { return x[static_cast<size_t>(i)]; };
  auto keys = [&](int64_t i) { return causal ? i + 1 : d.M; };
  for (int64_t h = 0; h < d.B * d.H; ++h) {
    const int64_t b = h / d.H;
    for (int64_t i = 0; i < d.N; ++i) {
      double s = 0;
      for (int64_t j = 0; j < keys(i); ++j) {
        const double a = at(A, (h * d.N + i) * d.M + j), w = W(b, i, j);
        s += C(b, i, j) * a;
        for (int64_t c = 0; c < d.Dv; ++c)
          y[static_cast<size_t>((h * d.N + i) * d.Dv + c)] +=
              w * a * at(v, (h * d.M + j) * d.Dv + c);
      }
      if (normalize) {
        den[static_cast<size_t>(h * d.N + i)] = s + eps;
        for (int64_t c = 0; c < d.Dv; ++c)
          y[static_cast<size_t>((h * d.N + i) * d.Dv + c)] /= s + eps;
      }
    }
  }
  if (dy == nullptr || grads == nullptr) return y;

  grads->dq.assign(q.size(), 0.0);
  grads->dk.assign(k.size(), 0.0);
  grads->dv.assign(v.size(), 0.0);
  for (int64_t h = 0; h < d.B * d.H; ++h) {
    const int64_t b = h / d.H;
    for (int64_t i = 0; i < d.N; ++i) {
      const double dn = at(den, h * d.N + i);
      double dden = 0;
      if (normalize)
        for (int64_t c = 0; c < d.Dv; ++c)
          dden -= at(*dy, (h * d.N + i) * d.Dv + c) * at(y, (h * d.N + i) * d.Dv + c) / dn;
      for (int64_t j = 0; j < keys(i); ++j) {
        const double w = W(b, i, j);
        double dA = C(b, i, j) * dden;
        for (int64_t c = 0; c < d.Dv; ++c) {
          const double dnum = at(*dy, (h * d.N + i) * d.Dv + c) / dn;
          dA += w * dnum * at(v, (h * d.M + j) * d.Dv + c);
          grads->dv[static_cast<size_t>((h * d.M + j) * d.Dv + c)] +=
              w * at(A, (h * d.N + i) * d.M + j) * dnum;
        }
        for (int64_t a = 0; a < d.D; ++a) {
          grads->dq[static_cast<size_t>((h * d.N + i) * d.D + a)] +=
              dA * at(k, (h * d.M + j) * d.D + a);
          grads->dk[static_cast<size_t>((h * d.M + j) * d.D + a)] +=
              dA * at(q, (h * d.N + i) * d.D + a);
        }
      }
    }
  }
  return y;
}

// Σ_{t<count} β^t = (1 − β^count)/(1 − β), summed term by term (no cancellation near β = 1).
inline double geometric_sum(double beta, int64_t count) {
  double s = 0, p = 1;
  for (int64_t t = 0; t < count; ++t, p *= beta) s += p;
  return s;
}

// Decayed causal linear attention: W = C = λ^{i−j}.
inline std::vector<double> decayed_attention(const Dims& d, const std::vector<double>& q,
                                             const std::vector<double>& k,
                                             const std::vector<double>& v, double decay,
                                             bool normalize, double eps,
                                             const std::vector<double>* dy = nullptr,
                                             Grads* grads = nullptr) {
  auto w = [decay](int64_t, int64_t i, int64_t j) {
    return std::pow(decay, static_cast<double>(i - j));
  };
  return weighted_attention(d, q, k, v, /*causal=*/true, normalize, eps, w, w, dy, grads);
}

// Causal momentum attention (eq. 13), C = 1 and
//   exact:      W_ij = γ (1 − β^{i−j+1})/(1 − β)
//   reference:  W_ij = γ (1 − β^{N−j})/(1 − β)      (0-based j: the last query's weight)
inline std::vector<double> causal_momentum_attention(const Dims& d, const std::vector<double>& q,
                                                     const std::vector<double>& k,
                                                     const std::vector<double>& v, double beta,
                                                     double gamma, bool reference, double eps,
                                                     const std::vector<double>* dy = nullptr,
                                                     Grads* grads = nullptr) {
  auto w = [&](int64_t, int64_t i, int64_t j) {
    return gamma * geometric_sum(beta, reference ? d.N - j : i - j + 1);
  };
  auto one = [](int64_t, int64_t, int64_t) { return 1.0; };
  return weighted_attention(d, q, k, v, /*causal=*/true, /*normalize=*/true, eps, w, one, dy,
                            grads);
}

// Non-causal momentum attention (eq. 14) with true key lengths n_b (empty: M):
//   W_ij = γ (1 − β^{n−j})/(1 − β), C_ij = 1 for j < n; both 0 for j ≥ n.
inline std::vector<double> momentum_attention(const Dims& d, const std::vector<double>& q,
                                              const std::vector<double>& k,
                                              const std::vector<double>& v, double beta,
                                              double gamma, const std::vector<int64_t>& lengths,
                                              double eps, const std::vector<double>* dy = nullptr,
                                              Grads* grads = nullptr) {
  auto n_of = [&](int64_t b) { return lengths.empty() ? d.M : lengths[static_cast<size_t>(b)]; };
  auto w = [&](int64_t b, int64_t, int64_t j) {
    return j < n_of(b) ? gamma * geometric_sum(beta, n_of(b) - j) : 0.0;
  };
  auto c = [&](int64_t b, int64_t, int64_t j) { return j < n_of(b) ? 1.0 : 0.0; };
  return weighted_attention(d, q, k, v, /*causal=*/false, /*normalize=*/true, eps, w, c, dy, grads);
}

}  // namespace polyak::testing::naive
