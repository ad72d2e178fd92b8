// The optim kernels (cuda/kernels/optim.h) through the optimizers and clipping, against the
// same optimizers and clipping on the CPU, on every device of kernel_devices(): trajectories
// over several steps with random gradients, clipping above and below max_norm, zero and
// missing gradients, non-finite norms, and bad input.
#include <functional>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "kernel_devices.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

using Make = std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>;

template <class Opt, class Options>
std::pair<const char*, Make> make(const char* label, Options options) {
  return {label, [options](std::vector<Tensor> params) {
            return std::make_unique<Opt>(std::move(params), options);
          }};
}

// Every optimizer, with each branch of its options.
std::vector<std::pair<const char*, Make>> optimizers() {
  return {
      make<SGD>("SGD", SGD::Options{.lr = 0.05}),
      make<SGD>("SGD momentum, weight decay",
                SGD::Options{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.1}),
      make<SGD>("SGD nesterov",
                SGD::Options{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true}),
      make<SGD>("SGD dampening", SGD::Options{.lr = 0.05, .momentum = 0.8, .dampening = 0.3}),
      make<Adam>("Adam", Adam::Options{.lr = 1e-2}),
      make<Adam>("Adam L2", Adam::Options{.lr = 1e-2, .beta1 = 0.8, .weight_decay = 0.1}),
      make<AdamW>("AdamW", AdamW::Options{.lr = 1e-2, .weight_decay = 0.05}),
      make<RAdam>("RAdam", RAdam::Options{.lr = 1e-2, .weight_decay = 0.01}),
      make<RAdam>(
          "RAdam L2",
          RAdam::Options{.lr = 1e-2, .weight_decay = 0.01, .decoupled_weight_decay = false}),
  };
}

const std::vector<Shape> kShapes = {Shape{4, 5}, Shape{7}, Shape{3, 2, 3}, Shape{2, 2}};

// Parameters of kShapes with random values, on `device`.
std::vector<Tensor> random_params(Device device, uint64_t seed) {
  std::vector<Tensor> params;
  for (size_t i = 0; i < kShapes.size(); ++i)
    params.push_back(cotangent(kShapes[i], seed + i).to(device).requires_grad_());
  return params;
}

}  // namespace

TEST_CASE("device optimizers: fused updates follow the CPU trajectory, no grad, no update") {
  for (const Device dev : kernel_devices()) {
    for (const auto& [label, make_opt] : optimizers()) {
      INFO(label);
      std::vector<Tensor> cpu = random_params(Device::cpu(), 10);
      std::vector<Tensor> on_dev = random_params(dev, 10);
      std::unique_ptr<Optimizer> cpu_opt = make_opt(cpu), dev_opt = make_opt(on_dev);
      fake::calls().clear();
      // Seven steps: RAdam's rectification starts at the sixth. The last parameter never
      // gets a gradient; the third misses the first two steps (its own step count is used).
      for (int s = 0; s < 7; ++s) {
        for (size_t i = 0; i + 1 < cpu.size(); ++i) {
          if (i == 2 && s < 2) continue;
          const Tensor g = mul(cotangent(kShapes[i], 100 + 10 * s + i), 0.5 + s);
          cpu[i].set_grad(g);
          on_dev[i].set_grad(g.to(dev));
        }
        cpu_opt->step();
        dev_opt->step();
      }
      if (dev.type == DeviceType::ext) {  // one fused kernel per update, no tensor-op passes
        CHECK(fake::calls()["binary"] == 0);
        CHECK(fake::calls()["binary_scalar"] == 0);
        CHECK(fake::calls()["unary"] == 0);
      }
      CHECK(dev_opt->parameter_step(2) == 5);
      CHECK(dev_opt->parameter_step(3) == 0);
      for (size_t i = 0; i < cpu.size(); ++i) {
        CAPTURE(i);
        CHECK(on_dev[i].device() == dev);
        check_close(on_dev[i], cpu[i], 1e-6, 16, "parameter");
        for (size_t k = 0; k < dev_opt->state_names().size(); ++k) {
          CHECK(dev_opt->state(i, k).device() == dev);
          check_close(dev_opt->state(i, k), cpu_opt->state(i, k), 1e-6, 16,
                      dev_opt->state_names()[k]);
        }
      }
      // The parameter without a gradient kept its values exactly.
      check_close(on_dev[3], random_params(Device::cpu(), 10)[3], 0, 0, "skipped parameter");
    }
  }
}

