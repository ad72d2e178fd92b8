// The nn kernels (cuda/kernels/nn.h) through the ops' device branches, against the CPU ops,
// on every device of kernel_devices(): forward, and backward with a random cotangent.
#include <functional>
#include <string>
#include <vector>

#include "kernel_devices.h"
#include "polyak/nn/init.h"
#include "polyak/ops/attention/norm_attention.h"
#include "polyak/ops/mixture.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

using Op = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs `op` on CPU copies of `inputs` and on copies on `dev`, backpropagates one random
// cotangent through both, and compares the outputs and the gradient of every floating input
// (integer inputs — ids, targets, masks — are constants): |dev − cpu| ≤ atol + k·eps·|cpu|.
void check_against_cpu(const Device dev, const std::vector<Tensor>& inputs, const Op& op,
                       double atol, double k, const std::string& what, uint64_t seed = 17) {
  INFO(what);
  std::vector<Tensor> on_cpu, on_dev;
  for (const Tensor& t : inputs) {
    Tensor c = t.clone().detach(), d = t.to(dev);
    if (is_floating(t.dtype())) {
      c.requires_grad_();
      d.requires_grad_();
    }
    on_cpu.push_back(c);
    on_dev.push_back(d);
  }
  const Tensor y_cpu = op(on_cpu), y_dev = op(on_dev);
  REQUIRE(y_dev.device() == dev);
  check_close(y_dev, y_cpu.detach(), atol, k, what + " forward");
  const Tensor dy = cotangent(y_cpu.shape(), seed);
  y_cpu.backward(dy);
  y_dev.backward(dy.to(dev));
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!is_floating(inputs[i].dtype())) continue;
    REQUIRE(on_dev[i].grad().defined());
    CHECK(on_dev[i].grad().device() == dev);
    check_close(on_dev[i].grad(), on_cpu[i].grad(), atol, k,
                what + " gradient of input " + std::to_string(i));
  }
}

}  // namespace

TEST_CASE("device embedding: the rows of weight, for i32 and i64 ids") {
  Generator gen(5);
  const Tensor w = Tensor::randn({7, 5}, gen);
  const std::vector<int64_t> values = {6, 0, 3, 3, 1, 6, 2, 5};
  const Tensor ids = Tensor::from_ints(values, {2, 4});
  const Tensor reference = embedding(w, ids);
  for (const Device dev : kernel_devices()) {
    for (DType dt : {DType::i32, DType::i64}) {
      INFO(name(dt));
      const Tensor y = embedding(w.to(dev), ids.to(dt).to(dev));
      CHECK(y.device() == dev);
      CHECK(y.shape() == Shape({2, 4, 5}));
      check_close(y, reference, 0, 0, "embedding");
    }
    // Bad input is checked on the host, before any kernel.
    check_error([&] { (void)embedding(w.to(dev), ids); },
                {"embedding", "ids is on cpu", "weight is on", "expected one device"});
    check_error(
        [&] {
          (void)embedding(w.to(dev), Tensor::from({1.0, 2.0}).to(dev));
        },
        {"embedding", "ids is f32", "integer tensor"});
    check_error([&] { (void)embedding(w.to(DType::f64).to(dev), ids.to(dev)); },
                {"embedding", "weight is f64", "expected f32"});
  }
}

TEST_CASE("device embedding: an id outside the table gives a row of NaN") {
  Generator gen(6);
  const Tensor w = Tensor::randn({3, 2}, gen);
  for (const Device dev : kernel_devices()) {
    const std::vector<double> y =
        embedding(w.to(dev), Tensor::from_ints({1, 3, -1}, {3}).to(dev)).cpu().to_vector();
    CHECK(y[0] == w.to_vector()[2]);
    CHECK(y[1] == w.to_vector()[3]);
    for (size_t i = 2; i < 6; ++i) CHECK(std::isnan(y[i]));
  }
}

TEST_CASE("device embedding backward: repeated ids sum, in order, the same bits every run") {
  Generator gen(7);
  const Tensor w = Tensor::randn({9, 6}, gen);
  const Tensor ids = Tensor::from_ints({8, 0, 3, 3, 1, 8, 3, 5, 0, 0, 7, 3}, {2, 2, 3});
  for (const Device dev : kernel_devices()) {
    for (DType dt : {DType::i32, DType::i64}) {
      INFO(name(dt));
      check_against_cpu(
          dev, {w, ids.to(dt)}, [](const auto& in) { return embedding(in[0], in[1]); }, 1e-6, 8,
          "embedding");
    }
    // Deterministic: two backward passes give the same bits.
    const Tensor dy = cotangent({2, 2, 3, 6}, 3).to(dev);
    std::vector<std::vector<double>> grads;
    for (int run = 0; run < 2; ++run) {
      Tensor wd = w.to(dev).requires_grad_();
      embedding(wd, ids.to(dev)).backward(dy);
      grads.push_back(wd.grad().cpu().to_vector());
    }
    CHECK(grads[0] == grads[1]);
  }
}

