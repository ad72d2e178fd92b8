// Recurrent steps against the parallel forms: step i of each kind equals row i of the
// causal op, in f64 and f32, including the softmax cache's growth; bad states and inputs.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "helpers.h"
#include "polyak/ops/attention/linear_attention.h"
#include "polyak/ops/attention/momentum_attention.h"
#include "polyak/ops/attention/softmax_attention.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

// Tolerance per dtype: f64 ≤ 1e-10 absolute on O(1) values, f32 ≤ 1e-4 relative.
double tolerance(DType dtype) {
  return dtype == DType::f64 ? 1e-10 : 1e-4;
}

// Runs `step(i, q_i, k_i, v_i)` for every position and compares its output with row i of
// `parallel` [B,H,N,Dv] (relative to the largest value of the whole output).
template <class Step>
void check_steps(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& parallel,
                 Step step) {
  const int64_t N = q.size(2);
  const double tol = tolerance(q.dtype());
  double err = 0;
  for (int64_t i = 0; i < N; ++i) {
    Tensor y = step(position(q, i), position(k, i), position(v, i));
    REQUIRE(y.shape() == Shape({q.size(0), q.size(1), v.size(3)}));
    REQUIRE(y.dtype() == q.dtype());
    CHECK(y.grad_fn() == nullptr);
    err = std::max(err, relative_error(y.to_vector(), position(parallel, i).to_vector()));
  }
  CAPTURE(N);
  CHECK(err <= tol);
}

struct Inputs {
  Tensor q, k, v;
};

Inputs make_inputs(int64_t N, int64_t D, int64_t Dv, uint64_t seed, DType dtype) {
  Generator gen(seed);
  Inputs in;
  in.q = positive_leaf({2, 3, N, D}, gen, dtype);
  in.k = positive_leaf({2, 3, N, D}, gen, dtype);
  in.v = normal_leaf({2, 3, N, Dv}, gen, dtype);
  return in;
}

}  // namespace

TEST_CASE("linear_attention_step equals causal_linear_attention at every position") {
  for (DType dtype : {DType::f64, DType::f32}) {
    for (int64_t Dv : {5, 32}) {
      CAPTURE(dtype);
      CAPTURE(Dv);
      Inputs in = make_inputs(70, 8, Dv, 10, dtype);
      const Tensor parallel = causal_linear_attention(in.q, in.k, in.v);
      Tensor s, z;  // undefined: start at zero
      check_steps(in.q, in.k, in.v, parallel,
                  [&](const Tensor& q, const Tensor& k, const Tensor& v) {
                    return linear_attention_step(q, k, v, s, z);
                  });
      CHECK(s.shape() == Shape({2, 3, 8, Dv}));
      CHECK(z.shape() == Shape({2, 3, 8}));
    }
  }
}

TEST_CASE("momentum_attention_step equals causal_momentum_attention at every position") {
  for (DType dtype : {DType::f64, DType::f32}) {
    for (double beta : {0.0, 0.1, 0.5, 0.9, 0.99}) {
      for (double gamma : {0.6, 1.0, 2.5}) {
        CAPTURE(dtype);
        CAPTURE(beta);
        CAPTURE(gamma);
        const int64_t D = 6, Dv = 16;
        Inputs in = make_inputs(90, D, Dv, 20, dtype);
        const Tensor parallel = causal_momentum_attention(in.q, in.k, in.v, beta, gamma);
        // Explicit zero states, as a model's initial_state makes them.
        Tensor m = Tensor::zeros({2, 3, D, Dv}, dtype), s = Tensor::zeros({2, 3, D, Dv}, dtype);
        Tensor z = Tensor::zeros({2, 3, D}, dtype);
        check_steps(in.q, in.k, in.v, parallel,
                    [&](const Tensor& q, const Tensor& k, const Tensor& v) {
                      return momentum_attention_step(q, k, v, m, s, z, beta, gamma);
                    });
      }
    }
  }
}

TEST_CASE("momentum_attention_step with beta = 0 is gamma times the linear step") {
  Inputs in = make_inputs(20, 4, 3, 25, DType::f64);
  Tensor m, s, z, s_lin, z_lin;
  for (int64_t i = 0; i < 20; ++i) {
    Tensor q = position(in.q, i), k = position(in.k, i), v = position(in.v, i);
    Tensor y = momentum_attention_step(q, k, v, m, s, z, 0.0, 2.5);
    Tensor y_lin = linear_attention_step(q, k, v, s_lin, z_lin);
    CHECK(max_abs_diff(y, y_lin * 2.5) <= 1e-12);
  }
}

