// The discretized logistic mixture (ops/mixture.h): values against the definition with
// sigmoids in long double, normalisation over the 256 levels, gradcheck, draws, bad input.
#include <cmath>
#include <vector>

#include "polyak/ops/mixture.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;

namespace {

// −log Σ_k softmax(a)_k (σ(plus) − σ(minus)) straight from the definition, in long double.
double reference_nll(const std::vector<double>& p, int64_t K, int64_t x) {
  using L = long double;
  auto sig = [](L v) { return 1.0L / (1.0L + std::exp(-v)); };
  L amax = p[0];
  for (int64_t k = 1; k < K; ++k) amax = std::max<L>(amax, p[static_cast<size_t>(k)]);
  L z = 0;
  for (int64_t k = 0; k < K; ++k) z += std::exp(static_cast<L>(p[static_cast<size_t>(k)]) - amax);
  const L c = static_cast<L>(x) / 127.5L - 1, h = 1.0L / 255;
  L total = 0;
  for (int64_t k = 0; k < K; ++k) {
    const L w = std::exp(static_cast<L>(p[static_cast<size_t>(k)]) - amax) / z;
    const L mu = p[static_cast<size_t>(K + k)];
    const L ell = std::max<L>(p[static_cast<size_t>(2 * K + k)], -7.0L);
    const L s = std::exp(-ell);
    const L plus = x == 255 ? 1.0L : sig(s * (c - mu + h));
    const L minus = x == 0 ? 0.0L : sig(s * (c - mu - h));
    total += w * (plus - minus);
  }
  return static_cast<double>(-std::log(total));
}

// Pixel params [R, 3K]: logits ~ N(0, 1), means in [−1, 1], log-scales in [−4, 0].
Tensor random_params(int64_t R, int64_t K, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> v(static_cast<size_t>(R * 3 * K));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t k = 0; k < K; ++k) {
      const size_t base = static_cast<size_t>(r * 3 * K);
      v[base + static_cast<size_t>(k)] = gen.normal();
      v[base + static_cast<size_t>(K + k)] = 2 * gen.uniform() - 1;
      v[base + static_cast<size_t>(2 * K + k)] = -4 * gen.uniform();
    }
  return Tensor::from(v, Shape{R, 3 * K}, DType::f64);
}

}  // namespace

TEST_CASE("logistic_mixture_nll equals the definition, edges included") {
  const int64_t K = 3, R = 12;
  const Tensor params = random_params(R, K, 1);
  const std::vector<int64_t> x = {0, 255, 1, 254, 127, 128, 3, 200, 60, 0, 255, 90};
  const Tensor nll = logistic_mixture_nll(params, Tensor::from_ints(x, Shape{R}));
  REQUIRE(nll.shape() == Shape({R}));
  const std::vector<double> p = params.to_vector(), got = nll.to_vector();
  for (int64_t r = 0; r < R; ++r) {
    CAPTURE(r);
    const std::vector<double> row(p.begin() + r * 3 * K, p.begin() + (r + 1) * 3 * K);
    CHECK(got[static_cast<size_t>(r)] ==
          doctest::Approx(reference_nll(row, K, x[static_cast<size_t>(r)])).epsilon(1e-12));
  }
  // f32 agrees with f64 to f32's precision.
  const Tensor nll32 = logistic_mixture_nll(params.to(DType::f32), Tensor::from_ints(x, Shape{R}));
  for (int64_t r = 0; r < R; ++r)
    CHECK(nll32.to_vector()[static_cast<size_t>(r)] ==
          doctest::Approx(got[static_cast<size_t>(r)]).epsilon(1e-5));
}

TEST_CASE("logistic_mixture_nll: the 256 levels' probabilities sum to one") {
  const int64_t K = 4;
  for (uint64_t seed : {2, 3, 4}) {
    Tensor params = random_params(1, K, seed);
    if (seed == 4) {  // scales far below a level's width: the floor at −7 and the tails
      std::vector<double> v = params.to_vector();
      for (int64_t k = 0; k < K; ++k) v[static_cast<size_t>(2 * K + k)] = -12;
      params = Tensor::from(v, Shape{1, 3 * K}, DType::f64);
    }
    std::vector<int64_t> levels(256);
    for (int64_t i = 0; i < 256; ++i) levels[static_cast<size_t>(i)] = i;
    std::vector<double> rows;
    for (int64_t i = 0; i < 256; ++i) {
      const std::vector<double> v = params.to_vector();
      rows.insert(rows.end(), v.begin(), v.end());
    }
    const Tensor nll = logistic_mixture_nll(Tensor::from(rows, Shape{256, 3 * K}, DType::f64),
                                            Tensor::from_ints(levels, Shape{256}));
    double total = 0;
    for (double v : nll.to_vector()) total += std::exp(-v);
    CAPTURE(seed);
    CHECK(total == doctest::Approx(1.0).epsilon(1e-12));
  }
}

TEST_CASE("logistic_mixture_nll gradcheck in f64") {
  const int64_t K = 3, R = 6;
  Tensor params = random_params(R, K, 5).requires_grad_(true);
  const Tensor x = Tensor::from_ints({0, 255, 17, 128, 240, 3}, Shape{R});
  const GradcheckResult r = gradcheck(
      [&](const std::vector<Tensor>& in) { return logistic_mixture_nll(in[0], x); }, {params});
  INFO(r.message);
  CHECK(r.ok);
  // Below the floor the log-scale gets no gradient.
  std::vector<double> v = params.to_vector();
  v[2 * K] = -9;
  Tensor floored = Tensor::from(v, Shape{R, 3 * K}, DType::f64).requires_grad_(true);
  logistic_mixture_nll(floored, x).backward(Tensor::ones({R}, DType::f64));
  CHECK(floored.grad().to_vector()[2 * K] == 0.0);
  CHECK(floored.grad().to_vector()[2 * K + 1] != 0.0);
}

