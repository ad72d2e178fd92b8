// The shape kernels (cuda/kernels/shape.h) through the ops' device branches, against the CPU
// ops, on every device of kernel_devices(): forward, and backward with a random cotangent. The
// copies and max move elements unchanged, so device and CPU agree exactly; sums to a rounding.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "kernel_devices.h"
#include "polyak/ops/reduce.h"
#include "polyak/ops/shape_ops.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

using Op = std::function<Tensor(const Tensor&)>;

// fn(x) and dx for the cotangent dy, on x's device.
std::pair<Tensor, Tensor> forward_backward(const Op& fn, const Tensor& x, const Tensor& dy) {
  Tensor leaf = x.detach().clone().requires_grad_();
  Tensor y = fn(leaf);
  y.backward(dy);
  return {y, leaf.grad()};
}

// fn on every device against the CPU, forward and backward: |device − cpu| ≤ atol + k·eps·|cpu|
// (0, 0 by default: element for element).
void check_matches_cpu(const std::string& name, const Op& fn, const Shape& shape, double atol = 0,
                       double k = 0) {
  INFO(name << " of x " << shape);
  Generator gen(21);
  const Tensor x = Tensor::randn(shape, gen);
  const Tensor y = fn(x);
  const Tensor dy = cotangent(y.shape(), 22);
  const auto [cy, cdx] = forward_backward(fn, x, dy);
  for (const Device dev : kernel_devices()) {
    const auto [y_dev, dx_dev] = forward_backward(fn, x.to(dev), dy.to(dev));
    CHECK(y_dev.device() == dev);
    CHECK(dx_dev.device() == dev);
    check_close(y_dev, cy, atol, k, name + " forward");
    check_close(dx_dev, cdx, atol, k, name + " backward");
  }
}

}  // namespace

TEST_CASE("device permute and transpose: every axis order, forward and backward") {
  const Shape s{2, 3, 4, 5};
  for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{
           {0, 1, 2, 3}, {3, 2, 1, 0}, {0, 2, 1, 3}, {1, 3, 0, 2}, {2, 0, 3, 1}, {-1, 0, 1, 2}})
    check_matches_cpu(
        "permute " + Shape(dims).str(), [dims](const Tensor& x) { return permute(x, dims); }, s);
  check_matches_cpu(
      "transpose(0, 2)", [](const Tensor& x) { return transpose(x, 0, 2); }, s);
  check_matches_cpu(
      "transpose(-1, -2)", [](const Tensor& x) { return transpose(x, -1, -2); }, Shape{6, 7});
}

TEST_CASE("device slice and split: along every axis, forward and backward") {
  const Shape s{3, 4, 5};
  for (int64_t axis = 0; axis < 3; ++axis) {
    const std::string a = std::to_string(axis);
    check_matches_cpu(
        "slice axis " + a, [axis](const Tensor& x) { return slice(x, axis, 1, 3) * 1.0; }, s);
    check_matches_cpu(
        "split axis " + a,
        [axis, s](const Tensor& x) {
          const int64_t e = s[axis];
          const std::vector<Tensor> parts = split(x, axis, {1, e - 3, 2});
          // Each piece reaches the output, so each backward runs.
          return concat({parts[2], parts[0], parts[1]}, axis);
        },
        s);
  }
  check_matches_cpu(
      "empty slice", [](const Tensor& x) { return slice(x, 1, 2, 2); }, s);
}

TEST_CASE("device concat: along every axis, forward and every input's gradient") {
  for (int64_t axis = 0; axis < 3; ++axis) {
    check_matches_cpu(
        "concat axis " + std::to_string(axis),
        [axis](const Tensor& x) {
          const Tensor a = x * 2.0, b = x.detach() * 0.0 + 1.0;  // b needs no gradient
          return concat({x, a, b, x}, axis);
        },
        Shape{2, 3, 4});
  }
}

TEST_CASE("device split_heads and merge_heads: forward and backward") {
  check_matches_cpu(
      "split_heads", [](const Tensor& x) { return split_heads(x, 3); }, Shape{2, 5, 12});
  check_matches_cpu(
      "merge_heads", [](const Tensor& x) { return merge_heads(x); }, Shape{2, 3, 5, 4});
  check_matches_cpu(
      "merge_heads(split_heads)",
      [](const Tensor& x) { return merge_heads(split_heads(x, 2) * 3.0); }, Shape{1, 4, 6});
}

TEST_CASE("device permute, slice and concat move integer ids") {
  std::vector<int64_t> values(24);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int64_t>(i * 7 % 24) - 5;
  const Tensor ids = Tensor::from_ints(values, {2, 3, 4});
  for (const Device dev : kernel_devices()) {
    for (DType dt : {DType::i32, DType::i64}) {
      INFO(name(dt) << " on " << dev);
      const Tensor d = ids.to(dt).to(dev);
      const Tensor c = ids.to(dt);
      CHECK(permute(d, {2, 0, 1}).dtype() == dt);
      CHECK(permute(d, {2, 0, 1}).cpu().to_vector() == permute(c, {2, 0, 1}).to_vector());
      CHECK(slice(d, 2, 1, 3).cpu().to_vector() == slice(c, 2, 1, 3).to_vector());
      CHECK(concat({d, d}, 1).cpu().to_vector() == concat({c, c}, 1).to_vector());
    }
  }
}

