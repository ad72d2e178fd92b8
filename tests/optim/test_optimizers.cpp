// SGD, Adam, AdamW and the Optimizer base: updates against scalar references and numbers
// worked by hand, state access, skipping, validation.
#include <cmath>

#include <functional>
#include <memory>

#include "fake_device.h"
#include "optim/reference.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::RefAdam;
using polyak::testing::RefSGD;
using polyak::testing::test_gradient;
using polyak::testing::Vec;

namespace {

Tensor make_param(const Vec& values, DType dtype) {
  return Tensor::from(values, Shape{static_cast<int64_t>(values.size())}, dtype).requires_grad_();
}

// Runs `opt` on `p` and `ref` on a copy of its values in lockstep for `steps` steps,
// feeding both the same gradients, and compares the parameters after every step.
template <class Ref>
void run_lockstep(Optimizer& opt, const Tensor& p, Ref& ref, int steps, double tol) {
  Vec expected = p.to_vector();
  for (int s = 0; s < steps; ++s) {
    Vec g = test_gradient(expected, s);
    p.set_grad(Tensor::from(g, p.shape(), p.dtype()));
    opt.step();
    ref.step(expected, g);
    Vec got = p.to_vector();
    for (size_t i = 0; i < got.size(); ++i) {
      INFO("step " << s + 1 << ", element " << i);
      CHECK(got[i] == doctest::Approx(expected[i]).epsilon(tol).scale(1.0));
    }
  }
  CHECK(opt.step_count() == steps);
}

const Vec kStart = {0.8, -1.2, 0.05, 2.5, -0.3};

}  // namespace

TEST_CASE("SGD: plain, momentum, dampening, nesterov, weight decay match the reference") {
  struct Case {
    const char* name;
    SGD::Options o;
  };
  std::vector<Case> cases = {
      {"plain", {.lr = 0.1}},
      {"momentum", {.lr = 0.05, .momentum = 0.9}},
      {"dampening", {.lr = 0.05, .momentum = 0.8, .dampening = 0.3}},
      {"nesterov", {.lr = 0.05, .momentum = 0.9, .nesterov = true}},
      {"weight decay", {.lr = 0.05, .momentum = 0.5, .weight_decay = 0.1}},
  };
  for (const Case& c : cases) {
    for (DType dt : {DType::f64, DType::f32}) {
      SUBCASE((std::string(c.name) + " " + name(dt)).c_str()) {
        Tensor p = make_param(kStart, dt);
        SGD opt({p}, c.o);
        RefSGD ref{c.o.lr, c.o.momentum, c.o.dampening, c.o.weight_decay, c.o.nesterov, {}};
        run_lockstep(opt, p, ref, 6, dt == DType::f64 ? 1e-12 : 2e-6);
      }
    }
  }
}

TEST_CASE("SGD with momentum: three steps worked by hand") {
  // p0 = 1, g = 0.5 every step, lr = 0.1, μ = 0.9:
  //   b1 = 0.5                    p1 = 1     − 0.1·0.5   = 0.95
  //   b2 = 0.9·0.5  + 0.5 = 0.95  p2 = 0.95  − 0.1·0.95  = 0.855
  //   b3 = 0.9·0.95 + 0.5 = 1.355 p3 = 0.855 − 0.1·1.355 = 0.7195
  Tensor p = make_param({1.0}, DType::f64);
  SGD opt({p}, {.lr = 0.1, .momentum = 0.9});
  const double expected[] = {0.95, 0.855, 0.7195};
  for (double e : expected) {
    p.set_grad(Tensor::from({0.5}, DType::f64));
    opt.step();
    CHECK(p.item() == doctest::Approx(e).epsilon(1e-14));
  }
  CHECK(opt.state(0, "momentum_buffer").item() == doctest::Approx(1.355).epsilon(1e-14));
}