TEST_CASE("logistic_mixture_nll: scales far wider than a level stay exact and finite") {
  // ℓ = 9, 10: the bin width δ = 2 e^{−ℓ}/255 is below 1e-4, where log expm1(δ) is formed
  // from ℓ directly; ℓ = 110 in f32: e^{−ℓ} underflows, the nll must not.
  const int64_t K = 2, R = 4;
  std::vector<double> v = random_params(R, K, 7).to_vector();
  for (int64_t r = 0; r < R; ++r) {
    v[static_cast<size_t>(r * 3 * K + 2 * K)] = 9;
    v[static_cast<size_t>(r * 3 * K + 2 * K + 1)] = 10;
  }
  Tensor params = Tensor::from(v, Shape{R, 3 * K}, DType::f64).requires_grad_(true);
  const Tensor x = Tensor::from_ints({0, 255, 100, 7}, Shape{R});
  const std::vector<double> got = logistic_mixture_nll(params, x).to_vector();
  for (int64_t r = 0; r < R; ++r) {
    const std::vector<double> row(v.begin() + r * 3 * K, v.begin() + (r + 1) * 3 * K);
    CHECK(got[static_cast<size_t>(r)] ==
          doctest::Approx(reference_nll(row, K, x.data<int64_t>()[r])).epsilon(1e-9));
  }
  const GradcheckResult g = gradcheck(
      [&](const std::vector<Tensor>& in) { return logistic_mixture_nll(in[0], x); }, {params});
  INFO(g.message);
  CHECK(g.ok);
  std::vector<float> wide(static_cast<size_t>(3 * K), 0.0f);
  wide[2 * K] = wide[2 * K + 1] = 110.0f;
  Tensor w = Tensor::from(wide, Shape{1, 3 * K});
  w.requires_grad_(true);
  const Tensor nll = logistic_mixture_nll(w, Tensor::from_ints({128}, Shape{1}));
  CHECK(std::isfinite(nll.item()));
  nll.backward(Tensor::ones({1}));
  for (double d : w.grad().to_vector()) CHECK(std::isfinite(d));
}

TEST_CASE("sample_logistic_mixture draws the mixture's distribution") {
  // One pixel's distribution against the frequencies of 20000 draws.
  const int64_t K = 2, n = 20000;
  std::vector<double> one = {0.3, -0.2, -0.5, 0.4, -2.5, -3.0};
  std::vector<double> rows;
  for (int64_t i = 0; i < n; ++i) rows.insert(rows.end(), one.begin(), one.end());
  const Tensor params = Tensor::from(rows, Shape{n, 3 * K}, DType::f64);
  Generator gen(9);
  const Tensor draws = sample_logistic_mixture(params, gen);
  REQUIRE(draws.shape() == Shape({n}));
  REQUIRE(draws.dtype() == DType::i64);
  std::vector<double> freq(256, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = draws.data<int64_t>()[i];
    REQUIRE(v >= 0);
    REQUIRE(v <= 255);
    freq[static_cast<size_t>(v)] += 1.0 / n;
  }
  // Over bins of 16 levels, the draws' share within 4 standard errors of the probability.
  for (int64_t bin = 0; bin < 16; ++bin) {
    double p = 0, f = 0;
    for (int64_t x = bin * 16; x < (bin + 1) * 16; ++x) {
      p += std::exp(-reference_nll(one, K, x));
      f += freq[static_cast<size_t>(x)];
    }
    CAPTURE(bin);
    CHECK(std::abs(f - p) <= 4 * std::sqrt(p * (1 - p) / n) + 1e-4);
  }
  // The same generator position draws the same pixels.
  Generator again(9);
  CHECK(sample_logistic_mixture(params, again).to_vector() == draws.to_vector());
}

TEST_CASE("logistic_mixture_nll: bad input") {
  const Tensor p = Tensor::zeros({2, 6});
  check_error(
      [&] {
        logistic_mixture_nll(Tensor::zeros({2, 5}), Tensor::zeros({2}, DType::i64));
      },
      {"logistic_mixture_nll", "params has shape [2,5]", "3K"});
  check_error([&] { logistic_mixture_nll(p, Tensor::zeros({3}, DType::i64)); },
              {"targets has shape [3]", "expected [2]"});
  check_error([&] { logistic_mixture_nll(p, Tensor::zeros({2})); }, {"targets is f32", "integer"});
  check_error(
      [&] {
        logistic_mixture_nll(p, Tensor::from_ints({3, 256}, Shape{2}));
      },
      {"targets[1] = 256", "[0, 255]"});
  check_error(
      [&] {
        logistic_mixture_nll(Tensor::zeros({2, 3 * 65}), Tensor::zeros({2}, DType::i64));
      },
      {"K = 65", "at most 64"});
  Generator gen(1);
  check_error([&] { sample_logistic_mixture(Tensor::zeros({4}), gen); },
              {"sample_logistic_mixture", "[..., 3K]"});
}