TEST_CASE("device layer_norm: forward and backward, with and without gamma and beta") {
  Generator gen(8);
  const Tensor x = add(mul(Tensor::randn({2, 3, 16}, gen), 3.0), 1.5);  // 3-D, off-centre
  const Tensor gamma = Tensor::randn({16}, gen), beta = Tensor::randn({16}, gen);
  for (const Device dev : kernel_devices()) {
    check_against_cpu(
        dev, {x, gamma, beta}, [](const auto& in) { return layer_norm(in[0], in[1], in[2], 1e-5); },
        1e-5, 64, "layer_norm gamma beta");
    check_against_cpu(
        dev, {x, gamma}, [](const auto& in) { return layer_norm(in[0], in[1], Tensor(), 1e-3); },
        1e-5, 64, "layer_norm gamma");
    check_against_cpu(
        dev, {x, beta}, [](const auto& in) { return layer_norm(in[0], Tensor(), in[1], 1e-5); },
        1e-5, 64, "layer_norm beta");
    check_against_cpu(
        dev, {x}, [](const auto& in) { return layer_norm(in[0], Tensor(), Tensor(), 1e-5); }, 1e-5,
        64, "layer_norm");
    // Only gamma wants a gradient: x stays a constant.
    Tensor g = gamma.to(dev).requires_grad_();
    layer_norm(x.to(dev), g, Tensor()).backward(cotangent(x.shape(), 4).to(dev));
    Tensor gc = gamma.clone().detach().requires_grad_();
    layer_norm(x, gc, Tensor()).backward(cotangent(x.shape(), 4));
    check_close(g.grad(), gc.grad(), 1e-5, 64, "layer_norm dgamma alone");
  }
}

TEST_CASE("device rms_norm and srms_norm: forward and backward, a zero row included") {
  Generator gen(9);
  Tensor x = Tensor::randn({3, 2, 12}, gen);
  {  // row 1 is zero: r = 0 there, and dx's second term vanishes
    std::vector<double> v = x.to_vector();
    for (size_t c = 12; c < 24; ++c) v[c] = 0;
    x = Tensor::from(v, x.shape(), DType::f32);
  }
  const Tensor gamma = Tensor::randn({12}, gen);
  for (const Device dev : kernel_devices()) {
    check_against_cpu(
        dev, {x, gamma}, [](const auto& in) { return rms_norm(in[0], in[1], 1e-6); }, 1e-5, 64,
        "rms_norm gamma");
    check_against_cpu(
        dev, {x}, [](const auto& in) { return rms_norm(in[0], Tensor(), 1e-8); }, 1e-5, 64,
        "rms_norm");
    check_against_cpu(
        dev, {x}, [](const auto& in) { return srms_norm(in[0], 0.3); }, 1e-5, 64, "srms_norm");
  }
}

TEST_CASE("device softmax and log_softmax: the last axis and a middle one") {
  Generator gen(10);
  const Tensor x = mul(Tensor::randn({2, 5, 3}, gen), 4.0);
  for (const Device dev : kernel_devices()) {
    for (int64_t axis : {-1, 1, 0}) {
      const std::string tag = " axis " + std::to_string(axis);
      check_against_cpu(
          dev, {x}, [axis](const auto& in) { return softmax(in[0], axis); }, 1e-6, 32,
          "softmax" + tag);
      check_against_cpu(
          dev, {x}, [axis](const auto& in) { return log_softmax(in[0], axis); }, 1e-5, 32,
          "log_softmax" + tag);
    }
  }
}

TEST_CASE("device cross_entropy: ignore_index rows, 3-D logits, i32 and i64 targets") {
  Generator gen(11);
  const Tensor logits = mul(Tensor::randn({2, 3, 6}, gen), 2.0);
  const std::vector<int64_t> values = {5, -100, 0, 3, 3, -100};
  for (const Device dev : kernel_devices()) {
    for (DType dt : {DType::i32, DType::i64}) {
      INFO(name(dt));
      const Tensor targets = Tensor::from_ints(values, {2, 3}, dt);
      check_against_cpu(
          dev, {logits, targets}, [](const auto& in) { return cross_entropy(in[0], in[1]); }, 1e-6,
          32, "cross_entropy ignore_index");
      // Another ignore_index, which is also a class: its rows do not count.
      check_against_cpu(
          dev, {logits, Tensor::from_ints({5, 2, 0, 3, 2, 1}, {2, 3}, dt)},
          [](const auto& in) { return cross_entropy(in[0], in[1], 2); }, 1e-6, 32,
          "cross_entropy ignore_index 2");
    }
    // Every row ignored: the loss is 0 and so is its gradient.
    check_against_cpu(
        dev, {logits, Tensor::full({2, 3}, -100, DType::i64)},
        [](const auto& in) { return cross_entropy(in[0], in[1]); }, 0, 0,
        "cross_entropy all ignored");
    // Indices (host) targets follow the logits onto the device.
    const Tensor loss =
        cross_entropy(logits.to(dev), Indices(Shape{2, 3}, {5, -100, 0, 3, 3, -100}));
    CHECK(loss.device() == dev);
    check_close(loss, cross_entropy(logits, Tensor::from_ints(values, {2, 3})), 1e-6, 32,
                "cross_entropy Indices");
  }
}

