// The random kernels (cuda/kernels/random.h) through the ops' device branches, against the CPU
// ops, on every device of kernel_devices(): the same generator state draws the same mask, so
// forward and backward match the CPU's bit for bit (dropout_add to a rounding: a device may
// fuse its multiply and add).
#include <functional>
#include <string>
#include <vector>

#include "kernel_devices.h"
#include "polyak/ops/nn_ops.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

using DropoutFn = std::function<Tensor(const Tensor& x, double p, Generator& gen)>;

struct Run {
  Tensor y, dx;
  uint64_t offset;  // the generator's after the op
};

// y = fn(x, p) and dx for the cotangent dy, on x's device, from a generator of `seed` at
// offset 3.
Run run(const DropoutFn& fn, const Tensor& x, double p, const Tensor& dy, uint64_t seed) {
  Generator gen(seed);
  gen.set_offset(3);
  Tensor leaf = x.detach().clone().requires_grad_();
  Run r;
  r.y = fn(leaf, p, gen);
  r.offset = gen.offset();
  r.y.backward(dy);
  r.dx = leaf.grad();
  return r;
}

// fn on every device against the CPU: |device − cpu| ≤ k·eps·|cpu| (k = 0: the same bits).
void check_matches_cpu(const char* name, const DropoutFn& fn, double k = 0) {
  for (const Shape& shape : {Shape{21}, Shape{3, 5, 16}, Shape{1}}) {
    for (const double p : {0.1, 0.5, 0.9}) {
      INFO(name << " " << shape << " p = " << p);
      Generator gen(11);
      const Tensor x = Tensor::randn(shape, gen), dy = cotangent(shape, 12);
      const Run cpu = run(fn, x, p, dy, 42);
      for (const Device dev : kernel_devices()) {
        const Run d = run(fn, x.to(dev), p, dy.to(dev), 42);
        CHECK(d.y.device() == dev);
        CHECK(d.dx.device() == dev);
        CHECK(d.offset == cpu.offset);
        check_close(d.y, cpu.y, 0, k, std::string(name) + " forward");
        check_close(d.dx, cpu.dx, 0, k, std::string(name) + " backward");
      }
    }
  }
}

}  // namespace

TEST_CASE("device dropout: the CPU's mask for the same seed, forward and backward") {
  check_matches_cpu("dropout", [](const Tensor& x, double p, Generator& gen) {
    return dropout(x, p, true, gen);
  });
}

TEST_CASE("device relu_dropout: the CPU's mask and relu, forward and backward") {
  check_matches_cpu("relu_dropout", [](const Tensor& x, double p, Generator& gen) {
    return relu_dropout(x, p, true, gen);
  });
}

TEST_CASE("device dropout_add: the CPU's mask plus the residual, forward and both gradients") {
  // The residual is a function of x here, so that its gradient (dy itself) reaches x too.
  check_matches_cpu(
      "dropout_add",
      [](const Tensor& x, double p, Generator& gen) {
        return dropout_add(x, x * 0.5, p, true, gen);
      },
      2);
}

TEST_CASE("device dropout: two draws in a row take different blocks, as on the CPU") {
  Generator gen(3);
  const Tensor x = Tensor::randn({40}, gen);
  for (const Device dev : kernel_devices()) {
    Generator gc(7), gd(7);
    const Tensor c1 = dropout(x, 0.5, true, gc), c2 = dropout(x, 0.5, true, gc);
    const Tensor d1 = dropout(x.to(dev), 0.5, true, gd), d2 = dropout(x.to(dev), 0.5, true, gd);
    check_close(d1, c1, 0, 0, "first draw");
    check_close(d2, c2, 0, 0, "second draw");
    CHECK(max_abs_diff(c1, c2) > 0);
  }
}

TEST_CASE("device dropout: bad input is named on the host") {
  for (const Device dev : kernel_devices()) {
    Generator gen(1);
    const Tensor x = Tensor::ones({4}).to(dev), x64 = Tensor::ones({4}, DType::f64).to(dev);
    check_error([&] { (void)dropout(x64, 0.5, true, gen); },
                {"dropout", "x is f64", "expected f32"});
    check_error([&] { (void)relu_dropout(x64, 0.5, true, gen); },
                {"relu_dropout", "x is f64", "expected f32"});
    check_error([&] { (void)dropout_add(x, Tensor::ones({4}), 0.5, true, gen); },
                {"dropout_add", "residual", "cpu", "x", dev.str()});
    check_error([&] { (void)dropout(x, 1.0, true, gen); }, {"dropout", "p is 1"});
    CHECK(gen.offset() == 0);  // nothing drawn for a call that failed
  }
}