TEST_CASE("softmax_attention_step equals causal softmax attention, past the cache's growth") {
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype);
    const int64_t N = 150;  // capacity 64 → 128 → 256
    Generator gen(30);
    Tensor q = normal_leaf({2, 3, N, 8}, gen, dtype), k = normal_leaf({2, 3, N, 8}, gen, dtype);
    Tensor v = normal_leaf({2, 3, N, 5}, gen, dtype);
    const Tensor parallel = softmax_attention(q, k, v, /*causal=*/true);
    Tensor k_cache, v_cache;
    int64_t length = 0;
    std::vector<int64_t> capacities;
    check_steps(q, k, v, parallel, [&](const Tensor& qi, const Tensor& ki, const Tensor& vi) {
      Tensor y = softmax_attention_step(qi, ki, vi, k_cache, v_cache, length);
      if (capacities.empty() || capacities.back() != k_cache.size(2))
        capacities.push_back(k_cache.size(2));
      return y;
    });
    CHECK(length == N);
    CHECK(capacities == std::vector<int64_t>{64, 128, 256});
    CHECK(v_cache.shape() == Shape({2, 3, 256, 5}));
    // The cache holds the keys and values in order.
    CHECK(max_abs_diff(position(k_cache, 149), position(k, 149)) == 0.0);
    CHECK(max_abs_diff(position(v_cache, 0), position(v, 0)) == 0.0);
  }
}

TEST_CASE("softmax_attention_step continues from a caller's cache") {
  // A cache with capacity 3 holding 2 rows: the third step fills it, the fourth grows it.
  Generator gen(31);
  Tensor q = normal_leaf({1, 2, 4, 4}, gen), k = normal_leaf({1, 2, 4, 4}, gen);
  Tensor v = normal_leaf({1, 2, 4, 3}, gen);
  const Tensor parallel = softmax_attention(q, k, v, true);
  Tensor k_cache, v_cache;
  int64_t length = 0;
  softmax_attention_step(position(q, 0), position(k, 0), position(v, 0), k_cache, v_cache, length);
  softmax_attention_step(position(q, 1), position(k, 1), position(v, 1), k_cache, v_cache, length);
  // Copy the two filled rows into a capacity-3 cache.
  std::vector<double> kc = k_cache.to_vector(), vc = v_cache.to_vector(), k3, v3;
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t j = 0; j < 3; ++j) {
      for (int64_t a = 0; a < 4; ++a)
        k3.push_back(j < 2 ? kc[static_cast<size_t>((h * 64 + j) * 4 + a)] : 0.0);
      for (int64_t c = 0; c < 3; ++c)
        v3.push_back(j < 2 ? vc[static_cast<size_t>((h * 64 + j) * 3 + c)] : 0.0);
    }
  }
  Tensor k_small = Tensor::from(k3, {1, 2, 3, 4}, DType::f64);
  Tensor v_small = Tensor::from(v3, {1, 2, 3, 3}, DType::f64);
  for (int64_t i = 2; i < 4; ++i) {
    Tensor y = softmax_attention_step(position(q, i), position(k, i), position(v, i), k_small,
                                      v_small, length);
    CHECK(max_abs_diff(y, position(parallel, i)) <= 1e-12);
  }
  CHECK(k_small.size(2) == 64);  // max(2·3, 64)
  CHECK(length == 4);
}

TEST_CASE("recurrent steps record nothing even for inputs that require grad") {
  Inputs in = make_inputs(3, 4, 3, 40, DType::f64);
  Tensor q = position(in.q, 0).requires_grad_(), k = position(in.k, 0).requires_grad_();
  Tensor v = position(in.v, 0).requires_grad_();
  Tensor s, z, m, s2, z2, kc, vc;
  int64_t length = 0;
  CHECK(linear_attention_step(q, k, v, s, z).grad_fn() == nullptr);
  CHECK(momentum_attention_step(q, k, v, m, s2, z2, 0.5, 1.0).grad_fn() == nullptr);
  CHECK(softmax_attention_step(q, k, v, kc, vc, length).grad_fn() == nullptr);
  CHECK(!s.requires_grad());
}

