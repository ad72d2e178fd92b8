// FAVOR+ (docs/math.md §7): the feature map against its formula and by gradcheck, the orthogonal
// random features' structure, and the estimator's expectation, the softmax kernel.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/attention/helpers.h"
#include "polyak/ops/attention/favor.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

// φ(x)_j = exp(c ω_j·x − c²‖x‖²/2) / √m, c = D^{−1/4}, written out: x [R, D], w [m, D].
std::vector<double> favor_reference(const std::vector<double>& x, const std::vector<double>& w,
                                    int64_t D) {
  const int64_t R = static_cast<int64_t>(x.size()) / D, m = static_cast<int64_t>(w.size()) / D;
  const double c = std::pow(static_cast<double>(D), -0.25);
  std::vector<double> y;
  for (int64_t r = 0; r < R; ++r) {
    double sq = 0;
    for (int64_t a = 0; a < D; ++a) sq += x[r * D + a] * x[r * D + a];
    for (int64_t j = 0; j < m; ++j) {
      double dot = 0;
      for (int64_t a = 0; a < D; ++a) dot += w[j * D + a] * x[r * D + a];
      y.push_back(std::exp(c * dot - c * c * sq / 2) / std::sqrt(static_cast<double>(m)));
    }
  }
  return y;
}

double dot_rows(const std::vector<double>& w, int64_t D, int64_t i, int64_t j) {
  double s = 0;
  for (int64_t a = 0; a < D; ++a) s += w[i * D + a] * w[j * D + a];
  return s;
}

}  // namespace

TEST_CASE("favor_feature_map equals its formula, any leading axes, f32 agrees with f64") {
  Generator gen(11);
  struct Case {
    Shape x;
    int64_t m;
    bool orthogonal;
  };
  // m below, equal to and above D, not a multiple of it; Ω orthogonal or plain normal;
  // R = 300 rows spans several row blocks.
  for (const Case& c : {Case{{2, 3, 5, 4}, 7, true}, Case{{3, 4}, 4, true},
                        Case{{300, 6}, 2, false}, Case{{2, 1, 9, 5}, 13, false}}) {
    const int64_t D = c.x[-1];
    CAPTURE(c.x);
    CAPTURE(c.m);
    const Tensor omega = c.orthogonal ? orthogonal_random_features(c.m, D, gen, DType::f64)
                                      : Tensor::randn({c.m, D}, gen, DType::f64);
    const Tensor x = Tensor::randn(c.x, gen, DType::f64);
    const Tensor y = favor_feature_map(x, omega);
    Shape expected = c.x;
    expected[-1] = c.m;
    REQUIRE(y.shape() == expected);
    const std::vector<double> ref = favor_reference(x.to_vector(), omega.to_vector(), D);
    CHECK(relative_error(y.to_vector(), ref) <= 1e-13);

    // f32 (its own GEMM path) against f64, values and gradients.
    Tensor x64 = as_leaf(x, DType::f64), x32 = as_leaf(x, DType::f32);
    const Tensor y32 = favor_feature_map(x32, omega.to(DType::f32));
    CHECK(y32.dtype() == DType::f32);
    CHECK(relative_error(y32.to_vector(), ref) <= 1e-5);
    const Tensor dy = Tensor::randn(y.shape(), gen, DType::f64);
    favor_feature_map(x64, omega).backward(dy);
    y32.backward(dy.to(DType::f32));
    CHECK(relative_error(x32.grad().to_vector(), x64.grad().to_vector()) <= 1e-4);
  }
}

TEST_CASE("favor_feature_map passes gradcheck (f64, random cotangent)") {
  Generator omega_gen(5);
  const Tensor omega6 = orthogonal_random_features(6, 4, omega_gen, DType::f64);  // 2 blocks
  const Tensor omega2 = orthogonal_random_features(2, 3, omega_gen, DType::f64);  // m < D
  const Shape q{2, 2, 5, 4}, v{2, 2, 5, 3};
  std::vector<GradcheckCase> cases = {
      {"favor_feature_map [B,H,N,D], m = 6 > D = 4",
       {q},
       [omega6](const std::vector<Tensor>& x) { return favor_feature_map(x[0], omega6); }},
      {"favor_feature_map [R,D], m = 2 < D = 3",
       {Shape{5, 3}},
       [omega2](const std::vector<Tensor>& x) { return favor_feature_map(x[0], omega2); }},
      {"causal_linear_attention of favor_feature_map",
       {q, q, v},
       [omega6](const std::vector<Tensor>& x) {
         return causal_linear_attention(favor_feature_map(x[0], omega6),
                                        favor_feature_map(x[1], omega6), x[2]);
       }},
  };
  run_gradcheck_table(cases);
}

