// embedding and cross_entropy with integer tensors (i32, i64) for ids, targets and masks:
// the same values and gradients as with Indices, and errors naming the op and the argument.
#include <cstdint>
#include <vector>

#include "fake_device.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;

namespace {

// x.grad after backpropagating the random cotangent `dy` through fn(x).
Tensor gradient(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x, const Tensor& dy) {
  Tensor leaf = x.detach().clone().requires_grad_();
  fn(leaf).backward(dy);
  return leaf.grad();
}

}  // namespace

TEST_CASE("embedding: integer id tensors look up and scatter like Indices") {
  Generator gen(3);
  const Tensor w = Tensor::randn({5, 4}, gen, DType::f64);
  const Indices ids(Shape{2, 3}, {4, 0, 2, 2, 1, 4});
  const Tensor dy = Tensor::randn({2, 3, 4}, gen, DType::f64);
  const Tensor reference = embedding(w, ids);
  const Tensor reference_grad = gradient([&](const Tensor& x) { return embedding(x, ids); }, w, dy);
  for (DType dt : {DType::i32, DType::i64}) {
    CAPTURE(name(dt));
    const Tensor t = to_tensor(ids, dt);
    CHECK(t.dtype() == dt);
    CHECK(testing::max_abs_diff(embedding(w, t), reference) == 0);
    CHECK(testing::max_abs_diff(gradient([&](const Tensor& x) { return embedding(x, t); }, w, dy),
                                reference_grad) == 0);
    // ids held on a device are read through a host copy
    CHECK(testing::max_abs_diff(embedding(w, t.to(testing::fake_device())), reference) == 0);
  }
  check_error(
      [&] {
        (void)embedding(w, Tensor::from({1.0, 2.0}));
      },
      {"embedding", "ids", "f32", "integer tensor"});
  check_error(
      [&] {
        (void)embedding(w, Tensor::from_ints({1, 5}, {2}));
      },
      {"embedding", "ids", "value 5", "[0, 5)"});
  check_error([&] { (void)embedding(w, Tensor::from_ints({int64_t{1} << 33}, {1})); },
              {"embedding", "ids", "within i32"});
}

TEST_CASE("cross_entropy: integer target and mask tensors give the Indices values and gradients") {
  Generator gen(4);
  const Tensor logits = Tensor::randn({2, 3, 5}, gen, DType::f64);
  const Indices targets(Shape{2, 3}, {0, 4, -100, 1, 3, 2});
  const Tensor dy = Tensor::scalar(1.7, DType::f64);
  auto check_same = [&](const std::function<Tensor(const Tensor&)>& with_tensor,
                        const std::function<Tensor(const Tensor&)>& with_indices) {
    CHECK(with_tensor(logits).item() == with_indices(logits).item());
    CHECK(testing::max_abs_diff(gradient(with_tensor, logits, dy),
                                gradient(with_indices, logits, dy)) == 0);
  };
  for (DType dt : {DType::i32, DType::i64}) {
    CAPTURE(name(dt));
    const Tensor t = to_tensor(targets, dt);
    check_same([&](const Tensor& x) { return cross_entropy(x, t); },
               [&](const Tensor& x) { return cross_entropy(x, targets); });
    // An integer 0/1 mask is a constant weight, equal to the same mask in the logits' dtype.
    const Indices kept(Shape{2, 3}, {0, 4, 0, 1, 3, 2});
    check_same([&](const Tensor& x) { return cross_entropy(x, to_tensor(kept, dt), 3); },
               [&](const Tensor& x) { return cross_entropy(x, kept, 3); });
    const Tensor mask_ids = Tensor::from_ints({1, 1, 0, 0, 1, 1}, {2, 3}, dt);
    const Tensor mask = mask_ids.to(DType::f64);
    check_same([&](const Tensor& x) { return cross_entropy(x, to_tensor(kept, dt), mask_ids); },
               [&](const Tensor& x) { return cross_entropy(x, kept, mask); });
    check_same([&](const Tensor& x) { return cross_entropy(x, kept, mask_ids); },
               [&](const Tensor& x) { return cross_entropy(x, kept, mask); });
  }
  check_error(
      [&] {
        (void)cross_entropy(logits, Tensor::ones({2, 3}));
      },
      {"cross_entropy", "targets", "f32", "integer tensor"});
  check_error(
      [&] {
        (void)cross_entropy(logits, Tensor::from_ints({0, 1}, {2}));
      },
      {"cross_entropy", "targets", "shape [2]", "[2,3]"});
  check_error(
      [&] {
        (void)cross_entropy(logits, Tensor::from_ints({0, 1, 9, 0, 0, 0}, {2, 3}));
      },
      {"cross_entropy", "targets", "value 9"});
}

TEST_CASE("permute, slice and concat move integer tensors like values") {
  const Tensor t = Tensor::from_ints({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {2, 3, 2});
  for (DType dt : {DType::i32, DType::i64}) {
    CAPTURE(name(dt));
    const Tensor x = t.to(dt);
    const Tensor s = slice(x, 1, 1, 3);  // a copy along axis 1
    CHECK(s.dtype() == dt);
    CHECK(s.shape() == Shape({2, 2, 2}));
    CHECK(s.to_vector() == std::vector<double>{2, 3, 4, 5, 8, 9, 10, 11});
    const Tensor c = concat({slice(x, 1, 2, 3), slice(x, 1, 0, 1)}, 1);
    CHECK(c.dtype() == dt);
    CHECK(c.to_vector() == std::vector<double>{4, 5, 0, 1, 10, 11, 6, 7});
    const Tensor p = transpose(x, 0, 2);  // [2, 3, 2]: p[i, j, k] = x[k, j, i]
    CHECK(p.dtype() == dt);
    CHECK(p.to_vector() == std::vector<double>{0, 6, 2, 8, 4, 10, 1, 7, 3, 9, 5, 11});
    CHECK(slice(x, 1, 1, 2).reshape({4}).to_vector() == std::vector<double>{2, 3, 8, 9});
  }
}