TEST_CASE("Adam and AdamW match the reference (L2 and decoupled weight decay)") {
  struct Case {
    const char* name;
    double lr, beta1, beta2, eps, weight_decay;
    bool decoupled;
  };
  std::vector<Case> cases = {
      {"Adam", 1e-2, 0.9, 0.999, 1e-8, 0, false},
      {"Adam betas", 3e-2, 0.5, 0.9, 1e-6, 0, false},
      {"Adam L2", 1e-2, 0.9, 0.999, 1e-8, 0.1, false},
      {"AdamW", 1e-2, 0.9, 0.999, 1e-8, 0.1, true},
      {"AdamW betas", 3e-2, 0.8, 0.95, 1e-8, 0.5, true},
  };
  for (const Case& c : cases) {
    for (DType dt : {DType::f64, DType::f32}) {
      SUBCASE((std::string(c.name) + " " + name(dt)).c_str()) {
        Tensor p = make_param(kStart, dt);
        std::unique_ptr<Optimizer> opt;
        if (c.decoupled) {
          opt = std::make_unique<AdamW>(std::vector<Tensor>{p},
                                        AdamW::Options{.lr = c.lr,
                                                       .beta1 = c.beta1,
                                                       .beta2 = c.beta2,
                                                       .eps = c.eps,
                                                       .weight_decay = c.weight_decay});
        } else {
          opt = std::make_unique<Adam>(std::vector<Tensor>{p},
                                       Adam::Options{.lr = c.lr,
                                                     .beta1 = c.beta1,
                                                     .beta2 = c.beta2,
                                                     .eps = c.eps,
                                                     .weight_decay = c.weight_decay});
        }
        RefAdam ref{c.lr, c.beta1, c.beta2, c.eps, c.weight_decay, c.decoupled, {}, {}};
        run_lockstep(*opt, p, ref, 6, dt == DType::f64 ? 1e-12 : 2e-6);
        // The moments are the reference's.
        Vec m = opt->state(0, "exp_avg").to_vector(), v = opt->state(0, "exp_avg_sq").to_vector();
        for (size_t i = 0; i < m.size(); ++i) {
          CHECK(m[i] == doctest::Approx(ref.m[i]).epsilon(dt == DType::f64 ? 1e-12 : 1e-5));
          CHECK(v[i] == doctest::Approx(ref.v[i]).epsilon(dt == DType::f64 ? 1e-12 : 1e-5));
        }
      }
    }
  }
}

TEST_CASE("Adam and AdamW: first steps worked by hand") {
  // A constant gradient g gives m̂ = g and v̂ = g² at every t, so each Adam step moves p by
  // lr·g/(|g| + ε): three steps of lr = 0.1 from 1 with g = 0.5 end at 1 − 0.3·0.5/(0.5 + 1e-8).
  Tensor p = make_param({1.0}, DType::f64);
  Adam adam({p}, {.lr = 0.1});
  for (int s = 0; s < 3; ++s) {
    p.set_grad(Tensor::from({0.5}, DType::f64));
    adam.step();
  }
  CHECK(p.item() == doctest::Approx(1 - 0.3 * 0.5 / (0.5 + 1e-8)).epsilon(1e-14));

  // AdamW, λ = 0.5, lr = 0.1, one step: p = 2·(1 − 0.05) − 0.1·0.5/(0.5 + 1e-8) ≈ 1.8.
  Tensor q = make_param({2.0}, DType::f64);
  AdamW adamw({q}, {.lr = 0.1, .weight_decay = 0.5});
  q.set_grad(Tensor::from({0.5}, DType::f64));
  adamw.step();
  CHECK(q.item() == doctest::Approx(2 * 0.95 - 0.1 * 0.5 / (0.5 + 1e-8)).epsilon(1e-14));

  // Adam with L2, λ = 0.5: g' = 0.5 + 0.5·2 = 1.5, and the step is still lr·sign: 2 − 0.1.
  Tensor r = make_param({2.0}, DType::f64);
  Adam adam_l2({r}, {.lr = 0.1, .weight_decay = 0.5});
  r.set_grad(Tensor::from({0.5}, DType::f64));
  adam_l2.step();
  CHECK(r.item() == doctest::Approx(2 - 0.1 * 1.5 / (1.5 + 1e-8)).epsilon(1e-14));
}

