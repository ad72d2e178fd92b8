// Tensor basics: factories, views, conversion, copies, data access, validation.
#include <cmath>

#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using Vec = std::vector<double>;

TEST_CASE("Tensor: factories") {
  Tensor z = Tensor::zeros(Shape{2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.dim() == 2);
  CHECK(z.size(1) == 3);
  CHECK(z.size(-1) == 3);
  CHECK(z.numel() == 6);
  CHECK(z.dtype() == DType::f32);
  CHECK(z.device() == Device::cpu());
  CHECK(z.nbytes() == 24);
  CHECK(z.to_vector() == Vec(6, 0.0));
  CHECK(Tensor::ones(Shape{2}, DType::f64).to_vector() == Vec{1, 1});
  CHECK(Tensor::full(Shape{3}, 2.5).to_vector() == Vec{2.5, 2.5, 2.5});
  CHECK(Tensor::arange(4, DType::f64).to_vector() == Vec{0, 1, 2, 3});
  Tensor s = Tensor::scalar(7.0, DType::f64);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 7.0);
  Tensor f = Tensor::from({1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, DType::f64);
  CHECK(f.shape() == Shape{6});
  Tensor m = Tensor::from(Vec{1, 2, 3, 4, 5, 6}, Shape{2, 3}, DType::f64);
  CHECK(m.to_vector() == Vec{1, 2, 3, 4, 5, 6});
  Tensor e = Tensor::empty(Shape{0, 4});
  CHECK(e.numel() == 0);
  CHECK_FALSE(Tensor().defined());
  CHECK(Tensor::zeros(Shape{1}).defined());
  // Random factories are reproducible per generator state.
  Generator g1(11), g2(11);
  CHECK(Tensor::randn(Shape{5}, g1).to_vector() == Tensor::randn(Shape{5}, g2).to_vector());
  Vec u = Tensor::rand(Shape{1000}, g1, DType::f64).to_vector();
  for (double v : u) {
    CHECK(v >= 0.0);
    CHECK(v < 1.0);
  }
}

TEST_CASE("Tensor: bad factory arguments throw") {
  check_error([] { Tensor::zeros(Shape{2, -1}); }, {"Tensor::zeros", "[2,-1]", "negative"});
  check_error([] { Tensor::empty(Shape{-3}); }, {"Tensor::empty", "negative"});
  check_error([] { Tensor::from(Vec{1, 2, 3}, Shape{2, 2}); }, {"Tensor::from", "3", "[2,2]"});
  check_error([] { Tensor::arange(-1); }, {"arange", "-1"});
}

TEST_CASE("Tensor: reshape and narrow0 are views sharing storage") {
  Tensor t = Tensor::from(Vec{0, 1, 2, 3, 4, 5}, Shape{2, 3}, DType::f64);
  Tensor r = t.reshape(Shape{3, 2});
  CHECK(r.shape() == Shape{3, 2});
  CHECK(r.shares_storage(t));
  r.data<double>()[1] = 10;
  CHECK(t.to_vector()[1] == 10);
  CHECK(t.reshape(Shape{-1}).shape() == Shape{6});
  CHECK(t.reshape(Shape{3, -1}).shape() == Shape{3, 2});
  check_error([&] { t.reshape(Shape{4, 2}); }, {"reshape", "[4,2]", "6"});
  check_error([&] { t.reshape(Shape{-1, -1}); }, {"reshape", "-1"});

  Tensor rows = Tensor::from(Vec{0, 1, 2, 3, 4, 5, 6, 7}, Shape{4, 2}, DType::f32);
  Tensor mid = rows.narrow0(1, 3);
  CHECK(mid.shape() == Shape{2, 2});
  CHECK(mid.to_vector() == Vec{2, 3, 4, 5});
  CHECK(mid.shares_storage(rows));
  mid.data<float>()[0] = -1;
  CHECK(rows.to_vector()[2] == -1);
  Tensor row = rows[3];
  CHECK(row.shape() == Shape{2});
  CHECK(row.to_vector() == Vec{6, 7});
  check_error([&] { rows.narrow0(2, 5); }, {"narrow0", "5"});
  check_error([&] { (void)rows[4]; }, {"4"});
}

TEST_CASE("Tensor: views are differentiable") {
  Tensor x = Tensor::from(Vec{1, 2, 3, 4}, Shape{2, 2}, DType::f64).requires_grad_();
  Tensor r = x.reshape(Shape{4});
  CHECK_FALSE(r.is_leaf());
  r.backward(Tensor::from(Vec{1, 2, 3, 4}, Shape{4}, DType::f64));
  CHECK(x.grad().shape() == Shape{2, 2});
  CHECK(x.grad().to_vector() == Vec{1, 2, 3, 4});
  x.zero_grad();
  x.narrow0(1, 2).backward(Tensor::from(Vec{5, 6}, Shape{1, 2}, DType::f64));
  CHECK(x.grad().to_vector() == Vec{0, 0, 5, 6});
}

TEST_CASE("Tensor: item, to(DType), clone, copy_") {
  CHECK(Tensor::from({3.5}).item() == 3.5);
  check_error([] { Tensor::zeros(Shape{2}).item(); }, {"item", "[2]", "one element"});

  Tensor d = Tensor::from({1.25, -2.5, 1e-10}, DType::f64);
  Tensor f = d.to(DType::f32);
  CHECK(f.dtype() == DType::f32);
  CHECK(f.to_vector()[0] == 1.25);
  CHECK(f.to_vector()[2] == doctest::Approx(1e-10).epsilon(1e-6));
  CHECK(d.to(DType::f64).is_same(d));  // same dtype: the same tensor
  // to(DType) is differentiable: the gradient comes back in the source dtype.
  Tensor x = Tensor::from({1.0, 2.0}, DType::f64).requires_grad_();
  x.to(DType::f32).backward(Tensor::from({0.5, 4.0}, DType::f32));
  CHECK(x.grad().dtype() == DType::f64);
  CHECK(x.grad().to_vector() == Vec{0.5, 4.0});

  // clone copies (no shared storage) and is differentiable.
  Tensor y = Tensor::from({1.0, 2.0}, DType::f64).requires_grad_();
  Tensor c = y.clone();
  CHECK_FALSE(c.shares_storage(y));
  CHECK_FALSE(c.is_leaf());
  c.data<double>()[0] = 9;
  CHECK(y.to_vector()[0] == 1.0);
  c.backward(Tensor::from({3.0, -1.0}, DType::f64));
  CHECK(y.grad().to_vector() == Vec{3.0, -1.0});

  Tensor dst = Tensor::zeros(Shape{2}, DType::f64);
  dst.copy_(Tensor::from({7.0, 8.0}, DType::f64));
  CHECK(dst.to_vector() == Vec{7, 8});
  check_error(
      [&] {
        dst.copy_(Tensor::from({1.0, 2.0, 3.0}, DType::f64));
      },
      {"copy_", "[3]", "[2]"});
  check_error([&] { dst.copy_(Tensor::from({1.0, 2.0}, DType::f32)); }, {"copy_", "f32", "f64"});
  dst.fill_(0.5);
  CHECK(dst.to_vector() == Vec{0.5, 0.5});
  dst.zero_();
  CHECK(dst.to_vector() == Vec{0, 0});
}

TEST_CASE("Tensor: data<T>() checks the element type") {
  Tensor f = Tensor::zeros(Shape{2}, DType::f32);
  CHECK(f.data<float>() != nullptr);
  check_error([&] { f.data<double>(); }, {"data", "f32", "f64"});
  Tensor d = Tensor::zeros(Shape{2}, DType::f64);
  check_error([&] { d.data<float>(); }, {"data", "f64", "f32"});
}

TEST_CASE("Tensor: requires_grad_ on a non-leaf throws, set_grad checks the shape") {
  Tensor x = Tensor::from({1.0, 2.0}, DType::f64).requires_grad_();
  CHECK(x.requires_grad());
  CHECK(x.is_leaf());
  Tensor y = x.clone();
  check_error([&] { y.requires_grad_(false); }, {"requires_grad_", "leaf"});
  check_error([&] { x.set_grad(Tensor::zeros(Shape{3}, DType::f64)); }, {"set_grad", "[3]", "[2]"});
  x.requires_grad_(false);
  CHECK_FALSE(x.requires_grad());
}

TEST_CASE("Tensor: printing") {
  std::ostringstream os;
  os << Tensor::from({1.0, 2.0}, DType::f64);
  CHECK(os.str().find("[2]") != std::string::npos);
  CHECK(os.str().find("f64") != std::string::npos);
  std::ostringstream undefined;
  undefined << Tensor();
  CHECK(undefined.str().find("undefined") != std::string::npos);
}

TEST_CASE("Tensor: an undefined tensor or a gradient of the wrong dtype is an Error") {
  Tensor undefined;
  check_error([&] { undefined.detach(); }, {"detach", "undefined"});
  check_error([&] { undefined.requires_grad_(); }, {"requires_grad_", "undefined"});
  check_error([&] { undefined.set_name("w"); }, {"set_name", "undefined"});
  Tensor x = Tensor::zeros(Shape{2}, DType::f64).requires_grad_();
  check_error([&] { x.set_grad(Tensor::zeros(Shape{2}, DType::f32)); }, {"set_grad", "f32", "f64"});
}