TEST_CASE("device optimizers: more parameters than one launch takes, empty ones among them") {
  for (const Device dev : kernel_devices()) {
    for (const auto& [label, make_opt] : optimizers()) {
      INFO(label);
      std::vector<Tensor> cpu, on_dev;
      for (int64_t i = 0; i < 75; ++i) {  // three launches of at most 32
        const Tensor values = cotangent(Shape{i % 7 == 3 ? 0 : 1 + (i * 5) % 11}, 300 + i);
        cpu.push_back(values.clone().requires_grad_());
        on_dev.push_back(values.to(dev).requires_grad_());
      }
      std::unique_ptr<Optimizer> cpu_opt = make_opt(cpu), dev_opt = make_opt(on_dev);
      for (int s = 0; s < 3; ++s) {
        for (size_t i = 0; i < cpu.size(); ++i) {
          const Tensor g = cotangent(cpu[i].shape(), 1000 + 100 * s + i);
          cpu[i].set_grad(g);
          on_dev[i].set_grad(g.to(dev));
        }
        cpu_opt->step();
        dev_opt->step();
      }
      for (size_t i = 0; i < cpu.size(); ++i) {
        CAPTURE(i);
        check_close(on_dev[i], cpu[i], 1e-6, 16, "parameter");
      }
    }
  }
}

TEST_CASE("device optimizers: bad input names the optimizer, the argument and the devices") {
  const Device dev = fake_device(0), other = fake_device(1);
  const Tensor a = Tensor::zeros(Shape{3}).to(dev).requires_grad_();
  const Tensor b = Tensor::zeros(Shape{3}).to(other).requires_grad_();
  const Tensor c = Tensor::zeros(Shape{3}).requires_grad_();
  check_error(
      [&] {
        Adam({a, b});
      },
      {"Adam", "parameter 1", "is on ext:1", "parameter 0", "is on ext:0", "one device"});
  check_error([&] { SGD({c, a}); }, {"SGD", "parameter 1", "is on ext:0", "is on cpu"});
  // A parameter in f64 on a device: its kernels compute in f32.
  const Tensor d = Tensor::zeros(Shape{3}, DType::f64).to(dev).requires_grad_();
  RAdam radam({d});
  d.set_grad(Tensor::ones(Shape{3}, DType::f64).to(dev));
  check_error([&] { radam.step(); }, {"RAdam.step", "param is f64", "expected f32"});
}

namespace {

// Gradients of kShapes, scaled by `size` (0: all zero), as CPU tensors.
std::vector<Tensor> random_grads(double size, uint64_t seed) {
  std::vector<Tensor> grads;
  for (size_t i = 0; i < kShapes.size(); ++i)
    grads.push_back(mul(cotangent(kShapes[i], seed + i), size * static_cast<double>(i + 1)));
  return grads;
}

// Parameters of kShapes on `device` whose gradients are `grads` (undefined: no gradient).
std::vector<Tensor> params_with(const std::vector<Tensor>& grads, Device device) {
  std::vector<Tensor> params;
  for (size_t i = 0; i < grads.size(); ++i) {
    params.push_back(Tensor::zeros(kShapes[i]).to(device).requires_grad_());
    if (grads[i].defined()) params.back().set_grad(grads[i].to(device));
  }
  return params;
}

}  // namespace

TEST_CASE("device clipping: norms reduced and gradients scaled on the device, as on the CPU") {
  for (const Device dev : kernel_devices()) {
    // size 0.05: every norm below max_norm 1; size 3: above it (the global one in any case).
    for (const double size : {0.0, 0.05, 3.0}) {
      CAPTURE(size);
      std::vector<Tensor> grads = random_grads(size, 40);
      grads[1] = Tensor();  // a parameter without a gradient is skipped
      for (const bool global : {true, false}) {
        CAPTURE(global);
        const std::vector<Tensor> cpu = params_with(grads, Device::cpu());
        const std::vector<Tensor> on_dev = params_with(grads, dev);
        const Tensor cpu_norms = global ? clip_grad_norm_tensor(cpu, 1.0)
                                        : clip_grad_norm_per_parameter_tensor(cpu, 1.0);
        const Tensor dev_norms = global ? clip_grad_norm_tensor(on_dev, 1.0)
                                        : clip_grad_norm_per_parameter_tensor(on_dev, 1.0);
        CHECK(dev_norms.device() == dev);
        CHECK(dev_norms.dtype() == DType::f32);
        CHECK(dev_norms.shape() == (global ? Shape{} : Shape{4}));
        CHECK(cpu_norms.dtype() == DType::f64);
        check_close(dev_norms, cpu_norms.to(DType::f32), 0, 2, "norms");
        if (size == 0) CHECK(dev_norms.to_vector()[0] == 0.0);
        CHECK(!on_dev[1].grad().defined());
        for (size_t i = 0; i < cpu.size(); ++i) {
          if (i == 1) continue;
          CAPTURE(i);
          CHECK(on_dev[i].grad().device() == dev);
          check_close(on_dev[i].grad(), cpu[i].grad(), 1e-7, 8, "clipped gradient");
        }
        // The double forms (a host read) agree with the tensor forms.
        const std::vector<Tensor> again = params_with(grads, dev);
        if (global) {
          CHECK(clip_grad_norm(again, 1.0) == dev_norms.item());
        } else {
          CHECK(clip_grad_norm_per_parameter(again, 1.0) == dev_norms.to_vector());
        }
        check_close(again[0].grad(), cpu[0].grad(), 1e-7, 8, "clipped gradient, double form");
      }
    }
  }
}

