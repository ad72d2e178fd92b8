// Decayed attention with one decay per head (docs/math.md §3.1): the sweep against the
// quadratic reference (values and gradients, f64 and f32), gradcheck, identities with the
// undecayed and the scalar-decay ops, the recurrent step against the parallel form, and bad
// input.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "helpers.h"
#include "naive.h"
#include "polyak/ops/attention/decayed_attention.h"
#include "polyak/ops/attention/linear_attention.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

struct Inputs {
  Tensor q, k, v, dy;
};

Inputs make_inputs(int64_t B, int64_t H, int64_t N, int64_t D, int64_t Dv, uint64_t seed,
                   DType dtype = DType::f64) {
  Generator gen(seed);
  Inputs in;
  in.q = positive_leaf({B, H, N, D}, gen, dtype);
  in.k = positive_leaf({B, H, N, D}, gen, dtype);
  in.v = normal_leaf({B, H, N, Dv}, gen, dtype);
  in.dy =
      Tensor::from(Tensor::randn({B, H, N, Dv}, gen, DType::f64).to_vector(), {B, H, N, Dv}, dtype);
  return in;
}

// λ_h = 1 − 2^(−5−h): each head its own decay, all close to 1 (long memories).
std::vector<double> retention_decays(int64_t H) {
  std::vector<double> decays;
  for (int64_t h = 0; h < H; ++h)
    decays.push_back(1.0 - std::pow(2.0, -5.0 - static_cast<double>(h)));
  return decays;
}

// The quadratic reference head by head: naive::decayed_attention on each (b, h) with its
// head's decay. Returns y; fills the gradients for the cotangent dy.
std::vector<double> per_head_reference(const Inputs& in, const std::vector<double>& decays,
                                       naive::Grads& grads) {
  const Shape& qs = in.q.shape();
  const int64_t B = qs[0], H = qs[1], N = qs[2], D = qs[3], Dv = in.v.size(3);
  const std::vector<double> q = in.q.to_vector(), k = in.k.to_vector(), v = in.v.to_vector();
  const std::vector<double> dy = in.dy.to_vector();
  std::vector<double> y(v.size());
  grads.dq.assign(q.size(), 0.0);
  grads.dk.assign(k.size(), 0.0);
  grads.dv.assign(v.size(), 0.0);
  auto slice = [](const std::vector<double>& x, int64_t bh, int64_t width) {
    return std::vector<double>(x.begin() + bh * width, x.begin() + (bh + 1) * width);
  };
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const std::vector<double> dyh = slice(dy, bh, N * Dv);
    naive::Grads g;
    const std::vector<double> yh = naive::decayed_attention(
        {1, 1, N, N, D, Dv}, slice(q, bh, N * D), slice(k, bh, N * D), slice(v, bh, N * Dv),
        decays[static_cast<size_t>(bh % H)], /*normalize=*/false, 0.0, &dyh, &g);
    std::copy(yh.begin(), yh.end(), y.begin() + bh * N * Dv);
    std::copy(g.dq.begin(), g.dq.end(), grads.dq.begin() + bh * N * D);
    std::copy(g.dk.begin(), g.dk.end(), grads.dk.begin() + bh * N * D);
    std::copy(g.dv.begin(), g.dv.end(), grads.dv.begin() + bh * N * Dv);
  }
  return y;
}

// Values and the three gradients of the per-head op against the reference, computed in
// `dtype` from the f64 inputs `in`.
void check_against_reference(const Inputs& in, const std::vector<double>& decays, DType dtype,
                             double tol) {
  Tensor q = as_leaf(in.q, dtype), k = as_leaf(in.k, dtype), v = as_leaf(in.v, dtype);
  Tensor y = decayed_causal_dot_product(q, k, v, decays);
  REQUIRE(y.shape() == Shape({in.q.size(0), in.q.size(1), in.q.size(2), in.v.size(3)}));
  CHECK(y.dtype() == dtype);
  y.backward(in.dy.to(dtype));
  naive::Grads g;
  const std::vector<double> ref = per_head_reference(in, decays, g);
  CHECK(scaled_error(y.to_vector(), ref) <= tol);
  CHECK(scaled_error(q.grad().to_vector(), g.dq) <= tol);
  CHECK(scaled_error(k.grad().to_vector(), g.dk) <= tol);
  CHECK(scaled_error(v.grad().to_vector(), g.dv) <= tol);
}

}  // namespace

