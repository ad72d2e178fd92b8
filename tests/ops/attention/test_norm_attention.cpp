// TransNormer's ops (docs/math.md §5): srms_norm and block_softmax_attention against direct
// loops, their f64 gradchecks, the recurrent steps against the parallel forms, bad input.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width,
// L block length.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ops/attention/helpers.h"
#include "polyak/ops/attention/linear_attention.h"
#include "polyak/ops/attention/norm_attention.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

// x / (‖x‖₂ · d^{−1/2} + eps) row by row over the last axis.
std::vector<double> srms_reference(const Tensor& x, double eps) {
  const int64_t d = x.size(-1);
  std::vector<double> y = x.to_vector();
  for (size_t r = 0; r < y.size(); r += static_cast<size_t>(d)) {
    double squares = 0;
    for (int64_t j = 0; j < d; ++j) squares += std::pow(y[r + static_cast<size_t>(j)], 2);
    const double denom = std::sqrt(squares) / std::sqrt(static_cast<double>(d)) + eps;
    for (int64_t j = 0; j < d; ++j) y[r + static_cast<size_t>(j)] /= denom;
  }
  return y;
}

// Full softmax attention with a block-diagonal mask: query i sees key j iff ⌊i/L⌋ = ⌊j/L⌋
// (and j ≤ i when causal). q, k [B,H,N,D], v [B,H,N,Dv] as flat vectors.
std::vector<double> block_reference(const Tensor& qt, const Tensor& kt, const Tensor& vt, int64_t L,
                                    bool causal) {
  const int64_t BH = qt.size(0) * qt.size(1), N = qt.size(2), D = qt.size(3), Dv = vt.size(3);
  const std::vector<double> q = qt.to_vector(), k = kt.to_vector(), v = vt.to_vector();
  auto at = [](const std::vector<double>& x, int64_t i) { return x[static_cast<size_t>(i)]; };
  std::vector<double> y(static_cast<size_t>(BH * N * Dv), 0.0);
  for (int64_t h = 0; h < BH; ++h)
    for (int64_t i = 0; i < N; ++i) {
      std::vector<double> score(static_cast<size_t>(N), -std::numeric_limits<double>::infinity());
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < N; ++j) {
        if (i / L != j / L || (causal && j > i)) continue;
        double s = 0;
        for (int64_t a = 0; a < D; ++a)
          s += at(q, (h * N + i) * D + a) * at(k, (h * N + j) * D + a);
        score[static_cast<size_t>(j)] = s / std::sqrt(static_cast<double>(D));
        mx = std::max(mx, score[static_cast<size_t>(j)]);
      }
      double total = 0;
      for (double& s : score) total += (s = std::exp(s - mx));
      for (int64_t j = 0; j < N; ++j)
        for (int64_t c = 0; c < Dv; ++c)
          y[static_cast<size_t>((h * N + i) * Dv + c)] +=
              score[static_cast<size_t>(j)] / total * at(v, (h * N + j) * Dv + c);
    }
  return y;
}

// Steps `step` through positions 0..N−1 of q, k [B,H,N,D], v [B,H,N,Dv] and compares each
// output with row i of `parallel`, relative to the largest value of the whole output.
template <class Step>
void check_steps(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& parallel,
                 Step step) {
  double err = 0;
  for (int64_t i = 0; i < q.size(2); ++i) {
    Tensor y = step(i, position(q, i), position(k, i), position(v, i));
    REQUIRE(y.shape() == Shape({q.size(0), q.size(1), v.size(3)}));
    CHECK(y.grad_fn() == nullptr);
    err = std::max(err, relative_error(y.to_vector(), position(parallel, i).to_vector()));
  }
  CHECK(err <= (q.dtype() == DType::f64 ? 1e-10 : 1e-4));
}

Tensor normal(const Shape& shape, uint64_t seed, DType dtype = DType::f64) {
  Generator gen(seed);
  return normal_leaf(shape, gen, dtype);
}

}  // namespace

// ---- srms_norm -------------------------------------------------------------------------

TEST_CASE("srms_norm equals x / (|x| d^-1/2 + eps) row by row") {
  Tensor x = normal({3, 4, 6}, 1).detach();
  for (DType dtype : {DType::f64, DType::f32}) {
    for (double eps : {1e-8, 0.5}) {
      CAPTURE(dtype);
      CAPTURE(eps);
      Tensor y = srms_norm(x.to(dtype), eps);
      REQUIRE(y.shape() == x.shape());
      REQUIRE(y.dtype() == dtype);
      CHECK(relative_error(y.to_vector(), srms_reference(x, eps)) <=
            (dtype == DType::f64 ? 1e-14 : 1e-6));
    }
  }
  // With the default eps every row has root mean square 1; a zero row stays zero.
  std::vector<double> values = x.to_vector();
  std::fill(values.begin(), values.begin() + 6, 0.0);
  std::vector<double> y = srms_norm(Tensor::from(values, x.shape(), DType::f64)).to_vector();
  for (size_t r = 0; r < y.size(); r += 6) {
    double squares = 0;
    for (size_t j = 0; j < 6; ++j) squares += y[r + j] * y[r + j];
    CHECK(std::sqrt(squares / 6) == doctest::Approx(r == 0 ? 0.0 : 1.0).epsilon(1e-7));
  }
}

