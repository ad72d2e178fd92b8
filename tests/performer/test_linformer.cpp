// Linformer (docs/math.md §7): sequence_projection against its definition and by gradcheck, and
// LinformerAttention — softmax attention on E k, F v — against softmax attention itself.
#include <cmath>
#include <memory>
#include <vector>

#include "attention/helpers.h"
#include "nn/helpers.h"
#include "polyak/nn/linformer.h"
#include "polyak/ops/attention/sequence_projection.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

struct ProjectionReference {
  std::vector<double> y, dx, de;
};

// y_bh = E_N x_bh, dx_bh = E_Nᵀ dy_bh, de[:, 0:N] = Σ_bh dy_bh x_bhᵀ (0 beyond N), by loops.
ProjectionReference projection_reference(const Tensor& x, const Tensor& e, const Tensor& dy) {
  const int64_t BH = x.size(0) * x.size(1), N = x.size(2), D = x.size(3);
  const int64_t k = e.size(0), M = e.size(1);
  const std::vector<double> xs = x.to_vector(), es = e.to_vector(), dys = dy.to_vector();
  ProjectionReference r{std::vector<double>(static_cast<size_t>(BH * k * D), 0.0),
                        std::vector<double>(xs.size(), 0.0), std::vector<double>(es.size(), 0.0)};
  for (int64_t h = 0; h < BH; ++h)
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < N; ++j)
        for (int64_t a = 0; a < D; ++a) {
          const double eij = es[i * M + j], xja = xs[(h * N + j) * D + a];
          const double dyia = dys[(h * k + i) * D + a];
          r.y[(h * k + i) * D + a] += eij * xja;
          r.dx[(h * N + j) * D + a] += eij * dyia;
          r.de[i * M + j] += dyia * xja;
        }
  return r;
}

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

// Loads into `to` the entries of from's state dict that `to` has too (the shared
// projections); the rest of `to` stays.
void copy_shared(const Module& from, Module& to) {
  const NamedTensors theirs = from.state_dict();
  NamedTensors state = to.state_dict();
  for (auto& [name, t] : state)
    for (const auto& [their_name, value] : theirs)
      if (their_name == name) t = value;
  to.load_state_dict(state);
}

}  // namespace

// ---- sequence_projection ---------------------------------------------------------------

TEST_CASE("sequence_projection equals E[:, :N] x and its gradients, N < M and N = M") {
  struct Case {
    Shape x;
    int64_t k, M;
  };
  for (const Case& c : {Case{{2, 3, 5, 4}, 3, 7}, Case{{1, 2, 6, 3}, 4, 6},
                        Case{{2, 2, 40, 5}, 9, 64}, Case{{1, 1, 1, 2}, 2, 1}}) {
    CAPTURE(c.x);
    CAPTURE(c.k);
    CAPTURE(c.M);
    Generator gen(31);
    Tensor x = normal_leaf(c.x, gen), e = normal_leaf({c.k, c.M}, gen);
    Tensor y = sequence_projection(x, e);
    REQUIRE(y.shape() == Shape({c.x[0], c.x[1], c.k, c.x[3]}));
    const Tensor dy = Tensor::randn(y.shape(), gen, DType::f64);
    y.backward(dy);
    const ProjectionReference ref = projection_reference(x, e, dy);
    CHECK(scaled_error(y.to_vector(), ref.y) <= 1e-12);
    CHECK(scaled_error(x.grad().to_vector(), ref.dx) <= 1e-12);
    CHECK(scaled_error(e.grad().to_vector(), ref.de) <= 1e-12);

    Tensor x32 = as_leaf(x, DType::f32), e32 = as_leaf(e, DType::f32);
    Tensor y32 = sequence_projection(x32, e32);
    CHECK(y32.dtype() == DType::f32);
    y32.backward(dy.to(DType::f32));
    CHECK(scaled_error(y32.to_vector(), ref.y) <= 1e-5);
    CHECK(scaled_error(x32.grad().to_vector(), ref.dx) <= 1e-5);
    CHECK(scaled_error(e32.grad().to_vector(), ref.de) <= 1e-5);
  }
}

TEST_CASE("sequence_projection computes only the gradients asked for") {
  Generator gen(32);
  const Tensor x = Tensor::randn({2, 2, 4, 3}, gen, DType::f64);
  const Tensor e = Tensor::randn({3, 5}, gen, DType::f64);
  const Tensor dy = Tensor::randn({2, 2, 3, 3}, gen, DType::f64);
  const ProjectionReference ref = projection_reference(x, e, dy);

  Tensor x_leaf = as_leaf(x, DType::f64);
  sequence_projection(x_leaf, e).backward(dy);
  CHECK(scaled_error(x_leaf.grad().to_vector(), ref.dx) <= 1e-12);

  Tensor e_leaf = as_leaf(e, DType::f64);
  sequence_projection(x, e_leaf).backward(dy);
  CHECK(scaled_error(e_leaf.grad().to_vector(), ref.de) <= 1e-12);
}

TEST_CASE("sequence_projection passes gradcheck (f64, random cotangent)") {
  std::vector<GradcheckCase> cases = {
      {"sequence_projection N = 4 < M = 6",
       {Shape{2, 2, 4, 3}, Shape{3, 6}},
       [](const std::vector<Tensor>& in) { return sequence_projection(in[0], in[1]); }},
      {"sequence_projection N = M = 5",
       {Shape{1, 3, 5, 2}, Shape{2, 5}},
       [](const std::vector<Tensor>& in) { return sequence_projection(in[0], in[1]); }},
      {"softmax_attention on projected k, v",
       {Shape{1, 2, 5, 3}, Shape{1, 2, 5, 3}, Shape{1, 2, 5, 3}, Shape{2, 7}, Shape{2, 7}},
       [](const std::vector<Tensor>& in) {
         return softmax_attention(in[0], sequence_projection(in[1], in[3]),
                                  sequence_projection(in[2], in[4]), false);
       }},
  };
  run_gradcheck_table(cases);
}

TEST_CASE("sequence_projection rejects bad input, naming the argument") {
  const Tensor x = Tensor::zeros({2, 3, 5, 4}, DType::f64), e = Tensor::zeros({3, 7}, DType::f64);
  check_error(
      [&] {
        sequence_projection(Tensor::zeros({3, 5, 4}, DType::f64), e);
      },
      {"sequence_projection", "x has shape [3,5,4]", "rank 4", "[B,H,N,D]"});
  check_error([&] { sequence_projection(x, Tensor::zeros({7}, DType::f64)); },
              {"sequence_projection", "e has shape [7]", "rank 2", "[k,M]"});
  check_error(
      [&] {
        sequence_projection(x, Tensor::zeros({3, 4}, DType::f64));
      },
      {"sequence_projection", "x has shape [2,3,5,4]", "N = 5", "N ≤ M = 4", "e [3,4]"});
  check_error(
      [&] {
        sequence_projection(x, Tensor::zeros({0, 7}, DType::f64));
      },
      {"sequence_projection", "e has shape [0,7]", "k ≥ 1"});
  check_error(
      [&] {
        sequence_projection(x, Tensor::zeros({3, 7}));
      },
      {"sequence_projection", "e is f32", "x is f64"});
  check_error([&] { sequence_projection(Tensor(), e); }, {"sequence_projection", "x is undefined"});
}

// ---- LinformerAttention ------------------------------------------------------------------

TEST_CASE("linformer: E, F [k, max_len] parameters, N(0, 1/k) at start; output shape") {
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

TEST_CASE("linformer: gradcheck w.r.t. the input and E, F; E's unused columns get zeros") {
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
