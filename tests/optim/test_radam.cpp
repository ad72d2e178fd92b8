// RAdam (docs/math.md §9): both branches of the rectification, decoupled and L2 weight decay.
#include <cmath>

#include "optim/reference.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::RefRAdam;
using polyak::testing::test_gradient;
using polyak::testing::Vec;

namespace {

Tensor make_param(const Vec& values, DType dtype) {
  return Tensor::from(values, Shape{static_cast<int64_t>(values.size())}, dtype).requires_grad_();
}

const Vec kStart = {0.8, -1.2, 0.05, 2.5, -0.3};

}  // namespace

TEST_CASE("RAdam: ρ_t crosses 5 between t = 5 and t = 6 with β2 = 0.999") {
  Tensor p = make_param({1.0}, DType::f64);
  RAdam opt({p});
  // ρ∞ = 1999; ρ_t = 1999 − 2t·0.999^t / (1 − 0.999^t): 1, 1.9995, 2.9987, 3.9975, 4.9960,
  // 5.9942, 6.9920
  const double expected[] = {1.0,          1.9994997498, 2.9986659998, 3.9974987499,
                             4.9959980004, 5.9941637517, 6.9919960040};
  for (int t = 1; t <= 7; ++t) {
    CHECK(opt.rho(t) == doctest::Approx(expected[t - 1]).epsilon(1e-9));
  }
}

TEST_CASE("RAdam: seven steps with a constant gradient, worked by hand") {
  // lr = 0.01, g = 0.5, β = (0.9, 0.999). A constant gradient gives m̂ = g, so the first
  // five steps (ρ_t ≤ 5) are plain momentum steps of lr·g = 0.005: 1 → 0.975. From t = 6 on
  // the step is lr·r_t·m̂·sqrt(1 − β2^t)/(sqrt(v) + ε) with sqrt(v) = sqrt(1 − β2^t)·|g|,
  // i.e. lr·r_t (up to ε): r_6 = 0.0258211128, r_7 = 0.0327388144.
  const double expected[] = {
      0.995, 0.99, 0.985, 0.98, 0.975, 0.9747417889387345, 0.9744144008730131};
  for (DType dt : {DType::f64, DType::f32}) {
    CAPTURE(dt);
    Tensor p = make_param({1.0}, dt);
    RAdam opt({p}, {.lr = 0.01});
    for (int t = 1; t <= 7; ++t) {
      CAPTURE(t);
      p.set_grad(Tensor::from({0.5}, dt));
      opt.step();
      CHECK(p.item() == doctest::Approx(expected[t - 1]).epsilon(dt == DType::f64 ? 1e-13 : 1e-6));
    }
  }
}

TEST_CASE("RAdam with decoupled weight decay: the first step by hand") {
  // ρ_1 = 1 ≤ 5, m̂ = g: p = p0·(1 − lr·λ) − lr·g = 2·(1 − 0.1·0.5) − 0.1·0.25 = 1.875.
  Tensor p = make_param({2.0}, DType::f64);
  RAdam opt({p}, {.lr = 0.1, .weight_decay = 0.5});
  p.set_grad(Tensor::from({0.25}, DType::f64));
  opt.step();
  CHECK(p.item() == doctest::Approx(1.875).epsilon(1e-15));

  // L2 instead: g' = 0.25 + 0.5·2 = 1.25, p = 2 − 0.1·1.25 = 1.875 as well on step 1 — but
  // the moments differ: m = 0.1·1.25 against 0.1·0.25.
  Tensor q = make_param({2.0}, DType::f64);
  RAdam l2({q}, {.lr = 0.1, .weight_decay = 0.5, .decoupled_weight_decay = false});
  q.set_grad(Tensor::from({0.25}, DType::f64));
  l2.step();
  CHECK(q.item() == doctest::Approx(1.875).epsilon(1e-15));
  CHECK(l2.state(0, "exp_avg").item() == doctest::Approx(0.125).epsilon(1e-15));
  CHECK(opt.state(0, "exp_avg").item() == doctest::Approx(0.025).epsilon(1e-15));
}