TEST_CASE("orthogonal_random_features: orthogonal blocks of Gaussian-length rows") {
  const int64_t m = 10, D = 4;  // blocks of rows [0,4), [4,8), [8,10)
  Generator gen(21);
  const Tensor omega = orthogonal_random_features(m, D, gen, DType::f64);
  REQUIRE(omega.shape() == Shape({m, D}));
  REQUIRE(omega.dtype() == DType::f64);
  const std::vector<double> w = omega.to_vector();
  auto cosine = [&](int64_t i, int64_t j) {
    return dot_rows(w, D, i, j) / std::sqrt(dot_rows(w, D, i, i) * dot_rows(w, D, j, j));
  };
  double across = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < i; ++j) {
      if (i / D == j / D) {
        CAPTURE(i);
        CAPTURE(j);
        CHECK(std::abs(cosine(i, j)) <= 1e-10);
      } else {
        across = std::max(across, std::abs(cosine(i, j)));
      }
    }
  CHECK(across > 0.05);  // blocks are independent rotations, not one repeated
  // Lengths are drawn (χ_D), not 1: they differ from row to row.
  double lo = 1e9, hi = 0;
  for (int64_t i = 0; i < m; ++i) {
    lo = std::min(lo, std::sqrt(dot_rows(w, D, i, i)));
    hi = std::max(hi, std::sqrt(dot_rows(w, D, i, i)));
  }
  CHECK(hi - lo > 0.1);

  // Same seed, same features (f32 is the f64 draw rounded); another seed, others.
  Generator again(21), other(22);
  CHECK(orthogonal_random_features(m, D, again, DType::f64).to_vector() == w);
  Generator again32(21);
  const Tensor w32 = orthogonal_random_features(m, D, again32, DType::f32);
  CHECK(w32.dtype() == DType::f32);
  CHECK(max_abs_diff(w32.to(DType::f64), omega) <= 1e-6);
  CHECK(max_abs_diff(orthogonal_random_features(m, D, other, DType::f64), omega) > 0.1);
  CHECK(gen.offset() > 0);  // the draw advanced the generator
}

TEST_CASE("orthogonal_random_features: rows are marginally standard normal") {
  // Over 32768 entries: E[ω²] = 1 and E[ω⁴] = 3 for N(0, 1). Unit rows would give
  // E[ω²] = 1/D; uniform directions of length √D would give E[ω⁴] = 3D/(D+2) = 2.4.
  const int64_t m = 4096, D = 8;
  Generator gen(8);
  const std::vector<double> w = orthogonal_random_features(m, D, gen, DType::f64).to_vector();
  double second = 0, fourth = 0;
  for (double v : w) {
    second += v * v;
    fourth += v * v * v * v;
  }
  second /= static_cast<double>(w.size());
  fourth /= static_cast<double>(w.size());
  CHECK(second == doctest::Approx(1.0).epsilon(0.04));
  CHECK(fourth == doctest::Approx(3.0).epsilon(0.1));
}

TEST_CASE("FAVOR+ estimates the softmax kernel exp(q·k/√D)") {
  // D = 4, so √D = 2. One draw of m = 65536 features: the estimator's relative standard
  // deviation is about √((exp(‖q'+k'‖²) − 1)/m) ≤ 1.1% for these pairs, so 3% holds for any
  // seed with room, while a missing D^{−1/4} (estimating exp(q·k)) is 22–66% off.
  const int64_t D = 4, m = 65536;
  const std::vector<double> q = {0.8, -0.3, 0.5, 0.2};
  const std::vector<std::vector<double>> keys = {
      {0.6, 0.4, -0.2, 0.7}, {-0.5, 0.6, 0.3, -0.4}, {0.8, -0.3, 0.5, 0.2}};
  Generator gen(2021);
  const Tensor omega = orthogonal_random_features(m, D, gen, DType::f64);
  for (const std::vector<double>& k : keys) {
    std::vector<double> rows = q;
    rows.insert(rows.end(), k.begin(), k.end());
    const std::vector<double> phi =
        favor_feature_map(Tensor::from(rows, {2, D}, DType::f64), omega).to_vector();
    double estimate = 0, qk = 0;
    for (int64_t j = 0; j < m; ++j) estimate += phi[j] * phi[m + j];
    for (int64_t a = 0; a < D; ++a) qk += q[a] * k[a];
    const double exact = std::exp(qk / std::sqrt(static_cast<double>(D)));
    CAPTURE(qk);
    CAPTURE(estimate);
    CHECK(estimate == doctest::Approx(exact).epsilon(0.03));
  }
}

TEST_CASE("favor_feature_map and orthogonal_random_features reject bad input") {
  Generator gen(1);
  const Tensor omega = orthogonal_random_features(6, 4, gen, DType::f64);
  const Tensor x = Tensor::zeros({2, 3, 5, 4}, DType::f64);
  check_error(
      [&] {
        favor_feature_map(Tensor::zeros({2, 3, 5, 3}, DType::f64), omega);
      },
      {"favor_feature_map", "x has shape [2,3,5,3]", "D = 4", "omega [6,4]"});
  check_error([&] { favor_feature_map(Tensor::scalar(1.0, DType::f64), omega); },
              {"favor_feature_map", "x has shape []", "[..., D]"});
  check_error(
      [&] {
        favor_feature_map(x, Tensor::zeros({0, 4}, DType::f64));
      },
      {"favor_feature_map", "omega has shape [0,4]", "m ≥ 1"});
  check_error([&] { favor_feature_map(x, Tensor::zeros({4}, DType::f64)); },
              {"favor_feature_map", "omega has shape [4]", "rank 2", "[m, D]"});
  check_error([&] { favor_feature_map(x, omega.to(DType::f32)); },
              {"favor_feature_map", "omega is f32", "x is f64"});
  check_error([&] { favor_feature_map(x, Tensor()); }, {"favor_feature_map", "omega is undefined"});
  const Tensor trained = omega.clone().detach().requires_grad_();
  check_error([&] { favor_feature_map(x, trained); },
              {"favor_feature_map", "omega requires grad", "no gradient"});

  check_error([&] { orthogonal_random_features(0, 4, gen); },
              {"orthogonal_random_features", "m = 0", "positive"});
  check_error([&] { orthogonal_random_features(-3, 4, gen); },
              {"orthogonal_random_features", "m = -3"});
  check_error([&] { orthogonal_random_features(8, 0, gen); },
              {"orthogonal_random_features", "D = 0", "positive"});
}