TEST_CASE("Optimizer: parameters without a gradient are skipped") {
  Tensor a = make_param({1.0, 2.0}, DType::f64);
  Tensor b = make_param({3.0}, DType::f32);  // mixed dtypes are fine
  Adam opt({a, b}, {.lr = 0.1});
  a.set_grad(Tensor::from({0.5, -0.5}, Shape{2}, DType::f64));
  opt.step();
  CHECK(b.item() == 3.0);
  CHECK(opt.parameter_step(0) == 1);
  CHECK(opt.parameter_step(1) == 0);
  CHECK(opt.state(1, "exp_avg").item() == 0.0);
  // b's first update uses t = 1 (its own count), as PyTorch does.
  b.set_grad(Tensor::from({2.0}, DType::f32));
  opt.zero_grad();
  CHECK_FALSE(a.grad().defined());
  CHECK_FALSE(b.grad().defined());
  b.set_grad(Tensor::from({2.0}, DType::f32));
  opt.step();
  CHECK(b.item() == doctest::Approx(3.0 - 0.1).epsilon(1e-6));
  CHECK(opt.parameter_step(0) == 1);
  CHECK(opt.parameter_step(1) == 1);
  CHECK(opt.step_count() == 2);
}

TEST_CASE("Optimizer: a gradient of another dtype or shape is refused before any step") {
  Tensor p = make_param({1.0, 2.0}, DType::f32);
  SGD opt({p}, {.lr = 0.5});
  check_error(
      [&] {
        p.set_grad(Tensor::from({1.0, 1.0}, Shape{2}, DType::f64));
      },
      {"set_grad", "f64", "f32"});
  check_error(
      [&] {
        p.set_grad(Tensor::from({1.0, 1.0, 1.0}, Shape{3}, DType::f32));
      },
      {"set_grad", "shape"});
  p.set_grad(Tensor::from({1.0, 1.0}, Shape{2}, DType::f32));
  opt.step();
  CHECK(p.to_vector() == Vec{0.5, 1.5});
}

TEST_CASE("Optimizer: the update runs outside autograd and keeps the parameter a leaf") {
  Tensor p = make_param({1.0, 2.0}, DType::f64);
  Tensor storage_before = p;  // an alias
  RAdam opt({p});
  p.set_grad(Tensor::from({1.0, 1.0}, Shape{2}, DType::f64));
  opt.step();
  CHECK(p.is_leaf());
  CHECK(p.requires_grad());
  CHECK_FALSE(p.grad_fn());
  CHECK(storage_before.is_same(p));
  CHECK(storage_before.to_vector() == p.to_vector());
}

TEST_CASE("Optimizer: state can be saved and restored to continue exactly") {
  for (int which = 0; which < 4; ++which) {
    CAPTURE(which);
    auto make = [&](const Tensor& p) -> std::unique_ptr<Optimizer> {
      switch (which) {
        case 0:
          return std::make_unique<SGD>(std::vector<Tensor>{p},
                                       SGD::Options{.lr = 0.1, .momentum = 0.9});
        case 1:
          return std::make_unique<Adam>(std::vector<Tensor>{p}, Adam::Options{.lr = 0.1});
        case 2:
          return std::make_unique<AdamW>(std::vector<Tensor>{p}, AdamW::Options{.lr = 0.1});
        default:
          return std::make_unique<RAdam>(std::vector<Tensor>{p},
                                         RAdam::Options{.lr = 0.1, .weight_decay = 0.01});
      }
    };
    Tensor p = make_param(kStart, DType::f64);
    std::unique_ptr<Optimizer> opt = make(p);
    auto step = [](Optimizer& o, const Tensor& q, int s) {
      q.set_grad(Tensor::from(test_gradient(q.to_vector(), s), q.shape(), DType::f64));
      o.step();
    };
    for (int s = 0; s < 7; ++s) step(*opt, p, s);

    // "Checkpoint": the parameter, every state tensor, the step counters.
    Tensor q = make_param(p.to_vector(), DType::f64);
    std::unique_ptr<Optimizer> resumed = make(q);
    REQUIRE(resumed->state_names() == opt->state_names());
    for (size_t k = 0; k < opt->state_names().size(); ++k) {
      resumed->state(0, k).copy_(opt->state(0, k));
    }
    resumed->set_step_count(opt->step_count());
    resumed->set_parameter_step(0, opt->parameter_step(0));

    for (int s = 7; s < 10; ++s) {
      step(*opt, p, s);
      step(*resumed, q, s);
    }
    CHECK(p.to_vector() == q.to_vector());
  }
}