TEST_CASE("per-head decayed causal dot product equals the quadratic form") {
  struct Case {
    int64_t N, D, Dv;
    std::vector<double> decays;  // H of them
  };
  // Lengths that end blocks mid-way (up to 64 positions each) and N = 1; Dv = 16, 32, 64 take
  // the kernels' fixed-width paths, the others the general one. The decays give blocks of
  // 64 (near 1, and 1 itself), 21 (0.5) and 3 (1e−3) positions.
  const std::vector<Case> cases = {
      {1, 4, 3, retention_decays(3)},    {7, 5, 16, {0.5, 1.0, 1e-3}},
      {100, 8, 32, retention_decays(4)}, {257, 6, 12, {0.9, 0.5, 1.0, 0.999}},
      {130, 32, 64, {1e-3, 0.97}},       {64, 3, 5, retention_decays(2)},
  };
  for (const Case& c : cases) {
    for (DType dtype : {DType::f64, DType::f32}) {
      const int64_t H = static_cast<int64_t>(c.decays.size());
      CAPTURE(c.N);
      CAPTURE(c.D);
      CAPTURE(c.Dv);
      CAPTURE(H);
      CAPTURE(dtype);
      const Inputs in = make_inputs(2, H, c.N, c.D, c.Dv, 1000 + static_cast<uint64_t>(c.N));
      check_against_reference(in, c.decays, dtype, dtype == DType::f64 ? 1e-10 : 1e-4);
    }
  }
}

TEST_CASE("per-head decayed causal dot product keeps f32 accuracy over long sequences") {
  // f32 against f64 at N = 2000: the block rescaling of the decaying state must not cost
  // precision (values and gradients within 1e-4 relative).
  const std::vector<double> decays = {1.0 - std::pow(2.0, -5.0), 1.0 - std::pow(2.0, -10.0), 0.5,
                                      1e-3};
  const Inputs a = make_inputs(1, 4, 2000, 8, 32, 1010);
  check_f32_against_f64(
      a.q, a.k, a.v, a.dy,
      [&decays](const Tensor& q, const Tensor& k, const Tensor& v) {
        return decayed_causal_dot_product(q, k, v, decays);
      },
      1e-4);
}

TEST_CASE("per-head decayed causal dot product gradcheck (f64, random cotangent)") {
  auto inputs = [](int64_t H, int64_t Dv) {
    return [H, Dv](Generator& gen) -> std::vector<Tensor> {
      return {positive_leaf({2, H, 9, 4}, gen), positive_leaf({2, H, 9, 4}, gen),
              normal_leaf({2, H, 9, Dv}, gen)};
    };
  };
  std::vector<GradcheckCase> cases;
  for (int64_t Dv : {3, 16}) {
    const std::vector<double> retention = retention_decays(3), mixed = {0.3, 1.0, 0.8};
    for (const std::vector<double>& decays : {retention, mixed}) {
      // Built piecewise: GCC 12 warns falsely (-Wrestrict) on " " + std::string.
      std::string name = "decayed_causal_dot_product Dv ";
      name.append(std::to_string(Dv)).append(" decays");
      for (double lambda : decays) name.append(" ").append(std::to_string(lambda));
      cases.push_back({name,
                       {},
                       [decays](const std::vector<Tensor>& x) {
                         return decayed_causal_dot_product(x[0], x[1], x[2], decays);
                       },
                       inputs(3, Dv)});
    }
  }
  run_gradcheck_table(cases);
}

