// mega_attention: whole and chunked, softmax and laplace, against a dense block-masked
// reference; gradcheck (q, k, v and the relative position bias); the recurrent step; bad
// input.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "naive_mega.h"
#include "ops/attention/helpers.h"
#include "polyak/ops/attention/mega_attention.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

struct OpInputs {
  Tensor q, k, v, bias;
};

OpInputs op_inputs(int64_t B, int64_t N, int64_t D, int64_t Dv, int64_t L, uint64_t seed,
                   DType dtype = DType::f64) {
  Generator gen(seed);
  return {normal_leaf({B, N, D}, gen, dtype), normal_leaf({B, N, D}, gen, dtype),
          normal_leaf({B, N, Dv}, gen, dtype), normal_leaf({2 * L - 1}, gen, dtype)};
}

std::vector<double> reference(const OpInputs& in, int64_t chunk, bool causal, MegaScore score) {
  const int64_t B = in.q.size(0), N = in.q.size(1), D = in.q.size(2), Dv = in.v.size(2);
  return naive_mega::attention(B, N, D, Dv, in.q.to_vector(), in.k.to_vector(), in.v.to_vector(),
                               in.bias.to_vector(), std::min(chunk, N), causal,
                               score == MegaScore::laplace);
}

}  // namespace

TEST_CASE("mega_attention equals the dense block-masked reference") {
  struct Case {
    int64_t N, chunk, L;
    bool causal;
  };
  // Whole sequences (chunk ≥ N), whole chunks, a partial last chunk, chunks longer than
  // the GEMM row block (64), and L > chunk.
  const std::vector<Case> cases = {{1, 4, 4, true},   {7, 7, 7, true},     {7, 16, 9, false},
                                   {12, 4, 4, false}, {12, 4, 6, true},    {11, 4, 4, true},
                                   {11, 4, 4, false}, {150, 70, 70, true}, {140, 70, 80, false}};
  for (const Case& c : cases)
    for (MegaScore score : {MegaScore::softmax, MegaScore::laplace}) {
      CAPTURE(c.N);
      CAPTURE(c.chunk);
      CAPTURE(c.L);
      CAPTURE(c.causal);
      CAPTURE(to_string(score));
      const OpInputs in = op_inputs(2, c.N, 5, 3, c.L, 40 + static_cast<uint64_t>(c.N));
      const Tensor y = mega_attention(in.q, in.k, in.v, in.bias, c.chunk, c.causal, score);
      REQUIRE(y.shape() == Shape({2, c.N, 3}));
      CHECK(scaled_error(y.to_vector(), reference(in, c.chunk, c.causal, score)) <= 1e-12);
    }
}

TEST_CASE("mega_attention: chunks are independent sequences") {
  // Chunked attention on [B, nc·W] equals whole-sequence attention on [B·nc, W].
  const int64_t B = 2, nc = 3, W = 5, D = 4, Dv = 6;
  const OpInputs in = op_inputs(B, nc * W, D, Dv, W, 9);
  for (MegaScore score : {MegaScore::softmax, MegaScore::laplace})
    for (bool causal : {false, true}) {
      const Tensor chunked = mega_attention(in.q, in.k, in.v, in.bias, W, causal, score);
      auto rows = [&](const Tensor& t) { return t.reshape({B * nc, W, t.size(2)}); };
      const Tensor whole =
          mega_attention(rows(in.q), rows(in.k), rows(in.v), in.bias, W, causal, score);
      CHECK(max_abs_diff(chunked, whole.reshape({B, nc * W, Dv})) == 0.0);
    }
}

TEST_CASE("mega_attention gradcheck in q, k, v and the bias") {
  struct Case {
    int64_t N, chunk, L;
    bool causal;
  };
  const std::vector<Case> cases = {
      {6, 6, 6, true}, {6, 6, 8, false}, {7, 3, 4, true}, {6, 3, 3, false}};
  std::vector<GradcheckCase> table;
  for (const Case& c : cases)
    for (MegaScore score : {MegaScore::softmax, MegaScore::laplace}) {
      const std::string name = std::string(to_string(score)) + " N " + std::to_string(c.N) +
                               " chunk " + std::to_string(c.chunk) + " L " + std::to_string(c.L) +
                               (c.causal ? " causal" : " bidirectional");
      table.push_back({name,
                       {{2, c.N, 3}, {2, c.N, 3}, {2, c.N, 4}, {2 * c.L - 1}},
                       [c, score](const std::vector<Tensor>& t) {
                         return mega_attention(t[0], t[1], t[2], t[3], c.chunk, c.causal, score);
                       }});
    }
  run_gradcheck_table(table);
}