TEST_CASE("device shape ops: bad input is named on the host") {
  for (const Device dev : kernel_devices()) {
    const Tensor x = Tensor::ones({2, 3}).to(dev);
    const Tensor x64 = Tensor::ones({2, 3}, DType::f64).to(dev);
    check_error([&] { (void)permute(x64, {1, 0}); }, {"permute", "x is f64", "expected f32"});
    check_error([&] { (void)slice(x64, 1, 0, 1); }, {"slice", "x is f64", "expected f32"});
    check_error(
        [&] {
          (void)concat({x, Tensor::ones({2, 3})}, 1);
        },
        {"concat", "xs[1]", "cpu", dev.str()});
    check_error(
        [&] {
          (void)split_heads(Tensor::ones({1, 2, 4}, DType::f64).to(dev), 2);
        },
        {"split_heads", "x is f64", "expected f32"});
    check_error(
        [&] {
          (void)permute(Tensor::ones(Shape(std::vector<int64_t>(9, 1))).to(dev),
                        {8, 7, 6, 5, 4, 3, 2, 1, 0});
        },
        {"permute", "rank 9", "expected at most 8", dev.str()});
  }
}

TEST_CASE("device sum, mean and max over an axis, keepdim or not: forward and backward") {
  const Shape s{3, 4, 5};
  for (int64_t axis = -1; axis < 3; ++axis) {
    for (const bool keep : {false, true}) {
      const std::string a = std::to_string(axis) + (keep ? " keepdim" : "");
      check_matches_cpu(
          "sum axis " + a, [axis, keep](const Tensor& x) { return sum(x, axis, keep); }, s, 1e-6,
          8);
      check_matches_cpu(
          "mean axis " + a, [axis, keep](const Tensor& x) { return mean(x, axis, keep); }, s, 1e-6,
          8);
      check_matches_cpu(
          "max axis " + a, [axis, keep](const Tensor& x) { return max(x, axis, keep); }, s);
    }
  }
  check_matches_cpu(
      "max", [](const Tensor& x) { return max(x); }, Shape{7, 3});
  check_matches_cpu(
      "max of one element", [](const Tensor& x) { return max(x); }, Shape{1});
}

TEST_CASE("device max: ties keep the first, a NaN is the maximum, as on the CPU") {
  const Tensor x =
      Tensor::from(std::vector<double>{1.0, 3.0, 3.0, -2.0, NAN, 0.5, NAN, 7.0}, Shape{2, 4});
  for (const Device dev : kernel_devices()) {
    const std::vector<double> y = max(x.to(dev), 1, false).cpu().to_vector();
    CHECK(y[0] == 3.0);
    CHECK(std::isnan(y[1]));
    Tensor leaf = x.to(dev).requires_grad_();
    max(leaf, 1, false).backward(Tensor::from({2.0, 5.0}).to(dev));
    CHECK(leaf.grad().cpu().to_vector() == std::vector<double>{0, 2, 0, 0, 5, 0, 0, 0});
    CHECK(std::isnan(max(x.to(dev)).cpu().item()));
  }
}

TEST_CASE("device reductions: bad input is named on the host") {
  for (const Device dev : kernel_devices()) {
    const Tensor x64 = Tensor::ones({2, 3}, DType::f64).to(dev);
    check_error([&] { (void)sum(x64, 1); }, {"sum", "x is f64", "expected f32"});
    check_error([&] { (void)max(x64, 0); }, {"max", "x is f64", "expected f32"});
    check_error(
        [&] {
          (void)max(Tensor::ones({2, 0}).to(dev), 1);
        },
        {"max", "x has shape", "at least one element"});
  }
}

TEST_CASE("device Tensor::full: filled on the device in f32, through the host for integers") {
  for (const Device dev : kernel_devices()) {
    INFO(dev);
    fake::calls().erase("from_host");
    const Tensor x = Tensor::full({3, 5}, -2.5, DType::f32, dev);
    const Tensor nan = Tensor::full({2}, std::nan(""), DType::f32, dev);
    const Tensor empty = Tensor::full({0, 4}, 7.0, DType::f32, dev);
    const Tensor ones = Tensor::ones({4}, DType::f32, dev);
    if (dev == fake_device()) CHECK(fake::calls()["from_host"] == 0);
    check_close(x, Tensor::full({3, 5}, -2.5), 0, 0, "full");
    check_close(ones, Tensor::ones({4}), 0, 0, "ones");
    CHECK(empty.shape() == Shape({0, 4}));
    for (double v : nan.cpu().to_vector()) CHECK(std::isnan(v));
    const Tensor ids = Tensor::full({3}, 4.0, DType::i64, dev);
    CHECK(ids.dtype() == DType::i64);
    CHECK(ids.cpu().to_vector() == std::vector<double>{4, 4, 4});
  }
}