TEST_CASE("per-head decays: identities with the undecayed and the scalar-decay ops") {
  const int64_t B = 2, H = 3, N = 75, D = 6, Dv = 16;

  SUBCASE("decays all 1 are causal_dot_product, values and gradients") {
    for (int64_t dv : {Dv, int64_t{5}}) {
      CAPTURE(dv);
      const Inputs in = make_inputs(B, H, N, D, dv, 1100);
      check_same_function(
          in.q, in.k, in.v, in.dy,
          [](const Tensor& q, const Tensor& k, const Tensor& v) {
            return decayed_causal_dot_product(q, k, v, std::vector<double>(H, 1.0));
          },
          [](const Tensor& q, const Tensor& k, const Tensor& v) {
            return causal_dot_product(q, k, v);
          },
          1e-12);
    }
  }

  SUBCASE("one decay for every head is the scalar-decay op") {
    Inputs in = make_inputs(B, H, N, D, Dv, 1101);
    CHECK(max_abs_diff(decayed_causal_dot_product(in.q, in.k, in.v, {0.7, 0.7, 0.7}),
                       decayed_causal_dot_product(in.q, in.k, in.v, 0.7)) == 0.0);
  }

  SUBCASE("each head is the scalar-decay op with its own decay") {
    const std::vector<double> decays = retention_decays(H);
    Inputs in = make_inputs(1, H, N, D, Dv, 1102);
    const std::vector<double> y = decayed_causal_dot_product(in.q, in.k, in.v, decays).to_vector();
    for (int64_t h = 0; h < H; ++h) {
      CAPTURE(h);
      const std::vector<double> yh =
          decayed_causal_dot_product(in.q, in.k, in.v, decays[static_cast<size_t>(h)]).to_vector();
      double err = 0;
      for (int64_t at = h * N * Dv; at < (h + 1) * N * Dv; ++at)
        err = std::max(err, std::abs(y[static_cast<size_t>(at)] - yh[static_cast<size_t>(at)]));
      CHECK(err == 0.0);
    }
  }

  SUBCASE("records DecayedCausalDotProductBackward") {
    Inputs in = make_inputs(1, 2, 5, 4, 3, 1103);
    CHECK(decayed_causal_dot_product(in.q, in.k, in.v, {0.5, 0.9}).grad_fn()->name() ==
          "DecayedCausalDotProductBackward");
    NoGradGuard no_grad;
    CHECK(decayed_causal_dot_product(in.q, in.k, in.v, {0.5, 0.9}).grad_fn() == nullptr);
  }
}

TEST_CASE("decayed_attention_step equals decayed_causal_dot_product at every position") {
  for (DType dtype : {DType::f64, DType::f32}) {
    for (int64_t Dv : {5, 32}) {
      CAPTURE(dtype);
      CAPTURE(Dv);
      const int64_t B = 2, H = 4, N = 150, D = 8;
      const std::vector<double> decays = {1.0 - std::pow(2.0, -5.0), 0.5, 1.0, 1e-3};
      Inputs in = make_inputs(B, H, N, D, Dv, 1200, dtype);
      const Tensor parallel = decayed_causal_dot_product(in.q, in.k, in.v, decays);
      const std::vector<double> all = parallel.to_vector();
      double mag = 0;
      for (double x : all) mag = std::max(mag, std::abs(x));
      Tensor s;  // undefined: starts at zero
      double err = 0;
      for (int64_t i = 0; i < N; ++i) {
        Tensor y = decayed_attention_step(position(in.q, i), position(in.k, i), position(in.v, i),
                                          s, decays);
        REQUIRE(y.shape() == Shape({B, H, Dv}));
        CHECK(y.dtype() == dtype);
        CHECK(y.grad_fn() == nullptr);
        const std::vector<double> yv = y.to_vector(), row = position(parallel, i).to_vector();
        for (size_t c = 0; c < yv.size(); ++c) err = std::max(err, std::abs(yv[c] - row[c]));
      }
      CHECK(err / mag <= (dtype == DType::f64 ? 1e-10 : 1e-4));
      CHECK(s.shape() == Shape({B, H, D, Dv}));
      CHECK(!s.requires_grad());
    }
  }
  // Inputs that require grad record nothing either.
  Generator gen(1201);
  Tensor q = positive_leaf({1, 2, 4}, gen), k = positive_leaf({1, 2, 4}, gen);
  Tensor v = normal_leaf({1, 2, 3}, gen), s;
  CHECK(decayed_attention_step(q, k, v, s, {0.5, 0.9}).grad_fn() == nullptr);
  CHECK(!s.requires_grad());
}

