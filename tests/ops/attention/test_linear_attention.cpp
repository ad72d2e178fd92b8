// Linear attention: the O(N) sweeps against the quadratic reference (values and
// gradients), f32 against f64, and the memory bound of the causal backward.
#include <cmath>
#include <string>
#include <vector>

#include "helpers.h"
#include "naive.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

struct Widths {
  int64_t D, Dv;
};

// Lengths that are no multiple of any block size, and N = 1.
const std::vector<int64_t> kLengths = {1, 2, 7, 64, 100, 257};
// Dv = 16, 32, 64 take the kernels' fixed-width paths, the others the general one.
const std::vector<Widths> kWidths = {{3, 5}, {8, 16}, {16, 4}, {5, 32}, {32, 64}, {6, 12}};

}  // namespace

TEST_CASE("causal_linear_attention and causal_dot_product equal the quadratic form") {
  for (bool normalize : {true, false}) {
    for (size_t t = 0; t < kLengths.size(); ++t) {
      const int64_t B = 2, H = 3, N = kLengths[t];
      const Widths w = kWidths[t % kWidths.size()];
      CAPTURE(normalize);
      CAPTURE(N);
      CAPTURE(w.D);
      CAPTURE(w.Dv);
      Generator gen(100 + t);
      Tensor q = positive_leaf({B, H, N, w.D}, gen);
      Tensor k = positive_leaf({B, H, N, w.D}, gen);
      Tensor v = normal_leaf({B, H, N, w.Dv}, gen);
      Tensor dy = Tensor::randn({B, H, N, w.Dv}, gen, DType::f64);

      Tensor y = normalize ? causal_linear_attention(q, k, v) : causal_dot_product(q, k, v);
      REQUIRE(y.shape() == Shape({B, H, N, w.Dv}));
      y.backward(dy);

      const naive::Dims d{B, H, N, N, w.D, w.Dv};
      const std::vector<double> dyv = dy.to_vector();
      naive::Grads g;
      const std::vector<double> ref =
          naive::linear_attention(d, q.to_vector(), k.to_vector(), v.to_vector(), /*causal=*/true,
                                  normalize, 1e-6, &dyv, &g);
      CHECK(scaled_error(y.to_vector(), ref) <= 1e-10);
      CHECK(scaled_error(q.grad().to_vector(), g.dq) <= 1e-10);
      CHECK(scaled_error(k.grad().to_vector(), g.dk) <= 1e-10);
      CHECK(scaled_error(v.grad().to_vector(), g.dv) <= 1e-10);
    }
  }
}

TEST_CASE("causal linear attention equals its quadratic form built from polyak ops") {
  // y = (mask ⊙ q kᵀ) v / ((mask ⊙ q kᵀ) 1 + eps), differentiated by the engine through
  // matmul, mul, sum and div: values and gradients must match the sweeps'.
  for (int64_t N : {1, 7, 64, 100}) {
    CAPTURE(N);
    const int64_t B = 2, H = 2, D = 5, Dv = 32;
    Generator gen(400 + static_cast<uint64_t>(N));
    Tensor q = positive_leaf({B, H, N, D}, gen), k = positive_leaf({B, H, N, D}, gen);
    Tensor v = normal_leaf({B, H, N, Dv}, gen);
    Tensor dy = Tensor::randn({B, H, N, Dv}, gen, DType::f64);
    std::vector<double> lower(static_cast<size_t>(N * N), 0.0);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j <= i; ++j) lower[static_cast<size_t>(i * N + j)] = 1.0;
    const Tensor mask = Tensor::from(lower, {N, N}, DType::f64);

    Tensor qr = q.detach().requires_grad_(), kr = k.detach().requires_grad_();
    Tensor vr = v.detach().requires_grad_();
    Tensor A = matmul(qr, kr, false, true) * mask;
    Tensor y_ref = matmul(A, vr) / (sum(A, -1, /*keepdim=*/true) + 1e-6);
    y_ref.backward(dy);

    Tensor y = causal_linear_attention(q, k, v);
    y.backward(dy);
    CHECK(max_abs_diff(y, y_ref) <= 1e-10);
    CHECK(max_abs_diff(q.grad(), qr.grad()) <= 1e-10);
    CHECK(max_abs_diff(k.grad(), kr.grad()) <= 1e-10);
    CHECK(max_abs_diff(v.grad(), vr.grad()) <= 1e-10);
  }
}