// ---- block_softmax_attention -----------------------------------------------------------

TEST_CASE("block_softmax_attention equals softmax attention with a block-diagonal mask") {
  struct Config {
    int64_t N, L;
    bool causal;
  };
  const std::vector<Config> configs = {
      {11, 4, true}, {12, 4, true},   {9, 4, true},     {3, 4, true},
      {7, 1, true},  {12, 4, false},  {12, 3, false},   {3, 4, false},
      {8, 8, false}, {130, 64, true}, {128, 64, false},
  };
  for (const Config& c : configs) {
    for (DType dtype : {DType::f64, DType::f32}) {
      CAPTURE(c.N);
      CAPTURE(c.L);
      CAPTURE(c.causal);
      CAPTURE(dtype);
      const uint64_t seed = static_cast<uint64_t>(c.N * 100 + c.L);
      Tensor q = normal({2, 3, c.N, 5}, seed), k = normal({2, 3, c.N, 5}, seed + 1);
      Tensor v = normal({2, 3, c.N, 4}, seed + 2);
      Tensor y = block_softmax_attention(q.to(dtype), k.to(dtype), v.to(dtype), c.L, c.causal);
      REQUIRE(y.shape() == Shape({2, 3, c.N, 4}));
      CHECK(relative_error(y.to_vector(), block_reference(q, k, v, c.L, c.causal)) <=
            (dtype == DType::f64 ? 1e-12 : 1e-5));
    }
  }
}

TEST_CASE("block_softmax_attention: limits and the prefix property") {
  Tensor q = normal({1, 2, 10, 3}, 7), k = normal({1, 2, 10, 3}, 8), v = normal({1, 2, 10, 2}, 9);
  // One position per block: each query sees only its own key, so y = v.
  CHECK(max_abs_diff(block_softmax_attention(q, k, v, 1, true), v) == 0);
  CHECK(max_abs_diff(block_softmax_attention(q, k, v, 1, false), v) == 0);
  // One block covering the sequence is plain softmax attention.
  for (bool causal : {true, false})
    CHECK(max_abs_diff(block_softmax_attention(q, k, v, 10, causal),
                       softmax_attention(q, k, v, causal)) < 1e-15);
  // Causal: the outputs of a prefix are the first rows of the whole sequence's, also when
  // the prefix ends inside a block.
  const Tensor whole = block_softmax_attention(q, k, v, 4, true);
  for (int64_t n : {1, 3, 4, 6, 9}) {
    CAPTURE(n);
    Tensor part =
        block_softmax_attention(slice(q, 2, 0, n), slice(k, 2, 0, n), slice(v, 2, 0, n), 4, true);
    CHECK(max_abs_diff(part, slice(whole, 2, 0, n)) < 1e-15);
  }
}

TEST_CASE("gradcheck (f64, random cotangent): srms_norm and block_softmax_attention") {
  auto block_case = [](const char* name, int64_t N, int64_t L, bool causal) {
    return GradcheckCase{name,
                         {{2, 2, N, 3}, {2, 2, N, 3}, {2, 2, N, 4}},
                         [L, causal](const std::vector<Tensor>& in) {
                           return block_softmax_attention(in[0], in[1], in[2], L, causal);
                         }};
  };
  run_gradcheck_table({
      {"srms_norm", {{3, 5, 8}}, [](const std::vector<Tensor>& in) { return srms_norm(in[0]); }},
      {"srms_norm eps 0.3",
       {{4, 6}},
       [](const std::vector<Tensor>& in) { return srms_norm(in[0], 0.3); }},
      block_case("block causal, partial last block", 11, 4, true),
      block_case("block causal, last block of one", 9, 4, true),
      block_case("block causal, whole blocks", 8, 4, true),
      block_case("block causal, N < block", 3, 4, true),
      block_case("block non-causal, whole blocks", 8, 4, false),
      block_case("block non-causal, N < block", 3, 4, false),
  });
}

// ---- recurrent steps -------------------------------------------------------------------

TEST_CASE("causal_dot_product_step equals causal_dot_product at every position") {
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype);
    Tensor q = normal({2, 3, 9, 5}, 21, dtype), k = normal({2, 3, 9, 5}, 22, dtype);
    Tensor v = normal({2, 3, 9, 4}, 23, dtype);
    Tensor s;  // undefined: the empty prefix
    check_steps(q, k, v, causal_dot_product(q, k, v),
                [&](int64_t, const Tensor& qi, const Tensor& ki, const Tensor& vi) {
                  return causal_dot_product_step(qi, ki, vi, s);
                });
    CHECK(s.shape() == Shape({2, 3, 5, 4}));
  }
}

