// Gradient clipping (global and per parameter) and learning-rate schedules.
#include <cmath>
#include <limits>

#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using Vec = std::vector<double>;

namespace {

Tensor param_with_grad(const Vec& grad, DType dtype = DType::f64) {
  Tensor p = Tensor::zeros(Shape{static_cast<int64_t>(grad.size())}, dtype).requires_grad_();
  p.set_grad(Tensor::from(grad, p.shape(), dtype));
  return p;
}

}  // namespace

TEST_CASE("clip_grad_norm: global L2 norm over all parameters") {
  // ‖(3, 4)‖ = 5, ‖(12)‖ = 12, global = sqrt(25 + 144) = 13.
  Tensor a = param_with_grad({3, 4});
  Tensor b = param_with_grad({12}, DType::f32);
  Tensor none = Tensor::zeros(Shape{2}, DType::f64).requires_grad_();  // no gradient: skipped
  SUBCASE("above max_norm: scaled by max_norm / (norm + 1e-6)") {
    Tensor a_grad_before = a.grad();
    const double norm = clip_grad_norm({a, b, none}, 6.5);
    CHECK(norm == doctest::Approx(13).epsilon(1e-12));
    const double s = 6.5 / (13 + 1e-6);
    CHECK(a.grad().to_vector()[0] == doctest::Approx(3 * s).epsilon(1e-12));
    CHECK(a.grad().to_vector()[1] == doctest::Approx(4 * s).epsilon(1e-12));
    CHECK(b.grad().item() == doctest::Approx(12 * s).epsilon(1e-6));
    CHECK(b.grad().dtype() == DType::f32);
    CHECK_FALSE(none.grad().defined());
    // The clipped gradient is a new tensor: an alias of the old one is not scaled.
    CHECK(a_grad_before.to_vector() == Vec{3, 4});
    // The new global norm is max_norm (up to the 1e-6).
    CHECK(clip_grad_norm({a, b}, 100) == doctest::Approx(6.5).epsilon(1e-6));
  }
  SUBCASE("below max_norm: unchanged") {
    CHECK(clip_grad_norm({a, b}, 13.5) == doctest::Approx(13).epsilon(1e-12));
    CHECK(a.grad().to_vector() == Vec{3, 4});
    CHECK(b.grad().item() == 12);
  }
}

TEST_CASE("clip_grad_norm_per_parameter: each gradient clipped by its own norm") {
  Tensor a = param_with_grad({3, 4});       // 5: below 6, unchanged
  Tensor b = param_with_grad({-12, 0, 0});  // 12: scaled to 6
  Tensor none = Tensor::zeros(Shape{1}, DType::f64).requires_grad_();
  std::vector<double> norms = clip_grad_norm_per_parameter({a, b, none}, 6);
  REQUIRE(norms.size() == 3);
  CHECK(norms[0] == doctest::Approx(5).epsilon(1e-12));
  CHECK(norms[1] == doctest::Approx(12).epsilon(1e-12));
  CHECK(norms[2] == 0);
  CHECK(a.grad().to_vector() == Vec{3, 4});
  CHECK(b.grad().to_vector()[0] == doctest::Approx(-12 * 6 / (12 + 1e-6)).epsilon(1e-12));
  CHECK(l2_norm(b.grad()) == doctest::Approx(6).epsilon(1e-6));
  // The global rule would have scaled a as well.
  Tensor c = param_with_grad({3, 4});
  Tensor d = param_with_grad({-12, 0, 0});
  clip_grad_norm({c, d}, 6);
  CHECK(c.grad().to_vector()[0] < 3);
}

TEST_CASE("clipping: a large gradient, non-finite norms, bad max_norm") {
  const int64_t n = 200000;
  Tensor big = Tensor::zeros(Shape{n}, DType::f32).requires_grad_();
  big.set_grad(Tensor::full(Shape{n}, 0.5, DType::f32));
  const double norm = clip_grad_norm({big}, 1.0);
  CHECK(norm == doctest::Approx(0.5 * std::sqrt(static_cast<double>(n))).epsilon(1e-9));
  CHECK(l2_norm(big.grad()) == doctest::Approx(1.0).epsilon(1e-5));

  // A non-finite norm is returned and the gradients are left alone.
  Tensor inf = param_with_grad({std::numeric_limits<double>::infinity(), 1});
  Tensor fine = param_with_grad({30, 40});
  CHECK(std::isinf(clip_grad_norm({inf, fine}, 1.0)));
  CHECK(fine.grad().to_vector() == Vec{30, 40});
  std::vector<double> norms = clip_grad_norm_per_parameter({inf, fine}, 1.0);
  CHECK(std::isinf(norms[0]));
  CHECK(l2_norm(fine.grad()) == doctest::Approx(1.0).epsilon(1e-6));

  check_error([&] { clip_grad_norm({fine}, 0); }, {"clip_grad_norm", "max_norm", "0", "> 0"});
  check_error([&] { clip_grad_norm({fine}, -1); }, {"clip_grad_norm", "max_norm", "-1"});
  check_error([&] { clip_grad_norm_per_parameter({fine}, std::nan("")); },
              {"clip_grad_norm_per_parameter", "max_norm", "nan"});
}