TEST_CASE("mega_attention: the laplace function and its derivative") {
  // One position, D = Dv = 1, v = 1, q = 0: y = laplace(b[L − 1]) and dy/db[L − 1] is its
  // derivative, f′(s) = exp(−(s − μ)²/(2σ²)) / (σ√(2π)).
  const double mu = std::sqrt(0.5), sigma = std::sqrt(1.0 / (4.0 * std::numbers::pi));
  for (double s : {-1.0, 0.0, 0.5, mu, 1.3}) {
    CAPTURE(s);
    Tensor q = Tensor::zeros({1, 1, 1}, DType::f64), k = Tensor::ones({1, 1, 1}, DType::f64);
    Tensor v = Tensor::ones({1, 1, 1}, DType::f64);
    Tensor bias = Tensor::from({0.3, s, -0.2}, DType::f64).requires_grad_();
    Tensor y = mega_attention(q, k, v, bias, 1, true, MegaScore::laplace);
    CHECK(
        y.item() ==
        doctest::Approx(0.5 * (1 + std::erf((s - mu) / (sigma * std::sqrt(2.0))))).epsilon(1e-14));
    y.backward(Tensor::ones({1, 1, 1}, DType::f64));
    const double slope = std::exp(-(s - mu) * (s - mu) / (2 * sigma * sigma)) /
                         (sigma * std::sqrt(2 * std::numbers::pi));
    const std::vector<double> db = bias.grad().to_vector();
    CHECK(db[1] == doctest::Approx(slope).epsilon(1e-12));
    CHECK(db[0] == 0.0);
    CHECK(db[2] == 0.0);
  }
}

TEST_CASE("mega_attention in f32 agrees with f64") {
  const OpInputs in = op_inputs(2, 40, 8, 6, 16, 21);
  const OpInputs in32 = op_inputs(2, 40, 8, 6, 16, 21, DType::f32);
  for (MegaScore score : {MegaScore::softmax, MegaScore::laplace}) {
    const Tensor y = mega_attention(in.q, in.k, in.v, in.bias, 16, true, score);
    const Tensor y32 = mega_attention(in32.q, in32.k, in32.v, in32.bias, 16, true, score);
    CHECK(relative_error(y32.to_vector(), y.to_vector()) <= 1e-5);
  }
}

TEST_CASE("mega_attention_step equals row `row` of the causal parallel form") {
  // A cache of capacity 3 holding a chunk of 7: the step grows it (3 → 64) at row 3.
  const int64_t B = 2, W = 7, D = 3, Dv = 5, L = 9;
  for (MegaScore score : {MegaScore::softmax, MegaScore::laplace}) {
    CAPTURE(to_string(score));
    const OpInputs in = op_inputs(B, W, D, Dv, L, 6);
    NoGradGuard no_grad;
    const std::vector<double> y =
        mega_attention(in.q, in.k, in.v, in.bias, W, true, score).to_vector();
    Tensor k_cache = Tensor::zeros({B, 3, D}, DType::f64);
    Tensor v_cache = Tensor::zeros({B, 3, Dv}, DType::f64);
    auto at = [&](const Tensor& t, int64_t i) { return slice(t, 1, i, i + 1).reshape({B, -1}); };
    for (int64_t row = 0; row < W; ++row) {
      const std::vector<double> yr =
          mega_attention_step(at(in.q, row), at(in.k, row), at(in.v, row), k_cache, v_cache, row,
                              in.bias, score)
              .to_vector();
      CHECK(k_cache.size(1) == (row < 3 ? 3 : 64));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < Dv; ++c)
          CHECK(std::abs(yr[static_cast<size_t>(b * Dv + c)] -
                         y[static_cast<size_t>((b * W + row) * Dv + c)]) <= 1e-13);
    }
  }
}

