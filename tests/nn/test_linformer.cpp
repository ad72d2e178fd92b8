// LinformerAttention (docs/math.md §7) — softmax attention on E k, F v — against softmax
// attention itself; its parameters, gradients and checks.
#include <cmath>
#include <memory>
#include <vector>

#include "nn/helpers.h"
#include "ops/attention/helpers.h"
#include "polyak/nn/linformer.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

AttentionConfig linformer_config(int64_t k, int64_t max_len) {
  AttentionConfig c;
  c.kind = "linformer";
  c.causal = false;
  c.d_model = 8;
  c.heads = 2;
  c.params = LinformerParams{.k = k};
  c.max_len = max_len;
  return c;
}

}  // namespace

// ---- LinformerAttention ------------------------------------------------------------------

TEST_CASE("linformer: E, F [k, max_len] parameters, N(0, 1/k) at start, output shape") {
  Generator gen(33);
  auto attn = make_attention(linformer_config(16, 256), gen);
  const Tensor e = attn->parameter("proj_k"), f = attn->parameter("proj_v");
  CHECK(e.shape() == Shape({16, 256}));
  CHECK(f.shape() == Shape({16, 256}));
  CHECK(e.requires_grad());
  CHECK(max_abs_diff(e, f) > 0.1);  // two independent draws
  double sum = 0, sq = 0;
  for (double v : e.to_vector()) {
    sum += v;
    sq += v * v;
  }
  const double n = static_cast<double>(e.numel()), mean = sum / n;
  CHECK(std::abs(mean) <= 0.02);
  CHECK(std::sqrt(sq / n - mean * mean) == doctest::Approx(0.25).epsilon(0.05));  // 1/√16

  for (int64_t N : {1, 100, 256}) {
    CAPTURE(N);
    Generator xg(34);
    const Tensor y = attn->forward(Tensor::randn({2, N, 8}, xg));
    CHECK(y.shape() == Shape({2, N, 8}));
  }
}

TEST_CASE("linformer: with k = N and E = F = identity it is softmax attention") {
  const int64_t N = 6;
  for (int64_t max_len : {N, N + 3}) {  // E = [I | 0]: the columns past N are never read
    CAPTURE(max_len);
    Generator gen(35);
    auto attn = make_attention(linformer_config(N, max_len), gen);
    attn->to(DType::f64);
    std::vector<double> eye(static_cast<size_t>(N * max_len), 0.0);
    for (int64_t i = 0; i < N; ++i) eye[static_cast<size_t>(i * max_len + i)] = 1.0;
    const Tensor identity = Tensor::from(eye, {N, max_len}, DType::f64);
    attn->parameter("proj_k").copy_(identity);
    attn->parameter("proj_v").copy_(identity);

    AttentionConfig soft_config = linformer_config(N, max_len);
    soft_config.kind = "softmax";
    soft_config.params = Params();
    auto soft = make_attention(soft_config, gen);
    soft->to(DType::f64);
    copy_shared(*attn, *soft);

    Generator xg(36);
    const Tensor x = Tensor::randn({2, N, 8}, xg, DType::f64);
    const Tensor y = attn->forward(x), y_soft = soft->forward(x);
    REQUIRE(max_abs_diff(y_soft, Tensor::zeros(y_soft.shape(), DType::f64)) > 0.1);
    CHECK(max_abs_diff(y, y_soft) <= 1e-12);
  }
}

TEST_CASE("linformer: gradcheck w.r.t. the input and E, F, E's unused columns get zeros") {
  Generator gen(37);
  auto attn = make_attention(linformer_config(3, 7), gen);
  attn->to(DType::f64);
  Generator xg(38);
  const Tensor x = Tensor::randn({2, 5, 8}, xg, DType::f64);
  GradcheckResult r = gradcheck_module(*attn, x, {"proj_k", "proj_v", "qkv_proj.weight"},
                                       [&](const Tensor& in) { return attn->forward(in); });
  INFO(r.message);
  CHECK(r.ok);

  attn->zero_grad();
  Tensor y = attn->forward(x);
  y.backward(Tensor::randn(y.shape(), xg, DType::f64));
  const std::vector<double> de = attn->parameter("proj_k").grad().to_vector();
  double used = 0, unused = 0;
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 7; ++j) (j < 5 ? used : unused) += std::abs(de[i * 7 + j]);
  CHECK(used > 0);
  CHECK(unused == 0.0);
}

TEST_CASE("linformer rejects long sequences, causal configs and recurrence") {
  Generator gen(39);
  auto attn = make_attention(linformer_config(4, 6), gen);
  check_error(
      [&] {
        attn->forward(Tensor::zeros({1, 7, 8}));
      },
      {"LinformerAttention", "N = 7", "max_len = 6"});

  AttentionConfig causal = linformer_config(4, 6);
  causal.causal = true;
  check_error([&] { make_attention(causal, gen); },
              {"AttentionConfig", "linformer", "causal = true", "causal = false"});
  check_error([&] { make_attention(linformer_config(4, 0), gen); },
              {"AttentionConfig", "max_len = 0"});
  check_error([&] { make_attention(linformer_config(0, 6), gen); }, {"AttentionConfig", "k = 0"});
  check_error([&] { attn->initial_state(1); }, {"'linformer'", "not causal"});
}