TEST_CASE("per-head decayed attention rejects bad input") {
  Generator gen(1300);
  const int64_t B = 2, H = 3, N = 6, D = 4, Dv = 5;
  Tensor q = positive_leaf({B, H, N, D}, gen), k = positive_leaf({B, H, N, D}, gen);
  Tensor v = normal_leaf({B, H, N, Dv}, gen);
  Tensor qs = position(q, 0), ks = position(k, 0), vs = position(v, 0);
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();

  SUBCASE("the number of decays") {
    for (const std::vector<double>& decays :
         {std::vector<double>{}, std::vector<double>{0.5, 0.5}, std::vector<double>(4, 0.5)}) {
      const std::string seen = "decays has " + std::to_string(decays.size()) + " entries";
      check_error([&] { decayed_causal_dot_product(q, k, v, decays); },
                  {"decayed_causal_dot_product", seen, "expected H = 3"});
      Tensor s;
      check_error([&] { decayed_attention_step(qs, ks, vs, s, decays); },
                  {"decayed_attention_step", seen, "expected H = 3"});
      CHECK(!s.defined());
    }
  }

  SUBCASE("decays outside (0, 1]") {
    for (double bad : {0.0, -0.5, 1.5, nan, inf}) {
      CAPTURE(bad);
      const std::vector<double> decays = {0.5, bad, 0.9};
      check_error([&] { decayed_causal_dot_product(q, k, v, decays); },
                  {"decayed_causal_dot_product", "decays[1] = ", "expected in (0, 1]"});
      Tensor s = Tensor::zeros({B, H, D, Dv}, DType::f64);
      check_error([&] { decayed_attention_step(qs, ks, vs, s, decays); },
                  {"decayed_attention_step", "decays[1] = ", "expected in (0, 1]"});
      CHECK(max_abs_diff(s, Tensor::zeros({B, H, D, Dv}, DType::f64)) == 0.0);
    }
  }

  SUBCASE("shapes and dtypes of the op") {
    const std::vector<double> decays = {0.5, 0.6, 0.7};
    Tensor v_short = normal_leaf({B, H, N - 1, Dv}, gen);
    Tensor k32 = positive_leaf({B, H, N, D}, gen, DType::f32);
    check_error([&] { decayed_causal_dot_product(q, k, v_short, decays); },
                {"decayed_causal_dot_product", "v has shape [2,3,5,5]", "[B,H,N,Dv]"});
    check_error([&] { decayed_causal_dot_product(q, k32, v, decays); },
                {"decayed_causal_dot_product", "f32", "f64"});
  }

  SUBCASE("the step's inputs and state") {
    const std::vector<double> decays = {0.5, 0.6, 0.7};
    Tensor s_bad = Tensor::zeros({B, H, Dv, D}, DType::f64);
    Tensor s32 = Tensor::zeros({B, H, D, Dv}, DType::f32);
    Tensor k_bad = positive_leaf({B, H, D + 1}, gen);
    Tensor s;
    check_error(
        [&] { decayed_attention_step(qs, ks, vs, s_bad, decays); },
        {"decayed_attention_step", "s has shape [2,3,5,4]", "expected [B,H,D,Dv] = [2,3,4,5]"});
    check_error([&] { decayed_attention_step(qs, ks, vs, s32, decays); },
                {"decayed_attention_step", "s has dtype f32", "expected f64"});
    check_error([&] { decayed_attention_step(qs, k_bad, vs, s, decays); },
                {"decayed_attention_step", "k has shape [2,3,5]", "[B,H,D]"});
  }
}