TEST_CASE("recurrent steps reject bad input and bad states") {
  Generator gen(50);
  const int64_t B = 2, H = 3, D = 4, Dv = 5;
  Tensor q = positive_leaf({B, H, D}, gen), k = positive_leaf({B, H, D}, gen);
  Tensor v = normal_leaf({B, H, Dv}, gen);
  Tensor s = Tensor::zeros({B, H, D, Dv}, DType::f64), z = Tensor::zeros({B, H, D}, DType::f64);
  Tensor m = Tensor::zeros({B, H, D, Dv}, DType::f64);

  SUBCASE("inputs") {
    Tensor k_bad = positive_leaf({B, H, D + 1}, gen);
    Tensor v_bad = normal_leaf({B, H + 1, Dv}, gen);
    Tensor q32 = positive_leaf({B, H, D}, gen, DType::f32);
    Tensor q4 = positive_leaf({B, H, 1, D}, gen);
    check_error([&] { linear_attention_step(q, k_bad, v, s, z); },
                {"linear_attention_step", "k has shape [2,3,5]", "expected [B,H,D] = [2,3,4]"});
    check_error([&] { linear_attention_step(q, k, v_bad, s, z); },
                {"linear_attention_step", "v has shape [2,4,5]", "[B,H,Dv]"});
    check_error([&] { linear_attention_step(q32, k, v, s, z); },
                {"linear_attention_step", "f64", "f32"});
    check_error([&] { linear_attention_step(q4, k, v, s, z); },
                {"linear_attention_step", "q has shape [2,3,1,4]", "[B,H,D]"});
    check_error([&] { momentum_attention_step(q, k_bad, v, m, s, z, 0.5, 1.0); },
                {"momentum_attention_step", "k has shape [2,3,5]"});
    check_error([&] { linear_attention_step(q, k, v, s, z, -1.0); },
                {"linear_attention_step", "eps is -1", "expected a finite value >= 0"});
  }

  SUBCASE("linear and momentum states") {
    Tensor s_bad = Tensor::zeros({B, H, Dv, D}, DType::f64);
    Tensor z_bad = Tensor::zeros({B, H, D + 1}, DType::f64);
    Tensor s32 = Tensor::zeros({B, H, D, Dv}, DType::f32);
    check_error(
        [&] { linear_attention_step(q, k, v, s_bad, z); },
        {"linear_attention_step", "s has shape [2,3,5,4]", "expected [B,H,D,Dv] = [2,3,4,5]"});
    check_error([&] { linear_attention_step(q, k, v, s, z_bad); },
                {"linear_attention_step", "z has shape [2,3,5]", "expected [B,H,D] = [2,3,4]"});
    check_error([&] { linear_attention_step(q, k, v, s32, z); },
                {"linear_attention_step", "s has dtype f32", "expected f64"});
    check_error([&] { momentum_attention_step(q, k, v, s_bad, s, z, 0.5, 1.0); },
                {"momentum_attention_step", "m has shape [2,3,5,4]"});
    check_error([&] { momentum_attention_step(q, k, v, m, s32, z, 0.5, 1.0); },
                {"momentum_attention_step", "s has dtype f32"});
    check_error([&] { momentum_attention_step(q, k, v, m, m, z, 0.5, 1.0); },
                {"momentum_attention_step", "m and s share storage"});
  }

  SUBCASE("momentum parameters") {
    const double nan = std::nan("");
    for (double beta : {-0.5, 1.0, nan}) {
      CAPTURE(beta);
      check_error([&] { momentum_attention_step(q, k, v, m, s, z, beta, 1.0); },
                  {"momentum_attention_step", "beta = ", "expected in [0, 1)"});
    }
    for (double gamma : {0.0, -2.0, nan}) {
      CAPTURE(gamma);
      check_error([&] { momentum_attention_step(q, k, v, m, s, z, 0.5, gamma); },
                  {"momentum_attention_step", "gamma = ", "expected > 0"});
    }
    // A rejected call leaves the states untouched.
    CHECK(max_abs_diff(m, Tensor::zeros({B, H, D, Dv}, DType::f64)) == 0.0);
  }

  SUBCASE("softmax caches") {
    Tensor kc = Tensor::zeros({B, H, 8, D}, DType::f64),
           vc = Tensor::zeros({B, H, 8, Dv}, DType::f64);
    Tensor undefined;
    int64_t length = 0;
    check_error([&] { softmax_attention_step(q, k, v, kc, undefined, length); },
                {"softmax_attention_step", "k_cache is defined but v_cache is undefined"});
    Tensor u1, u2;
    length = 3;
    check_error([&] { softmax_attention_step(q, k, v, u1, u2, length); },
                {"softmax_attention_step", "length is 3 with undefined caches", "expected 0"});
    length = 9;
    check_error([&] { softmax_attention_step(q, k, v, kc, vc, length); },
                {"softmax_attention_step", "length is 9", "expected in [0, 8]"});
    length = -1;
    check_error([&] { softmax_attention_step(q, k, v, kc, vc, length); },
                {"softmax_attention_step", "length is -1"});
    length = 0;
    Tensor vc_short = Tensor::zeros({B, H, 7, Dv}, DType::f64);
    check_error([&] { softmax_attention_step(q, k, v, kc, vc_short, length); },
                {"softmax_attention_step", "v_cache has shape [2,3,7,5]",
                 "expected [B,H,C,Dv] = [2,3,8,5]"});
    Tensor kc_wide = Tensor::zeros({B, H, 8, D + 2}, DType::f64);
    check_error([&] { softmax_attention_step(q, k, v, kc_wide, vc, length); },
                {"softmax_attention_step", "k_cache has shape [2,3,8,6]",
                 "expected [B,H,C,D] = [2,3,8,4]"});
    Tensor kc32 = Tensor::zeros({B, H, 8, D}, DType::f32);
    check_error([&] { softmax_attention_step(q, k, v, kc32, vc, length); },
                {"softmax_attention_step", "k_cache has dtype f32", "expected f64"});
    Tensor kc3 = Tensor::zeros({B, H, D}, DType::f64);
    check_error([&] { softmax_attention_step(q, k, v, kc3, vc, length); },
                {"softmax_attention_step", "k_cache", "[B,H,C,D]"});
    CHECK(length == 0);
  }
}