TEST_CASE("linear_attention equals the quadratic form, with M != N") {
  for (size_t t = 0; t < kLengths.size(); ++t) {
    const int64_t B = 2, H = 2, N = kLengths[t], M = kLengths[(t + 2) % kLengths.size()];
    const Widths w = kWidths[t % kWidths.size()];
    CAPTURE(N);
    CAPTURE(M);
    Generator gen(200 + t);
    Tensor q = positive_leaf({B, H, N, w.D}, gen);
    Tensor k = positive_leaf({B, H, M, w.D}, gen);
    Tensor v = normal_leaf({B, H, M, w.Dv}, gen);
    Tensor dy = Tensor::randn({B, H, N, w.Dv}, gen, DType::f64);

    Tensor y = linear_attention(q, k, v);
    y.backward(dy);

    const naive::Dims d{B, H, N, M, w.D, w.Dv};
    const std::vector<double> dyv = dy.to_vector();
    naive::Grads g;
    const std::vector<double> ref = naive::linear_attention(
        d, q.to_vector(), k.to_vector(), v.to_vector(), /*causal=*/false, true, 1e-6, &dyv, &g);
    CHECK(scaled_error(y.to_vector(), ref) <= 1e-10);
    CHECK(scaled_error(q.grad().to_vector(), g.dq) <= 1e-10);
    CHECK(scaled_error(k.grad().to_vector(), g.dk) <= 1e-10);
    CHECK(scaled_error(v.grad().to_vector(), g.dv) <= 1e-10);
  }
}

TEST_CASE("causal linear attention: the last position equals non-causal attention") {
  // y_N of the causal form sees every key, as the non-causal form does at every query.
  Generator gen(7);
  const int64_t N = 37;
  Tensor q = positive_leaf({1, 2, N, 6}, gen);
  Tensor k = positive_leaf({1, 2, N, 6}, gen);
  Tensor v = normal_leaf({1, 2, N, 3}, gen);
  const std::vector<double> causal = causal_linear_attention(q, k, v).to_vector();
  const std::vector<double> full = linear_attention(q, k, v).to_vector();
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t c = 0; c < 3; ++c) {
      const size_t at = static_cast<size_t>((h * N + N - 1) * 3 + c);
      CHECK(std::abs(causal[at] - full[at]) <= 1e-12);
    }
}

TEST_CASE("attention ops agree in f32 and f64") {
  using Op = Tensor (*)(const Tensor&, const Tensor&, const Tensor&);
  struct Case {
    std::string name;
    Op op;
  };
  const std::vector<Case> cases = {
      {"causal_linear_attention", [](const Tensor& q, const Tensor& k,
                                     const Tensor& v) { return causal_linear_attention(q, k, v); }},
      {"causal_dot_product", [](const Tensor& q, const Tensor& k,
                                const Tensor& v) { return causal_dot_product(q, k, v); }},
      {"linear_attention",
       [](const Tensor& q, const Tensor& k, const Tensor& v) { return linear_attention(q, k, v); }},
      {"softmax_attention causal",
       [](const Tensor& q, const Tensor& k, const Tensor& v) {
         return softmax_attention(q, k, v, true);
       }},
      {"softmax_attention", [](const Tensor& q, const Tensor& k,
                               const Tensor& v) { return softmax_attention(q, k, v, false); }},
  };
  for (const Case& c : cases) {
    for (int64_t Dv : {24, 32}) {
      CAPTURE(c.name);
      CAPTURE(Dv);
      const Shape qs{2, 2, 100, 16}, vs{2, 2, 100, Dv};
      Generator gen(300);
      Tensor q64 = positive_leaf(qs, gen), k64 = positive_leaf(qs, gen), v64 = normal_leaf(vs, gen);
      Tensor dy64 = Tensor::randn(vs, gen, DType::f64);
      Tensor q32 = Tensor::from(q64.to_vector(), qs, DType::f32).requires_grad_();
      Tensor k32 = Tensor::from(k64.to_vector(), qs, DType::f32).requires_grad_();
      Tensor v32 = Tensor::from(v64.to_vector(), vs, DType::f32).requires_grad_();
      Tensor dy32 = Tensor::from(dy64.to_vector(), vs, DType::f32);

      Tensor y64 = c.op(q64, k64, v64), y32 = c.op(q32, k32, v32);
      CHECK(y32.dtype() == DType::f32);
      y64.backward(dy64);
      y32.backward(dy32);
      CHECK(relative_error(y32.to_vector(), y64.to_vector()) <= 1e-4);
      CHECK(relative_error(q32.grad().to_vector(), q64.grad().to_vector()) <= 1e-4);
      CHECK(relative_error(k32.grad().to_vector(), k64.grad().to_vector()) <= 1e-4);
      CHECK(relative_error(v32.grad().to_vector(), v64.grad().to_vector()) <= 1e-4);
    }
  }
}

