// Reductions: gradients over every axis with keepdim both ways, values, bad input.
#include <cmath>

#include "ops_helpers.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

TEST_CASE("reduce: gradcheck over every axis, keepdim both ways") {
  const Shape s{2, 3, 4};
  auto distinct = [s](Generator& gen) { return std::vector<Tensor>{distinct_input(s, gen)}; };
  std::vector<GradcheckCase> cases = {
      {"sum all", {s}, [](const std::vector<Tensor>& x) { return sum(x[0]); }},
      {"mean all", {s}, [](const std::vector<Tensor>& x) { return mean(x[0]); }},
      {"max all", {s}, [](const std::vector<Tensor>& x) { return max(x[0]); }, distinct},
  };
  for (int64_t axis : {0, 1, 2, -1}) {
    for (bool keep : {false, true}) {
      std::string tag = " axis " + std::to_string(axis) + (keep ? " keepdim" : "");
      cases.push_back({"sum" + tag, {s}, [axis, keep](const std::vector<Tensor>& x) {
                         return sum(x[0], axis, keep);
                       }});
      cases.push_back({"mean" + tag, {s}, [axis, keep](const std::vector<Tensor>& x) {
                         return mean(x[0], axis, keep);
                       }});
      cases.push_back({"max" + tag,
                       {s},
                       [axis, keep](const std::vector<Tensor>& x) { return max(x[0], axis, keep); },
                       distinct});
    }
  }
  cases.push_back(
      {"sum of a 1-D tensor", {{7}}, [](const std::vector<Tensor>& x) { return sum(x[0], 0); }});
  run_gradcheck_table(cases);
}

TEST_CASE("reduce: forward values") {
  Tensor x = Tensor::from({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64);
  check_values(sum(x), {21});
  CHECK(sum(x).shape() == Shape{});
  check_values(sum(x, 0), {5, 7, 9});
  check_values(sum(x, 1), {6, 15});
  CHECK(sum(x, 1, true).shape() == Shape{2, 1});
  CHECK(sum(x, 0, true).shape() == Shape{1, 3});
  CHECK(sum(x, -1).shape() == Shape{2});
  check_values(mean(x), {3.5});
  check_values(mean(x, 0), {2.5, 3.5, 4.5});
  check_values(mean(x, 1, true), {2, 5});
  check_values(max(x), {6});
  check_values(max(x, 0), {4, 5, 6});
  check_values(max(x, 1), {3, 6});
  check_values(max(Tensor::from({-3, -1, -2}, DType::f64)), {-1});
  check_values(sum(Tensor::from({0.5, 0.25}, DType::f32)), {0.75}, 1e-7);
  // A sum over an empty axis is 0.
  check_values(sum(Tensor::zeros({2, 0}, DType::f64), 1), {0, 0});
}

TEST_CASE("reduce: gradients by hand, ties go to the first arg-max") {
  Tensor x = Tensor::from({1, 3, 3, 2}, DType::f64).requires_grad_();
  max(x).backward(Tensor::scalar(5, DType::f64));
  check_values(x.grad(), {0, 5, 0, 0});

  Tensor y = Tensor::from({1, 7, 7, 2, 9, 0}, {2, 3}, DType::f64).requires_grad_();
  max(y, 1).backward(Tensor::from({1, 2}, DType::f64));
  check_values(y.grad(), {0, 1, 0, 0, 2, 0});

  Tensor z = Tensor::from({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64).requires_grad_();
  mean(z, 0).backward(Tensor::from({2, 4, 6}, DType::f64));
  check_values(z.grad(), {1, 2, 3, 1, 2, 3});
  CHECK(mean(z, 0).grad_fn()->name() == "MeanBackward");
}

TEST_CASE("reduce: large tensors agree with a naive loop") {
  Generator gen(11);
  const Shape s{37, 301, 29};
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = Tensor::randn(s, gen, dt);
    std::vector<double> v = x.to_vector();
    const double tol = dt == DType::f32 ? 1e-4 : 1e-10;
    double total = 0;
    for (double e : v) total += e;
    CHECK(sum(x).item() == doctest::Approx(total).epsilon(tol));
    for (int64_t axis = 0; axis < 3; ++axis) {
      CAPTURE(axis);
      const int64_t outer = s.numel(0, axis), n = s[axis], inner = s.numel(axis + 1, 3);
      std::vector<double> ref_sum(static_cast<size_t>(outer * inner), 0.0);
      std::vector<double> ref_max(static_cast<size_t>(outer * inner), -1e300);
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t k = 0; k < n; ++k)
          for (int64_t i = 0; i < inner; ++i) {
            double e = v[static_cast<size_t>((o * n + k) * inner + i)];
            ref_sum[static_cast<size_t>(o * inner + i)] += e;
            double& m = ref_max[static_cast<size_t>(o * inner + i)];
            m = std::max(m, e);
          }
      Tensor ss = sum(x, axis, true);
      Tensor mm = max(x, axis, true);
      Shape rs = s;
      rs[axis] = 1;
      CHECK(max_abs_diff(ss.to(DType::f64), Tensor::from(ref_sum, rs, DType::f64)) <= tol * 10);
      CHECK(max_abs_diff(mm.to(DType::f64), Tensor::from(ref_max, rs, DType::f64)) == 0);
    }
  }
}