TEST_CASE("device cross_entropy: a float mask gets a gradient, an integer mask is constant") {
  Generator gen(12);
  const Tensor logits = mul(Tensor::randn({3, 2, 5}, gen), 2.0);
  // Masked-out rows (weight 0) may hold any target, padding included.
  const Tensor targets = Tensor::from_ints({4, 0, -1, 2, 1, 7}, {3, 2});
  const Tensor weights = Tensor::from(std::vector<double>{1.0, 0.5, 0.0, 2.0, 0.0, 0.0}, {3, 2});
  const Tensor ones = Tensor::from_ints({1, 1, 0, 1, 1, 0}, {3, 2});
  for (const Device dev : kernel_devices()) {
    check_against_cpu(
        dev, {logits, targets, weights},
        [](const auto& in) { return cross_entropy(in[0], in[1], in[2]); }, 1e-6, 32,
        "cross_entropy float mask");
    for (DType dt : {DType::i32, DType::i64}) {
      INFO(name(dt));
      check_against_cpu(
          dev, {logits, targets.to(dt), ones.to(dt)},
          [](const auto& in) { return cross_entropy(in[0], in[1], in[2]); }, 1e-6, 32,
          "cross_entropy integer mask");
    }
    // The loss stays on the device, and a bad target there (no host check) makes it NaN.
    const Tensor bad = cross_entropy(
        logits.to(dev), Tensor::from_ints({9, 0, 4, 2, 1, 7}, {3, 2}).to(dev), weights.to(dev));
    CHECK(bad.device() == dev);
    CHECK(std::isnan(bad.item()));
    CHECK(std::isnan(
        cross_entropy(logits.to(dev), targets.to(dev), mul(weights, -1.0).to(dev)).item()));
  }
}

TEST_CASE("device argmax: the first maximum, NaN first, as i64 on the device") {
  Generator gen(13);
  std::vector<double> v = Tensor::randn({4, 3, 7}, gen).to_vector();
  v[3] = v[5] = 10;     // a tie in row 0: the first wins
  v[8] = std::nan("");  // a NaN in row 1
  v[21 + 4] = v[21 + 6] = std::nan("");
  const Tensor x = Tensor::from(v, {4, 3, 7}, DType::f32);
  for (const Device dev : kernel_devices()) {
    for (int64_t axis : {-1, 1, 0}) {
      INFO("axis " << axis);
      const Tensor a = argmax(x.to(dev), axis);
      CHECK(a.device() == dev);
      CHECK(a.dtype() == DType::i64);
      const Tensor ref = argmax(x, axis);
      REQUIRE(a.shape() == ref.shape());
      CHECK(a.cpu().to_vector() == ref.to_vector());
    }
    check_error([&] { (void)argmax(x.to(DType::f64).to(dev)); },
                {"argmax", "x is f64", "expected f32"});
  }
}