TEST_CASE("elu_feature_map_heads: the map of split_heads in one pass, forward and backward") {
  // Each fixed head width (16, 32, 64) and a run-time one (5); a random cotangent.
  for (DType dtype : {DType::f32, DType::f64})
    for (int64_t D : {16, 32, 64, 5}) {
      INFO("dtype " << dtype << " D " << D);
      Generator gen(41);
      const int64_t B = 2, N = 7, H = 3;
      const Tensor x0 = Tensor::randn({B, N, H * D}, gen, dtype);
      const Tensor cot = Tensor::randn({B, H, N, D}, gen, dtype);
      Tensor xa = x0.clone().requires_grad_(), xb = x0.clone().requires_grad_();
      Tensor fused = elu_feature_map_heads(xa, H);
      Tensor reference = elu_feature_map(split_heads(xb, H));
      CHECK(fused.shape() == Shape{B, H, N, D});
      CHECK(fused.grad_fn()->name() == "EluFeatureMapHeadsBackward");
      const double tol = dtype == DType::f32 ? 1e-6 : 1e-14;
      CHECK(relative_error(fused.to_vector(), reference.to_vector()) < tol);
      fused.backward(cot);
      reference.backward(cot);
      CHECK(relative_error(xa.grad().to_vector(), xb.grad().to_vector()) < tol);
      // Element (b, n, h·D + d) of x lands at (b, h, n, d): x > 0 maps to x + 1.
      const std::vector<double> xv = x0.to_vector(), yv = fused.to_vector();
      const int64_t b = 1, n = 4, h = 2, d = D - 1;
      const double xe = xv[static_cast<size_t>((b * N + n) * H * D + h * D + d)];
      const double ye = yv[static_cast<size_t>(((b * H + h) * N + n) * D + d)];
      CHECK(ye == doctest::Approx(xe > 0 ? xe + 1 : std::exp(xe)).epsilon(tol));
    }
}

TEST_CASE("linear attention records one named node, only when an input requires grad") {
  Generator gen(8);
  Tensor q = positive_leaf({1, 1, 5, 4}, gen), k = positive_leaf({1, 1, 5, 4}, gen);
  Tensor v = normal_leaf({1, 1, 5, 3}, gen);
  CHECK(causal_linear_attention(q, k, v).grad_fn()->name() == "CausalLinearAttentionBackward");
  CHECK(causal_dot_product(q, k, v).grad_fn()->name() == "CausalDotProductBackward");
  CHECK(linear_attention(q, k, v).grad_fn()->name() == "LinearAttentionBackward");
  CHECK(elu_feature_map(q).grad_fn()->name() == "EluFeatureMapBackward");

  Tensor qd = q.detach(), kd = k.detach(), vd = v.detach();
  CHECK(causal_linear_attention(qd, kd, vd).grad_fn() == nullptr);
  {
    NoGradGuard no_grad;
    CHECK(causal_linear_attention(q, k, v).grad_fn() == nullptr);
  }

  // Only v requires grad: q and k receive none, v's gradient is the full one.
  Tensor dy = Tensor::randn({1, 1, 5, 3}, gen, DType::f64);
  causal_linear_attention(qd, kd, v).backward(dy);
  Tensor dv_partial = v.grad().clone();
  v.zero_grad();
  causal_linear_attention(q, k, v).backward(dy);
  CHECK(max_abs_diff(dv_partial, v.grad()) == 0.0);
}

TEST_CASE("causal linear attention backward keeps O(N·D) memory") {
  // The whole forward + backward at D = Dv = 64 must fit in a small multiple of N·D
  // doubles: inputs, output, cotangent, gradients. One stored D×Dv state per position
  // would need N·D·Dv·8 bytes, 4× the bound.
  const int64_t D = 64, Dv = 64;
  auto peak_bytes = [&](int64_t N) {
    Generator gen(9);
    Tensor q = positive_leaf({1, 1, N, D}, gen), k = positive_leaf({1, 1, N, D}, gen);
    Tensor v = normal_leaf({1, 1, N, Dv}, gen);
    Tensor dy = Tensor::randn({1, 1, N, Dv}, gen, DType::f64);
    empty_cache();
    reset_peak_allocated();
    const size_t before = allocator_stats().allocated_bytes;
    causal_linear_attention(q, k, v).backward(dy);
    CHECK(q.grad().defined());
    return static_cast<double>(allocator_stats().peak_allocated_bytes - before);
  };
  for (int64_t N : {4096, 8192}) {
    const double peak = peak_bytes(N);
    const double linear_bound = 16.0 * static_cast<double>(N * D) * 8;
    const double per_position_states = static_cast<double>(N * D * Dv) * 8;
    CAPTURE(N);
    CAPTURE(peak);
    CHECK(peak < linear_bound);
    CHECK(peak < per_position_states / 4);
  }
  // Doubling N at most doubles the peak (plus a little).
  CHECK(peak_bytes(8192) <= 2.1 * peak_bytes(4096));
}
