// gradcheck itself: it passes on correct gradients and, above all, fails on wrong ones.
#include <cmath>

#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;

namespace {

// y = x² computed by hand, with a backward that is right (2x·g) or deliberately wrong (x·g).
Tensor custom_square(const Tensor& x, bool correct) {
  Tensor out = Tensor::empty(x.shape(), DType::f64);
  const double* px = x.data<double>();
  double* po = out.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i) po[i] = px[i] * px[i];
  Tensor saved = x.detach();
  record(out, correct ? "SquareBackward" : "WrongSquareBackward", {x},
         [saved, correct](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = Tensor::empty(saved.shape(), DType::f64);
           const double* pg = g.data<double>();
           const double* ps = saved.data<double>();
           double* pd = dx.data<double>();
           for (int64_t i = 0; i < dx.numel(); ++i) pd[i] = (correct ? 2.0 : 1.0) * ps[i] * pg[i];
           return {dx};
         });
  return out;
}

// A backward that ignores its incoming gradient (returns 2x): right only for an all-ones
// cotangent, which is why gradcheck uses a random one.
Tensor square_ignoring_grad(const Tensor& x) {
  Tensor out = custom_square(x.detach(), true);
  Tensor saved = x.detach();
  record(out, "IgnoresGradBackward", {x},
         [saved](const Tensor&) -> std::vector<Tensor> { return {saved * 2.0}; });
  return out;
}

}  // namespace

TEST_CASE("gradcheck passes on correct ops") {
  Generator gen(3);
  Tensor x = Tensor::randn(Shape{2, 3}, gen, DType::f64).requires_grad_();
  Tensor y = Tensor::randn(Shape{2, 3}, gen, DType::f64).requires_grad_();
  GradcheckResult r =
      gradcheck([](const std::vector<Tensor>& in) { return in[0] * in[0] + in[0]; }, {x});
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.max_abs_error < 1e-7);
  r = gradcheck([](const std::vector<Tensor>& in) { return in[0] * in[1] + in[1]; }, {x, y});
  INFO(r.message);
  CHECK(r.ok);
  r = gradcheck([](const std::vector<Tensor>& in) { return custom_square(in[0], true); }, {x});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("gradcheck fails on a deliberately wrong backward") {
  Generator gen(4);
  Tensor x = Tensor::randn(Shape{5}, gen, DType::f64).requires_grad_();
  GradcheckResult r =
      gradcheck([](const std::vector<Tensor>& in) { return custom_square(in[0], false); }, {x});
  CHECK_FALSE(r.ok);
  CHECK(r.max_abs_error > 1e-3);
  CHECK(r.message.find("analytic") != std::string::npos);
  CHECK(r.message.find("numeric") != std::string::npos);

  // A backward that ignores its incoming gradient fails too (random cotangent).
  r = gradcheck([](const std::vector<Tensor>& in) { return square_ignoring_grad(in[0]); }, {x});
  CHECK_FALSE(r.ok);
}

TEST_CASE("gradcheck rejects what it cannot check") {
  Generator gen(5);
  Tensor x = Tensor::randn(Shape{3}, gen, DType::f64).requires_grad_();
  // An op without grad: the output has no path to the input.
  check_error(
      [&] { gradcheck([](const std::vector<Tensor>& in) { return in[0].detach().clone(); }, {x}); },
      {"gradcheck", "no gradient path"});
  // f32 inputs: finite differences need double precision.
  Tensor x32 = Tensor::randn(Shape{3}, gen, DType::f32).requires_grad_();
  check_error(
      [&] { gradcheck([](const std::vector<Tensor>& in) { return in[0] * in[0]; }, {x32}); },
      {"gradcheck", "f32", "f64"});
  // No input requires grad.
  Tensor c = Tensor::randn(Shape{3}, gen, DType::f64);
  check_error([&] { gradcheck([](const std::vector<Tensor>& in) { return in[0] * in[0]; }, {c}); },
              {"gradcheck", "requires grad"});
}

TEST_CASE("gradcheck leaves the inputs as it found them") {
  Generator gen(6);
  Tensor x = Tensor::randn(Shape{4}, gen, DType::f64).requires_grad_();
  std::vector<double> before = x.to_vector();
  gradcheck([](const std::vector<Tensor>& in) { return in[0] * in[0]; }, {x});
  CHECK(x.to_vector() == before);
  CHECK(x.requires_grad());
  CHECK(GradMode::enabled());
}