TEST_CASE("StepDecay: 1e-3 then 1e-4 after 3000 steps, and several milestones") {
  StepDecay decay({.lr = 1e-3, .milestones = {3000}, .gamma = 0.1});
  CHECK(decay.lr_at(0) == 1e-3);
  CHECK(decay.lr_at(2999) == 1e-3);
  CHECK(decay.lr_at(3000) == doctest::Approx(1e-4).epsilon(1e-12));
  CHECK(decay.lr_at(100000) == doctest::Approx(1e-4).epsilon(1e-12));

  StepDecay multi({.lr = 1.0, .milestones = {2, 5}, .gamma = 0.5});
  const double expected[] = {1, 1, 0.5, 0.5, 0.5, 0.25, 0.25};
  for (int s = 0; s < 7; ++s) CHECK(multi.lr_at(s) == expected[s]);

  StepDecay constant({.lr = 0.3});
  CHECK(constant.lr_at(123456) == 0.3);
}

TEST_CASE("LinearAnneal: warmup, linear decay, then the final lr") {
  // W = 4, S = 10, lr = 1, final 0.1:
  //   s = 0..3: (s+1)/4                       0.25 0.5 0.75 1
  //   s = 4..9: 1 + (0.1 − 1)·(s − 4)/6        1 0.85 0.7 0.55 0.4 0.25
  //   s ≥ 10:   0.1
  LinearAnneal anneal({.lr = 1.0, .warmup_steps = 4, .total_steps = 10, .final_lr = 0.1});
  const double expected[] = {0.25, 0.5, 0.75, 1, 1, 0.85, 0.7, 0.55, 0.4, 0.25, 0.1, 0.1};
  for (int s = 0; s < 12; ++s) {
    CAPTURE(s);
    CHECK(anneal.lr_at(s) == doctest::Approx(expected[s]).epsilon(1e-12));
  }
  LinearAnneal no_warmup({.lr = 2.0, .total_steps = 4});
  CHECK(no_warmup.lr_at(0) == 2.0);
  CHECK(no_warmup.lr_at(2) == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(no_warmup.lr_at(4) == 0.0);
}

TEST_CASE("LrSchedule::apply drives an optimizer's lr by its step count") {
  Tensor p = Tensor::from({0.0}, DType::f64).requires_grad_();
  SGD opt({p}, {.lr = 123});
  StepDecay decay({.lr = 1.0, .milestones = {2}, .gamma = 0.1});
  // SGD with g = 1: p moves by −lr each step: 1, 1, 0.1, 0.1.
  double expected_p = 0;
  const double lrs[] = {1, 1, 0.1, 0.1};
  for (double lr : lrs) {
    CHECK(decay.apply(opt) == doctest::Approx(lr).epsilon(1e-15));
    CHECK(opt.lr() == doctest::Approx(lr).epsilon(1e-15));
    p.set_grad(Tensor::from({1.0}, DType::f64));
    opt.step();
    expected_p -= lr;
    CHECK(p.item() == doctest::Approx(expected_p).epsilon(1e-14));
  }
}

TEST_CASE("schedules: bad options throw naming the option and the value") {
  check_error([] { StepDecay({.lr = -1}); }, {"StepDecay", "lr", "-1"});
  check_error([] { StepDecay({.gamma = 0}); }, {"StepDecay", "gamma", "0", "> 0"});
  check_error([] { StepDecay({.milestones = {0}}); }, {"StepDecay", "milestones[0]", "0"});
  check_error(
      [] {
        StepDecay({.milestones = {5, 5}});
      },
      {"StepDecay", "milestones[1]", "5", "increasing"});
  check_error([] { LinearAnneal({.lr = -0.5, .total_steps = 3}); }, {"LinearAnneal", "lr", "-0.5"});
  check_error([] { LinearAnneal({.warmup_steps = -1, .total_steps = 3}); },
              {"LinearAnneal", "warmup_steps", "-1"});
  check_error([] { LinearAnneal({.warmup_steps = 5, .total_steps = 5}); },
              {"LinearAnneal", "total_steps", "5", "warmup_steps"});
  check_error([] { LinearAnneal({.total_steps = 5, .final_lr = -1}); },
              {"LinearAnneal", "final_lr", "-1"});
}