TEST_CASE("Optimizer: state names and lookups") {
  Tensor p = make_param({1.0}, DType::f64);
  CHECK(SGD({p}).state_names().empty());
  CHECK(SGD({p}, {.momentum = 0.9}).state_names() == std::vector<std::string>{"momentum_buffer"});
  Adam adam({p});
  CHECK(adam.state_names() == std::vector<std::string>{"exp_avg", "exp_avg_sq"});
  CHECK(adam.state(0, "exp_avg").shape() == p.shape());
  CHECK(adam.state(0, "exp_avg").dtype() == DType::f64);
  check_error([&] { adam.state(0, "momentum_buffer"); }, {"Adam", "momentum_buffer", "exp_avg"});
  check_error([&] { adam.state(1, "exp_avg"); }, {"Adam", "1", "out of range"});
  check_error([&] { adam.set_lr(-1); }, {"Adam", "lr", "-1"});
  adam.set_lr(0.25);
  CHECK(adam.lr() == 0.25);
}

TEST_CASE("Optimizer: bad options and bad parameter lists throw, naming class, option, value") {
  Tensor p = make_param({1.0, 2.0}, DType::f64);
  using testing::check_error;
  check_error([&] { SGD({p}, {.lr = -0.1}); }, {"SGD", "lr", "-0.1", "expected"});
  check_error([&] { SGD({p}, {.momentum = -0.5}); }, {"SGD", "momentum", "-0.5"});
  check_error([&] { SGD({p}, {.dampening = 1.5}); }, {"SGD", "dampening", "1.5"});
  check_error([&] { SGD({p}, {.weight_decay = -1}); }, {"SGD", "weight_decay", "-1"});
  check_error([&] { SGD({p}, {.nesterov = true}); }, {"SGD", "momentum", "nesterov"});
  check_error([&] { SGD({p}, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}); },
              {"SGD", "dampening", "0.1", "nesterov"});
  check_error([&] { Adam({p}, {.lr = -1e-3}); }, {"Adam", "lr", "-0.001"});
  check_error([&] { Adam({p}, {.beta1 = 1.0}); }, {"Adam", "beta1", "1", "[0, 1)"});
  check_error([&] { Adam({p}, {.beta2 = -0.1}); }, {"Adam", "beta2", "-0.1", "[0, 1)"});
  check_error([&] { Adam({p}, {.eps = 0}); }, {"Adam", "eps", "0", "> 0"});
  check_error([&] { AdamW({p}, {.beta1 = 1.5}); }, {"AdamW", "beta1", "1.5"});
  check_error([&] { AdamW({p}, {.weight_decay = -0.01}); }, {"AdamW", "weight_decay", "-0.01"});
  check_error([&] { RAdam({p}, {.lr = -1}); }, {"RAdam", "lr", "-1"});
  check_error([&] { RAdam({p}, {.beta2 = 1.0}); }, {"RAdam", "beta2", "1", "[0, 1)"});
  check_error([&] { RAdam({p}, {.eps = -1e-8}); }, {"RAdam", "eps", "-1e-08"});
  check_error([&] { RAdam({p}, {.lr = std::nan("")}); }, {"RAdam", "lr", "nan"});

  check_error([&] { RAdam(std::vector<Tensor>{}); }, {"RAdam", "empty"});
  check_error([&] { RAdam({p, p}); }, {"RAdam", "parameter 1", "same tensor as parameter 0"});
  check_error([&] { RAdam({Tensor()}); }, {"RAdam", "parameter 0", "undefined"});
  Tensor non_leaf = p.clone();
  check_error([&] { Adam({non_leaf}); }, {"Adam", "parameter 0", "not a leaf"});
}

