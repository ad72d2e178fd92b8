// Integer dtypes (i32, i64): creation, conversion, copies between devices, and the float
// ops refusing them with an error that names the op.
#include <cstdint>
#include <limits>
#include <vector>

#include "fake_device.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;

TEST_CASE("dtypes: i32 and i64 tensors from integer data, with their sizes and names") {
  const Tensor a = Tensor::from_ints({3, -1, 7, 0, 2, 5}, {2, 3});
  CHECK(a.dtype() == DType::i64);
  CHECK(a.nbytes() == 6 * 8);
  CHECK(a.to_vector() == std::vector<double>{3, -1, 7, 0, 2, 5});
  CHECK(a.data<int64_t>()[2] == 7);
  const Tensor b = Tensor::from_ints({4, 5}, {2}, DType::i32);
  CHECK(b.nbytes() == 8);
  CHECK(b.data<int32_t>()[1] == 5);
  CHECK(std::string(name(DType::i32)) == "i32");
  CHECK(std::string(name(DType::i64)) == "i64");
  CHECK(!is_floating(DType::i64));
  CHECK(is_floating(DType::f32));
  // Values beyond i32 are refused for an i32 tensor, kept in an i64 one.
  const int64_t big = int64_t{1} << 40;
  check_error(
      [&] {
        (void)Tensor::from_ints({1, big}, {2}, DType::i32);
      },
      {"Tensor::from_ints", "does not fit i32"});
  CHECK(Tensor::from_ints({big}, {1}).data<int64_t>()[0] == big);
  check_error([&] { (void)Tensor::from_ints({1, 2, 3}, {2}); }, {"Tensor::from_ints", "3 values"});
  check_error([&] { (void)a.data<int32_t>(); }, {"Tensor::data", "i64", "i32"});
  // Factories that only move values take integers too.
  CHECK(Tensor::zeros({3}, DType::i32).to_vector() == std::vector<double>(3, 0.0));
  CHECK(Tensor::full({2}, 9, DType::i64).to_vector() == std::vector<double>{9, 9});
  CHECK(Tensor::arange(4, DType::i64).to_vector() == std::vector<double>{0, 1, 2, 3});
  Generator gen(1);
  check_error([&] { (void)Tensor::randn({2}, gen, DType::i64); }, {"Tensor::randn", "i64"});
}

TEST_CASE("dtypes: integer tensors convert to and from float dtypes, and carry no gradient") {
  const Tensor ids = Tensor::from_ints({2, -3, 4}, {3});
  const Tensor f = ids.to(DType::f32);
  CHECK(f.dtype() == DType::f32);
  CHECK(f.to_vector() == std::vector<double>{2, -3, 4});
  // float → integer truncates toward zero, as a C++ cast does
  CHECK(Tensor::from({1.75, -2.5}, DType::f64).to(DType::i32).to_vector() ==
        std::vector<double>{1, -2});
  CHECK(ids.to(DType::i32).to(DType::i64).to_vector() == ids.to_vector());
  Tensor leaf = ids.clone();
  check_error([&] { leaf.requires_grad_(); }, {"requires_grad_", "i64", "no gradient"});
  // A float tensor that requires grad converts to an integer one without a node.
  Tensor x = Tensor::from({1.0, 2.0}).requires_grad_();
  CHECK(!x.to(DType::i64).requires_grad());
}

TEST_CASE("dtypes: integer tensors travel between devices byte for byte") {
  const Device dev = testing::fake_device();
  const Tensor ids = Tensor::from_ints({11, -7, 1 << 30, 0}, {2, 2}, DType::i32);
  const Tensor d = ids.to(dev);
  CHECK(d.dtype() == DType::i32);
  CHECK(d.to_vector() == ids.to_vector());
  CHECK(d.to(testing::fake_device(1)).cpu().to_vector() == ids.to_vector());
  Tensor back = Tensor::zeros({2, 2}, DType::i32);
  back.copy_(d);
  CHECK(back.to_vector() == ids.to_vector());
  check_error([&] { (void)d.data<int32_t>(); }, {"Tensor::data", "ext:0", ".cpu()"});
}

TEST_CASE("dtypes: float ops refuse integer tensors, naming the op and the dtype") {
  const Tensor ids = Tensor::from_ints({1, 2, 3, 4}, {2, 2});
  const Tensor f = Tensor::ones({2, 2});
  check_error([&] { (void)add(ids, ids); }, {"add", "a", "i64", "expected f32 or f64"});
  check_error([&] { (void)add(f, ids); }, {"add", "i64"});
  check_error([&] { (void)mul(ids, 2.0); }, {"mul", "a", "i64"});
  check_error([&] { (void)exp(ids); }, {"exp", "x", "i64"});
  check_error([&] { (void)sum(ids); }, {"sum", "x", "i64"});
  check_error([&] { (void)sum(ids, 0); }, {"sum", "x", "i64"});
  check_error([&] { (void)max(ids); }, {"max", "x", "i64"});
  check_error([&] { (void)matmul(ids, ids); }, {"matmul", "a", "i64"});
  check_error([&] { (void)linear(ids, ids); }, {"linear", "x", "i64"});
  check_error([&] { (void)softmax(ids); }, {"i64", "expected f32 or f64"});
  // On a device, the kernels' dtype check names the op too.
  const Tensor d = ids.to(testing::fake_device());
  check_error([&] { (void)exp(d); }, {"exp", "x", "i64"});
}
