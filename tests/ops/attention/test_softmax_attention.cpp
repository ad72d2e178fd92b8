// Softmax attention against the quadratic reference, and its numerical stability.
#include <cmath>
#include <vector>

#include "helpers.h"
#include "naive.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

TEST_CASE("softmax_attention equals the row-by-row reference") {
  struct Config {
    int64_t N, M, D, Dv;
    bool causal;
  };
  const std::vector<Config> configs = {
      {1, 1, 4, 3, true},  {7, 7, 8, 5, true},   {64, 64, 16, 16, true},  {100, 100, 3, 9, true},
      {1, 5, 4, 3, false}, {7, 13, 8, 5, false}, {64, 33, 16, 16, false}, {100, 257, 3, 9, false},
  };
  for (const Config& c : configs) {
    CAPTURE(c.N);
    CAPTURE(c.M);
    CAPTURE(c.causal);
    Generator gen(static_cast<uint64_t>(c.N * 1000 + c.M));
    const int64_t B = 2, H = 3;
    Tensor q = normal_leaf({B, H, c.N, c.D}, gen), k = normal_leaf({B, H, c.M, c.D}, gen);
    Tensor v = normal_leaf({B, H, c.M, c.Dv}, gen);
    Tensor y = softmax_attention(q, k, v, c.causal);
    REQUIRE(y.shape() == Shape({B, H, c.N, c.Dv}));
    const naive::Dims d{B, H, c.N, c.M, c.D, c.Dv};
    const std::vector<double> ref =
        naive::softmax_attention(d, q.to_vector(), k.to_vector(), v.to_vector(), c.causal);
    CHECK(scaled_error(y.to_vector(), ref) <= 1e-12);
  }
}

TEST_CASE("softmax_attention is stable for large scores") {
  // Scores of order 1e4 overflow exp() unless the row maximum is subtracted first.
  Generator gen(11);
  auto scaled = [&](const Shape& s, double factor) {
    std::vector<double> x = Tensor::randn(s, gen, DType::f64).to_vector();
    for (double& e : x) e *= factor;
    return Tensor::from(x, s, DType::f64);
  };
  Tensor q = scaled({1, 2, 9, 4}, 100.0), k = scaled({1, 2, 9, 4}, 100.0);
  Tensor v = scaled({1, 2, 9, 3}, 1.0);
  for (bool causal : {true, false}) {
    for (DType dt : {DType::f64, DType::f32}) {
      Tensor y = softmax_attention(q.to(dt), k.to(dt), v.to(dt), causal);
      for (double x : y.to_vector()) CHECK(std::isfinite(x));
      const std::vector<double> ref = naive::softmax_attention(
          {1, 2, 9, 9, 4, 3}, q.to_vector(), k.to_vector(), v.to_vector(), causal);
      CHECK(scaled_error(y.to_vector(), ref) <= (dt == DType::f64 ? 1e-9 : 1e-2));
    }
  }
}

TEST_CASE("causal softmax attention: row i ignores keys after i") {
  Generator gen(12);
  Tensor q = Tensor::randn({1, 1, 6, 4}, gen, DType::f64);
  Tensor k = Tensor::randn({1, 1, 6, 4}, gen, DType::f64);
  Tensor v = Tensor::randn({1, 1, 6, 2}, gen, DType::f64);
  std::vector<double> kv = k.to_vector(), vv = v.to_vector();
  for (size_t i = 4 * 4; i < kv.size(); ++i) kv[i] += 10.0;  // change keys 4 and 5
  for (size_t i = 4 * 2; i < vv.size(); ++i) vv[i] -= 3.0;
  Tensor y0 = softmax_attention(q, k, v, true);
  Tensor y1 = softmax_attention(q, Tensor::from(kv, k.shape(), DType::f64),
                                Tensor::from(vv, v.shape(), DType::f64), true);
  const std::vector<double> a = y0.to_vector(), b = y1.to_vector();
  for (size_t i = 0; i < 4 * 2; ++i) CHECK(a[i] == b[i]);  // rows 0..3 unchanged
  CHECK(a[4 * 2] != b[4 * 2]);
}