namespace {

// Every optimizer, with its options' branches, on a parameter on `device` against the same
// optimizer on a CPU parameter: the state lives on the device, the update runs there (the
// parameter is never copied to the host) and the values agree to f32 rounding.
void check_updates_on(Device device) {
  using Make = std::function<std::unique_ptr<Optimizer>(const Tensor&)>;
  const std::vector<std::pair<const char*, Make>> cases = {
      {"SGD",
       [](const Tensor& p) {
         return std::make_unique<SGD>(std::vector<Tensor>{p}, SGD::Options{.lr = 0.05});
       }},
      {"SGD nesterov",
       [](const Tensor& p) {
         return std::make_unique<SGD>(
             std::vector<Tensor>{p},
             SGD::Options{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true});
       }},
      {"SGD dampening",
       [](const Tensor& p) {
         return std::make_unique<SGD>(std::vector<Tensor>{p},
                                      SGD::Options{.lr = 0.05, .momentum = 0.8, .dampening = 0.3});
       }},
      {"Adam",
       [](const Tensor& p) {
         return std::make_unique<Adam>(std::vector<Tensor>{p},
                                       Adam::Options{.lr = 1e-2, .weight_decay = 0.1});
       }},
      {"AdamW",
       [](const Tensor& p) {
         return std::make_unique<AdamW>(std::vector<Tensor>{p}, AdamW::Options{.lr = 1e-2});
       }},
      {"RAdam",
       [](const Tensor& p) {
         return std::make_unique<RAdam>(std::vector<Tensor>{p},
                                        RAdam::Options{.lr = 1e-2, .weight_decay = 0.01});
       }},
      {"RAdam L2",
       [](const Tensor& p) {
         return std::make_unique<RAdam>(
             std::vector<Tensor>{p},
             RAdam::Options{.lr = 1e-2, .weight_decay = 0.01, .decoupled_weight_decay = false});
       }},
  };
  for (const auto& [label, make] : cases) {
    CAPTURE(label);
    Tensor host = make_param(kStart, DType::f32);
    Tensor on_device = Tensor::from(kStart, Shape{5}, DType::f32).to(device).requires_grad_();
    std::unique_ptr<Optimizer> host_opt = make(host), device_opt = make(on_device);
    for (size_t k = 0; k < device_opt->state_names().size(); ++k) {
      CHECK(device_opt->state(0, k).device() == device);
      CHECK(device_opt->state(0, k).dtype() == DType::f32);
    }
    // Eight steps: RAdam's rectification starts at the sixth.
    for (int s = 0; s < 8; ++s) {
      Tensor g = Tensor::from(test_gradient(host.to_vector(), s), Shape{5}, DType::f32);
      host.set_grad(g);
      on_device.set_grad(g.to(device));
      clip_grad_norm_per_parameter({host}, 1.0);
      clip_grad_norm_per_parameter({on_device}, 1.0);
      CHECK(on_device.grad().device() == device);
      host_opt->step();
      device_opt->step();
    }
    CHECK(on_device.device() == device);
    CHECK(testing::max_abs_diff(host, on_device.cpu()) < 1e-6);
    for (size_t k = 0; k < device_opt->state_names().size(); ++k)
      CHECK(testing::max_abs_diff(host_opt->state(0, k), device_opt->state(0, k).cpu()) < 1e-6);
  }
}

}  // namespace

TEST_CASE("Optimizer: state on the parameter's device, updates there agree with the CPU") {
  const Device fake = testing::fake_device();
  testing::fake::calls().clear();
  check_updates_on(fake);
  // The updates and the clipping ran as the device's fused optim kernels, not as tensor ops.
  CHECK(testing::fake::calls()["binary"] == 0);
  CHECK(testing::fake::calls()["binary_scalar"] == 0);
  CHECK(testing::fake::calls()["unary"] == 0);
}

TEST_CASE("Optimizer and clipping: a parameter on a CUDA device is updated like one on the CPU") {
  if (!has_device_backend(DeviceType::cuda) ||
      device_backend(DeviceType::cuda, "test").device_count() == 0) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  check_updates_on(Device::cuda(0));
}