TEST_CASE("block_softmax_attention_step equals the causal block attention at every position") {
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype);
    Tensor q = normal({2, 3, 11, 5}, 31, dtype), k = normal({2, 3, 11, 5}, 32, dtype);
    Tensor v = normal({2, 3, 11, 4}, 33, dtype);
    const Tensor parallel = block_softmax_attention(q, k, v, 4, true);
    SUBCASE("undefined caches at the start") {
      Tensor kc, vc;
      check_steps(q, k, v, parallel,
                  [&](int64_t i, const Tensor& qi, const Tensor& ki, const Tensor& vi) {
                    return block_softmax_attention_step(qi, ki, vi, kc, vc, 4, i);
                  });
      CHECK(kc.shape() == Shape({2, 3, 4, 5}));
      CHECK(vc.shape() == Shape({2, 3, 4, 4}));
    }
    SUBCASE("rows not yet written in the block are never read") {
      const double nan = std::numeric_limits<double>::quiet_NaN();
      Tensor kc = Tensor::full({2, 3, 4, 5}, nan, dtype),
             vc = Tensor::full({2, 3, 4, 4}, nan, dtype);
      check_steps(q, k, v, parallel,
                  [&](int64_t i, const Tensor& qi, const Tensor& ki, const Tensor& vi) {
                    return block_softmax_attention_step(qi, ki, vi, kc, vc, 4, i);
                  });
    }
  }
}

// ---- bad input -------------------------------------------------------------------------

TEST_CASE("srms_norm and block_softmax_attention: bad input names the op and the value") {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor x = normal({2, 4}, 41);
  for (double eps : {0.0, -1e-8, inf, std::numeric_limits<double>::quiet_NaN()})
    check_error([&] { srms_norm(x, eps); }, {"srms_norm: eps is ", "expected a finite value > 0"});
  check_error([&] { srms_norm(Tensor(), 1e-8); }, {"srms_norm: x is undefined"});

  Tensor q = normal({1, 2, 10, 3}, 42), v = normal({1, 2, 10, 2}, 43);
  for (int64_t block : {0, -4})
    for (bool causal : {true, false})
      check_error([&] { block_softmax_attention(q, q, v, block, causal); },
                  {"block_softmax_attention: block = " + std::to_string(block),
                   "expected a positive integer"});
  check_error([&] { block_softmax_attention(q, q, v, 4, false); },
              {"block_softmax_attention: N = 10", "is not a multiple of block = 4",
               "pad the sequence to 12 positions"});
  check_error(
      [&] {
        block_softmax_attention(q, normal({1, 2, 9, 3}, 44), v, 4, true);
      },
      {"block_softmax_attention: k has shape [1,2,9,3]", "expected [B,H,N,D]"});
}

TEST_CASE("recurrent steps: a state of the wrong shape, dtype or position is an error") {
  Tensor q = normal({1, 2, 3}, 51), v = normal({1, 2, 4}, 52);

  Tensor s = Tensor::zeros({1, 2, 3, 3}, DType::f64);
  check_error(
      [&] { causal_dot_product_step(q, q, v, s); },
      {"causal_dot_product_step: s has shape [1,2,3,3]", "expected [B,H,D,Dv] = [1,2,3,4]"});
  s = Tensor::zeros({1, 2, 3, 4}, DType::f32);
  check_error([&] { causal_dot_product_step(q, q, v, s); },
              {"causal_dot_product_step: s has dtype f32", "expected f64"});

  Tensor kc = Tensor::zeros({1, 2, 5, 3}, DType::f64), vc = Tensor::zeros({1, 2, 5, 4}, DType::f64);
  check_error([&] { block_softmax_attention_step(q, q, v, kc, vc, 4, 0); },
              {"block_softmax_attention_step: k_cache has shape [1,2,5,3]",
               "expected [B,H,L,D] = [1,2,4,3]"});
  kc = Tensor::zeros({1, 2, 4, 3}, DType::f64);
  check_error([&] { block_softmax_attention_step(q, q, v, kc, vc, 4, 0); },
              {"block_softmax_attention_step: v_cache has shape [1,2,5,4]",
               "expected [B,H,L,Dv] = [1,2,4,4]"});
  vc = Tensor::zeros({1, 2, 4, 4}, DType::f32);
  check_error([&] { block_softmax_attention_step(q, q, v, kc, vc, 4, 0); },
              {"block_softmax_attention_step: v_cache has dtype f32", "expected f64"});
  check_error([&] { block_softmax_attention_step(q, q, v, kc, vc, 0, 0); },
              {"block_softmax_attention_step: block = 0", "expected a positive integer"});
  check_error([&] { block_softmax_attention_step(q, q, v, kc, vc, 4, -1); },
              {"block_softmax_attention_step: position = -1", "expected ≥ 0"});
  Tensor none, other;
  check_error([&] { block_softmax_attention_step(q, q, v, none, other, 4, 6); },
              {"block_softmax_attention_step: the caches are undefined at position 6",
               "row 2 of a block of 4"});
  check_error([&] { block_softmax_attention_step(q, q, v, kc, other, 4, 0); },
              {"block_softmax_attention_step: k_cache is defined but v_cache is undefined"});
}