TEST_CASE("reduce: bad input") {
  Tensor x = Tensor::zeros({2, 3, 4}, DType::f64);
  check_error([&] { sum(x, 3); }, {"sum", "axis 3", "rank 3"});
  check_error([&] { sum(x, -4); }, {"sum", "axis -4"});
  check_error([&] { mean(x, 5, true); }, {"mean", "axis 5"});
  check_error([&] { max(x, 3); }, {"max", "axis 3"});
  check_error([&] { sum(Tensor::scalar(1.0), 0); }, {"sum", "axis 0", "rank 0"});
  check_error([&] { max(Tensor::zeros({0}, DType::f64)); }, {"max", "x", "[0]"});
  check_error([&] { max(Tensor::zeros({2, 0}, DType::f64), 1); }, {"max", "x", "[2,0]", "axis 1"});
  check_error([&] { sum(Tensor()); }, {"sum", "x", "undefined"});
  check_error([&] { mean(Tensor(), 0); }, {"mean", "x", "undefined"});
}

TEST_CASE("reduce: results do not depend on the number of threads") {
  Generator gen(13);
  Tensor x = Tensor::randn({1000, 300}, gen);
  auto run = [&] {
    return std::vector<Tensor>{sum(x),     sum(x, 0),        sum(x, 1),
                               mean(x, 0), sum_to(x, {300}), sum_to(x, {1000, 1}),
                               max(x, 0)};
  };
  set_num_threads(1);
  std::vector<Tensor> one = run();
  set_num_threads(4);
  std::vector<Tensor> four = run();
  set_num_threads(0);
  for (size_t i = 0; i < one.size(); ++i) {
    CAPTURE(i);
    CHECK(max_abs_diff(one[i], four[i]) == 0);
  }
}

TEST_CASE("argmax: the first maximum along an axis, as i64 indices") {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor x =
        Tensor::from(std::vector<double>{1, 7, 7, 2, 9, 0, 4, 4, 4, -1, -2, -3}, {2, 2, 3}, dt);
    Tensor a = argmax(x);
    CHECK(a.dtype() == DType::i64);
    CHECK(a.shape() == Shape({2, 2}));
    check_values(a, {1, 1, 0, 0});  // ties keep the first
    check_values(argmax(x, 1), {1, 1, 0, 0, 0, 0});
    check_values(argmax(x, 0), {1, 0, 0, 0, 0, 0});
  }
  // A NaN is the maximum (the first one), as in max().
  const double nan = std::nan("");
  check_values(argmax(Tensor::from(std::vector<double>{1, nan, 5, nan}, {1, 4})), {1});
  check_values(argmax(Tensor::from(std::vector<double>{1, nan, 5, 2, 9, 3}, {3, 2}), 0), {2, 0});
  // Large rows agree with max(): x[argmax] is the max.
  Generator gen(12);
  const Tensor big = Tensor::randn({37, 301}, gen);
  const std::vector<double> idx = argmax(big).to_vector(), mx = max(big, 1).to_vector(),
                            v = big.to_vector();
  for (size_t r = 0; r < idx.size(); ++r) CHECK(v[r * 301 + static_cast<size_t>(idx[r])] == mx[r]);
  // No gradient: the indices are constants.
  CHECK(!argmax(big.detach().requires_grad_()).requires_grad());
}

TEST_CASE("argmax: bad input") {
  check_error([&] { (void)argmax(Tensor()); }, {"argmax", "x", "undefined"});
  check_error([&] { (void)argmax(Tensor::zeros({2, 3}), 2); }, {"argmax", "axis 2"});
  check_error([&] { (void)argmax(Tensor::zeros({2, 0}), 1); }, {"argmax", "x", "[2,0]", "axis 1"});
  check_error([&] { (void)argmax(Tensor::from_ints({1, 2}, {2})); }, {"argmax", "x is i64"});
}