TEST_CASE("RAdam matches docs/math.md §9 through both branches") {
  struct Case {
    const char* name;
    RAdam::Options o;
    int steps;
  };
  std::vector<Case> cases = {
      {"default betas", {.lr = 1e-2}, 9},
      {"beta2 0.9", {.lr = 1e-2, .beta1 = 0.8, .beta2 = 0.9}, 9},
      {"beta2 0.99 eps", {.lr = 5e-2, .beta2 = 0.99, .eps = 1e-3}, 8},
      {"decoupled wd", {.lr = 1e-2, .weight_decay = 0.01}, 9},
      {"decoupled wd large", {.lr = 3e-2, .beta2 = 0.9, .weight_decay = 0.3}, 9},
      {"L2 wd",
       {.lr = 1e-2, .beta2 = 0.9, .weight_decay = 0.3, .decoupled_weight_decay = false},
       9},
  };
  for (const Case& c : cases) {
    for (DType dt : {DType::f64, DType::f32}) {
      SUBCASE((std::string(c.name) + " " + name(dt)).c_str()) {
        Tensor p = make_param(kStart, dt);
        RAdam opt({p}, c.o);
        RefRAdam ref{
            c.o.lr, c.o.beta1, c.o.beta2, c.o.eps, c.o.weight_decay, c.o.decoupled_weight_decay,
            {},     {}};
        Vec expected = kStart;
        bool saw_plain = false, saw_rectified = false;
        for (int s = 0; s < c.steps; ++s) {
          Vec g = test_gradient(expected, s);
          p.set_grad(Tensor::from(g, p.shape(), dt));
          opt.step();
          ref.step(expected, g);
          (ref.last_rectified ? saw_rectified : saw_plain) = true;
          Vec got = p.to_vector();
          for (size_t i = 0; i < got.size(); ++i) {
            INFO("step " << s + 1 << ", element " << i);
            CHECK(got[i] ==
                  doctest::Approx(expected[i]).epsilon(dt == DType::f64 ? 1e-12 : 2e-6).scale(1.0));
          }
        }
        CHECK(saw_plain);
        CHECK(saw_rectified);
        Vec m = opt.state(0, "exp_avg").to_vector(), v = opt.state(0, "exp_avg_sq").to_vector();
        for (size_t i = 0; i < m.size(); ++i) {
          CHECK(m[i] == doctest::Approx(ref.m[i]).epsilon(dt == DType::f64 ? 1e-12 : 1e-5));
          CHECK(v[i] == doctest::Approx(ref.v[i]).epsilon(dt == DType::f64 ? 1e-12 : 1e-5));
        }
      }
    }
  }
}

TEST_CASE("RAdam: a large parameter is updated like a small one (parallel loop)") {
  const int64_t n = 300000;
  Generator gen(7);
  Tensor init = Tensor::randn(Shape{n}, gen, DType::f64);
  Tensor grad = Tensor::randn(Shape{n}, gen, DType::f64);
  Tensor big = init.clone().detach().requires_grad_();
  RAdam opt({big}, {.lr = 1e-2, .beta2 = 0.9, .weight_decay = 0.01});
  RefRAdam ref{1e-2, 0.9, 0.9, 1e-8, 0.01, true, {}, {}};
  Vec expected = init.to_vector();
  const Vec g = grad.to_vector();
  for (int s = 0; s < 7; ++s) {
    big.set_grad(grad);
    opt.step();
    ref.step(expected, g);
  }
  Vec got = big.to_vector();
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    worst =
        std::max(worst, std::abs(got[static_cast<size_t>(i)] - expected[static_cast<size_t>(i)]));
  }
  CHECK(worst < 1e-12);
}