TEST_CASE("device clipping: more gradients than one launch takes, large and empty ones") {
  for (const Device dev : kernel_devices()) {
    for (const bool global : {true, false}) {
      CAPTURE(global);
      std::vector<Tensor> cpu, on_dev;
      for (int64_t i = 0; i < 70; ++i) {  // 9000 elements: three chunks of the reduction
        const Shape shape{i == 5 ? 9000 : i % 9 == 4 ? 0 : 1 + (i * 7) % 13};
        const Tensor g = mul(cotangent(shape, 500 + i), 0.1 * static_cast<double>(i % 4));
        cpu.push_back(Tensor::zeros(shape).requires_grad_());
        on_dev.push_back(Tensor::zeros(shape).to(dev).requires_grad_());
        if (i % 11 == 10) continue;  // no gradient
        cpu.back().set_grad(g);
        on_dev.back().set_grad(g.to(dev));
      }
      const Tensor cpu_norms =
          global ? clip_grad_norm_tensor(cpu, 0.5) : clip_grad_norm_per_parameter_tensor(cpu, 0.5);
      const Tensor dev_norms = global ? clip_grad_norm_tensor(on_dev, 0.5)
                                      : clip_grad_norm_per_parameter_tensor(on_dev, 0.5);
      check_close(dev_norms, cpu_norms.to(DType::f32), 0, 2, "norms");
      for (size_t i = 0; i < cpu.size(); ++i) {
        CAPTURE(i);
        CHECK(on_dev[i].grad().defined() == cpu[i].grad().defined());
        if (cpu[i].grad().defined())
          check_close(on_dev[i].grad(), cpu[i].grad(), 1e-7, 8, "clipped gradient");
      }
    }
  }
}

TEST_CASE("device clipping: a non-finite norm leaves the gradients unchanged") {
  const double inf = std::numeric_limits<double>::infinity();
  for (const Device dev : kernel_devices()) {
    std::vector<Tensor> grads = random_grads(3.0, 60);
    std::vector<double> g0 = grads[0].to_vector(), g2 = grads[2].to_vector();
    g0[1] = inf;
    g2[0] = std::nan("");
    grads[0] = Tensor::from(g0, kShapes[0]);
    grads[2] = Tensor::from(g2, kShapes[2]);
    const std::vector<Tensor> global = params_with(grads, dev);
    CHECK(std::isnan(clip_grad_norm_tensor(global, 1.0).item()));  // inf² + NaN
    for (size_t i = 0; i < grads.size(); ++i) {
      if (i != 2) CHECK(global[i].grad().cpu().to_vector() == grads[i].to_vector());
    }
    CHECK(global[2].grad().cpu().to_vector()[1] == g2[1]);  // NaN ≠ NaN: element 1 only

    const std::vector<Tensor> each = params_with(grads, dev);
    const std::vector<double> norms = clip_grad_norm_per_parameter_tensor(each, 1.0).to_vector();
    CHECK(norms[0] == inf);
    CHECK(std::isnan(norms[2]));
    CHECK(each[0].grad().cpu().to_vector() == grads[0].to_vector());
    CHECK(each[2].grad().cpu().to_vector()[1] == g2[1]);
    check_close(each[3].grad(), mul(grads[3], 1.0 / (norms[3] + 1e-6)), 1e-7, 8, "finite norm");
  }
}

TEST_CASE("device clipping: bad input names the function, the gradients and the devices") {
  const Device dev = fake_device(0), other = fake_device(1);
  std::vector<Tensor> params = params_with(random_grads(1, 70), dev);
  params[2] = Tensor::zeros(kShapes[2]).to(other).requires_grad_();
  params[2].set_grad(Tensor::ones(kShapes[2]).to(other));
  check_error([&] { (void)clip_grad_norm_tensor(params, 1.0); },
              {"clip_grad_norm_tensor", "gradient of parameter 2 is on ext:1",
               "gradient of parameter 0 is on ext:0", "one device"});
  params[2] = Tensor::zeros(kShapes[2]).requires_grad_();
  params[2].set_grad(Tensor::ones(kShapes[2]));
  check_error([&] { clip_grad_norm_per_parameter(params, 1.0); },
              {"clip_grad_norm_per_parameter", "parameter 2 is on cpu", "ext:0"});
  params[2] = Tensor::zeros(kShapes[2], DType::f64).to(dev).requires_grad_();
  params[2].set_grad(Tensor::ones(kShapes[2], DType::f64).to(dev));
  check_error([&] { clip_grad_norm(params, 1.0); },
              {"clip_grad_norm", "gradient of parameter 2 is f64", "expected f32"});
  check_error([&] { (void)clip_grad_norm_tensor(params, 0); },
              {"clip_grad_norm_tensor", "max_norm"});
}