TEST_CASE("device nn ops: bad input names the op and the argument") {
  Generator gen(14);
  const Tensor x = Tensor::randn({2, 4}, gen);
  for (const Device dev : kernel_devices()) {
    const Tensor xd = x.to(dev);
    // Mixed devices.
    check_error([&] { (void)layer_norm(xd, Tensor::ones({4}), Tensor()); },
                {"layer_norm", "gamma is on cpu", "x is on", "expected one device"});
    check_error([&] { (void)layer_norm(x, Tensor::ones({4}).to(dev), Tensor()); },
                {"layer_norm", "gamma is on", "x is on cpu", "expected one device"});
    check_error([&] { (void)rms_norm(xd, Tensor::ones({4})); },
                {"rms_norm", "gamma is on cpu", "expected one device"});
    check_error(
        [&] {
          (void)cross_entropy(xd, Tensor::from_ints({1, 2}, {2}));
        },
        {"cross_entropy", "targets is on cpu", "logits is on", "expected one device"});
    check_error(
        [&] {
          (void)cross_entropy(xd, Tensor::from_ints({1, 2}, {2}).to(dev), Tensor::ones({2}));
        },
        {"cross_entropy", "mask is on cpu", "expected one device"});
    // f64 on the device.
    const Tensor x64 = x.to(DType::f64).to(dev);
    check_error([&] { (void)layer_norm(x64, Tensor(), Tensor()); },
                {"layer_norm", "x is f64", "expected f32"});
    check_error([&] { (void)rms_norm(x64, Tensor()); }, {"rms_norm", "x is f64", "expected f32"});
    check_error([&] { (void)srms_norm(x64); }, {"rms_norm", "x is f64", "expected f32"});
    check_error([&] { (void)softmax(x64); }, {"softmax", "x is f64", "expected f32"});
    check_error([&] { (void)log_softmax(x64); }, {"log_softmax", "x is f64", "expected f32"});
    check_error(
        [&] {
          (void)cross_entropy(x64, Tensor::from_ints({1, 2}, {2}).to(dev));
        },
        {"cross_entropy", "logits is f64", "expected f32"});
    check_error(
        [&] {
          (void)cross_entropy(xd, Tensor::from_ints({1, 2}, {2}).to(dev),
                              Tensor::ones({2}, DType::f64).to(dev));
        },
        {"cross_entropy", "mask is f64", "logits is f32", "expected one dtype"});
    // Integer logits, float targets, wrong shapes.
    const Tensor int_logits = Tensor::from_ints({1, 2, 3, 4}, {2, 2}).to(dev);
    check_error(
        [&] {
          (void)cross_entropy(int_logits, Tensor::from_ints({1, 0}, {2}).to(dev));
        },
        {"cross_entropy", "logits is i64", "expected f32"});
    check_error([&] { (void)softmax(int_logits); }, {"softmax", "x is i64", "expected f32"});
    check_error(
        [&] {
          (void)cross_entropy(xd, Tensor::from({1.0, 0.0}).to(dev));
        },
        {"cross_entropy", "targets is f32", "integer tensor"});
    check_error(
        [&] {
          (void)cross_entropy(xd, Tensor::from_ints({1, 0, 1}, {3}).to(dev));
        },
        {"cross_entropy", "targets has shape [3]", "expected [2]", "matching logits"});
    check_error(
        [&] {
          (void)cross_entropy(xd, Tensor::from_ints({1, 0}, {2}).to(dev),
                              Tensor::ones({3}).to(dev));
        },
        {"cross_entropy", "mask has shape [3]", "expected [2]"});
    check_error([&] { (void)layer_norm(xd, Tensor::ones({3}).to(dev), Tensor()); },
                {"layer_norm", "gamma has shape [3]", "expected [C] = [4]"});
  }
}

TEST_CASE("device embedding from Indices, and initialisers on a device, as on the CPU") {
  for (const Device dev : kernel_devices()) {
    INFO(dev);
    const Tensor weight = cotangent({5, 3}, 8);
    const Indices ids(Shape{2, 2}, {4, 0, 2, 4});
    check_close(embedding(weight.to(dev), ids), embedding(weight, ids), 0, 0, "embedding");
    Tensor on_cpu = Tensor::zeros({4, 6}), on_dev = Tensor::zeros({4, 6}).to(dev);
    Generator g_cpu(3), g_dev(3);
    uniform_(on_cpu, -0.5, 2.0, g_cpu);
    uniform_(on_dev, -0.5, 2.0, g_dev);
    REQUIRE(on_dev.device() == dev);
    check_close(on_dev, on_cpu, 0, 0, "uniform_");
    normal_(on_cpu, 1.0, 0.25, g_cpu);
    normal_(on_dev, 1.0, 0.25, g_dev);
    check_close(on_dev, on_cpu, 0, 0, "normal_");
  }
}

TEST_CASE("device logistic_mixture_nll: values and gradients, i32 and i64 targets") {
  Generator gen(23);
  const int64_t K = 3;
  std::vector<double> v(static_cast<size_t>(2 * 4 * 3 * K));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = (i / K) % 3 == 2 ? -3 * gen.uniform() : gen.normal() * 0.7;
  const Tensor params = Tensor::from(v, Shape{2, 4, 3 * K}, DType::f64).to(DType::f32);
  const std::vector<int64_t> values = {0, 255, 17, 128, 240, 3, 99, 1};
  for (const Device dev : kernel_devices())
    for (DType dt : {DType::i32, DType::i64}) {
      INFO(name(dt));
      check_against_cpu(
          dev, {params, Tensor::from_ints(values, {2, 4}, dt)},
          [](const auto& in) { return logistic_mixture_nll(in[0], in[1]); }, 1e-5, 64,
          "logistic_mixture_nll");
    }
}