TEST_CASE("mega_attention: chunked memory grows linearly in N") {
  // Forward + backward keep one W-wide row per position (plus outputs and gradients), so
  // doubling N doubles the peak; whole-sequence attention would quadruple it.
  const int64_t W = 32, D = 16, Dv = 16;
  auto peak_bytes = [&](int64_t N) {
    const OpInputs in = op_inputs(1, N, D, Dv, W, 5);
    Generator gen(6);
    const Tensor dy = Tensor::randn({1, N, Dv}, gen, DType::f64);
    empty_cache();
    reset_peak_allocated();
    const size_t before = allocator_stats().allocated_bytes;
    mega_attention(in.q, in.k, in.v, in.bias, W, true, MegaScore::softmax).backward(dy);
    CHECK(in.q.grad().defined());
    return static_cast<double>(allocator_stats().peak_allocated_bytes - before);
  };
  const double small = peak_bytes(2048), large = peak_bytes(4096);
  CAPTURE(small);
  CAPTURE(large);
  CHECK(large <= 2.1 * small);
  // A few values of each width per position, far below one N × N score matrix.
  CHECK(large < 8.0 * 4096 * 4 * (W + D + Dv));
  CHECK(large < 8.0 * 4096 * 4096 / 16);
}

TEST_CASE("mega_attention: bad input is an error naming the argument") {
  const OpInputs in = op_inputs(2, 6, 3, 4, 4, 1);
  Generator gen(3);
  const MegaScore sm = MegaScore::softmax;
  check_error([&] { mega_attention(in.q, in.k, in.v, in.bias, 0, true, sm); },
              {"mega_attention", "chunk = 0", "positive"});
  check_error([&] { mega_attention(in.q, in.k, in.v, in.bias, 6, true, sm); },
              {"mega_attention", "rel_bias has 7 entries", "L = 4", "L ≥ 6"});
  check_error(
      [&] { mega_attention(in.q, in.k, in.v, Tensor::zeros({6}, DType::f64), 3, true, sm); },
      {"mega_attention", "rel_bias has shape [6]", "[2L − 1]"});
  check_error(
      [&] {
        mega_attention(in.q, in.k.reshape({2, 3, 6}), in.v, in.bias, 3, true, sm);
      },
      {"mega_attention", "k has shape [2,3,6]", "[B,N,D] = [2,6,3]"});
  check_error(
      [&] {
        mega_attention(in.q, in.k, in.v.reshape({2, 4, 6}), in.bias, 3, true, sm);
      },
      {"mega_attention", "v has shape [2,4,6]", "matching q [2,6,3]"});
  check_error(
      [&] {
        mega_attention(in.q.reshape({12, 3}), in.k, in.v, in.bias, 3, true, sm);
      },
      {"mega_attention", "q", "rank 3", "[B,N,D]"});
  check_error([&] { mega_attention(in.q, in.k, in.v, in.bias.to(DType::f32), 3, true, sm); },
              {"mega_attention", "rel_bias is f32", "f64"});
  check_error([] { parse_mega_score("relu2"); }, {"parse_mega_score", "relu2", "softmax, laplace"});

  Tensor q = Tensor::zeros({2, 3}, DType::f64), v = Tensor::zeros({2, 4}, DType::f64);
  Tensor kc = Tensor::zeros({2, 8, 3}, DType::f64), vc = Tensor::zeros({2, 8, 4}, DType::f64);
  check_error([&] { mega_attention_step(q, q, v, kc, vc, 4, in.bias, sm); },
              {"mega_attention_step", "row = 4", "< L = 4"});
  check_error([&] { mega_attention_step(q, q, v, kc, vc, 9, in.bias, sm); },
              {"mega_attention_step", "row = 9", "[0, 8]"});
  Tensor bad = Tensor::zeros({2, 5, 4}, DType::f64);
  check_error([&] { mega_attention_step(q, q, v, kc, bad, 1, in.bias, sm); },
              {"mega_attention_step", "v_cache has shape [2,5,4]", "[B,C,Dv] = [2,8,4]"});
  check_error([&] { mega_attention_step(q, q, v, kc, kc, 1, in.bias, sm); },
              {"mega_attention_step", "v_cache has shape [2,8,3]"});
}
