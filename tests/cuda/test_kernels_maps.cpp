// The feature maps (elu + 1, FAVOR+) and general broadcasting (binary ops, sum_to) on every
// device of kernel_devices(), through the ops' device branches, against the CPU ops: forward,
// and backward with a random cotangent into every input.
#include <functional>
#include <string>
#include <vector>

#include "kernel_devices.h"
#include "polyak/nn/performer.h"
#include "polyak/ops/attention/favor.h"
#include "polyak/ops/attention/feature_maps.h"
#include "polyak/ops/elementwise.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

using Op2 = std::function<Tensor(const Tensor&, const Tensor&)>;

struct Grads {
  Tensor y, da, db;
};

// fn(a, b) and both inputs' gradients for the cotangent dy (b undefined: fn of a alone).
Grads forward_backward(const Op2& fn, const Tensor& a, const Tensor& b, const Tensor& dy) {
  Tensor la = a.detach().clone().requires_grad_();
  Tensor lb = b.defined() ? b.detach().clone().requires_grad_() : Tensor();
  Tensor y = fn(la, lb);
  y.backward(dy);
  return {y, la.grad(), lb.defined() ? lb.grad() : Tensor()};
}

// fn on every device against the CPU: |device − cpu| ≤ atol + k·eps·|cpu|.
void check_matches_cpu(const std::string& name, const Op2& fn, const Tensor& a, const Tensor& b,
                       double atol, double k) {
  INFO(name << ": a " << a.shape() << (b.defined() ? ", b " + b.shape().str() : ""));
  const Tensor dy = cotangent(fn(a, b).shape(), 31);
  const Grads cpu = forward_backward(fn, a, b, dy);
  for (const Device dev : kernel_devices()) {
    const Grads d = forward_backward(fn, a.to(dev), b.defined() ? b.to(dev) : Tensor(), dy.to(dev));
    REQUIRE(d.y.device() == dev);
    REQUIRE(d.da.device() == dev);
    check_close(d.y, cpu.y, atol, k, name + " forward");
    check_close(d.da, cpu.da, atol, k, name + " da");
    if (b.defined()) {
      REQUIRE(d.db.device() == dev);
      check_close(d.db, cpu.db, atol, k, name + " db");
    }
  }
}

Tensor random(const Shape& shape, uint64_t seed, double scale = 1) {
  Generator gen(seed);
  return Tensor::randn(shape, gen) * scale;
}

// Away from 0, either sign: a safe divisor.
Tensor divisor(const Shape& shape, uint64_t seed) {
  const Tensor r = random(shape, seed);
  return r + div(r, abs(r)) * 0.5;
}

}  // namespace

TEST_CASE("device elu feature map: forward and backward on both sides of 0") {
  const Op2 elu = [](const Tensor& x, const Tensor&) { return elu_feature_map(x); };
  for (const Shape& s : {Shape{7}, Shape{2, 3, 5, 4}, Shape{0, 3}})
    check_matches_cpu("elu_feature_map", elu, random(s, 1, 3), Tensor(), 1e-6, 8);
}

TEST_CASE("device elu feature map into heads: [B, N, H·D] → [B, H, N, D] and back") {
  for (const std::vector<int64_t>& bnhd :
       std::vector<std::vector<int64_t>>{{2, 5, 3, 4}, {1, 1, 1, 1}, {3, 2, 4, 1}, {1, 7, 1, 6}}) {
    const int64_t B = bnhd[0], N = bnhd[1], H = bnhd[2], D = bnhd[3];
    const Op2 map = [H](const Tensor& x, const Tensor&) { return elu_feature_map_heads(x, H); };
    check_matches_cpu("elu_feature_map_heads H = " + std::to_string(H), map,
                      random({B, N, H * D}, 2, 3), Tensor(), 1e-6, 8);
  }
}

TEST_CASE("device FAVOR+ feature map: forward and dx, one and several blocks of features") {
  // (x's shape, m): m < D, m = D, m > D (two blocks), a single row.
  const std::vector<std::pair<Shape, int64_t>> cases = {
      {{2, 3, 5, 8}, 6}, {{4, 8}, 8}, {{2, 9, 4}, 11}, {{1, 16}, 40}};
  for (const auto& [shape, m] : cases) {
    Generator gen(3);
    const Tensor omega = orthogonal_random_features(m, shape[-1], gen);
    for (const Device dev : kernel_devices()) {
      INFO("favor x " << shape << ", m = " << m);
      const Tensor x = random(shape, 4);
      const Tensor dy = cotangent(favor_feature_map(x, omega).shape(), 5);
      const Grads cpu = forward_backward(
          [&](const Tensor& a, const Tensor&) { return favor_feature_map(a, omega); }, x, Tensor(),
          dy);
      const Tensor omega_dev = omega.to(dev);
      const Grads d = forward_backward(
          [&](const Tensor& a, const Tensor&) { return favor_feature_map(a, omega_dev); },
          x.to(dev), Tensor(), dy.to(dev));
      REQUIRE(d.da.device() == dev);
      check_close(d.y, cpu.y, 1e-6, 64, "favor forward");
      check_close(d.da, cpu.da, 1e-5, 256, "favor dx");
    }
  }
}

TEST_CASE("device Performer: Ω redrawn on the host equals the CPU's and stays on the device") {
  Generator g_cpu(8), g_dev(8);
  FavorFeatureMap on_cpu(8, 12, 2, g_cpu), on_dev(8, 12, 2, g_dev);
  const Device dev = kernel_devices().front();
  on_dev.to(dev);
  on_cpu.redraw();
  on_dev.redraw();
  REQUIRE(on_dev.omega.device() == dev);
  check_close(on_dev.omega, on_cpu.omega, 0, 0, "redrawn omega");
  const Tensor x = random({2, 3, 8}, 9);
  check_close(on_dev.forward(x.to(dev)), on_cpu.forward(x).detach(), 1e-6, 64, "map after redraw");
}

TEST_CASE("device broadcasting binary ops: every pattern, forward and both gradients") {
  // (a, b): same shape, scalar, bias row (the fast paths), then the general kernel: a middle
  // axis, both sides broadcasting, rank mismatch either way, size-1 axes everywhere,
  // alternating axes, an empty axis.
  const std::vector<std::pair<Shape, Shape>> patterns = {
      {{2, 3, 4}, {2, 3, 4}},
      {{2, 3, 4}, {}},
      {{2, 3, 4}, {4}},
      {{}, {2, 3, 4}},
      {{2, 3, 4}, {3, 1}},
      {{2, 1, 4}, {3, 1}},
      {{4}, {2, 3, 4}},
      {{3, 1}, {2, 3, 4}},
      {{2, 3, 1, 5}, {1, 3, 4, 1}},
      {{1, 1}, {1}},
      {{1, 3, 1}, {2, 1, 1, 1}},
      {{5, 1, 3, 1, 2}, {1, 4, 1, 6, 1}},
      {{2, 1, 3, 1, 2, 1, 2}, {1, 2, 1, 3, 1, 2, 1}},
      {{0, 3}, {1, 3}},
      {{2, 1}, {1, 3}},
  };
  const std::vector<std::pair<std::string, Op2>> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }},
  };
  uint64_t seed = 10;
  for (const auto& [sa, sb] : patterns)
    for (const auto& [name, op] : ops) {
      const Tensor a = random(sa, ++seed);
      const Tensor b = name == "div" ? divisor(sb, ++seed) : random(sb, ++seed);
      check_matches_cpu(name, op, a, b, 1e-5, 64);
    }
}

TEST_CASE("device sum_to: any reduced axes, forward and backward") {
  const Shape g{3, 4, 5};
  for (const Shape& to : {Shape{1, 4, 1}, Shape{4, 1}, Shape{3, 1, 5}, Shape{3, 4, 1}, Shape{5},
                          Shape{4, 5}, Shape{1, 1, 1}, Shape{}, Shape{3, 4, 5}, Shape{1, 5}}) {
    const Op2 fn = [to](const Tensor& x, const Tensor&) { return sum_to(x, to); };
    check_matches_cpu("sum_to " + to.str(), fn, random(g, 12), Tensor(), 1e-5, 64);
  }
  // [C, 1] from [B, C, N], a long summed walk, and alternating kept and summed axes.
  check_matches_cpu(
      "sum_to [5, 1]",
      [](const Tensor& x, const Tensor&) {
        return sum_to(x, {5, 1});
      },
      random({3, 5, 4}, 13), Tensor(), 1e-5, 64);
  check_matches_cpu(
      "sum_to [1, 7, 1]",
      [](const Tensor& x, const Tensor&) {
        return sum_to(x, {1, 7, 1});
      },
      random({40, 7, 33}, 14), Tensor(), 1e-5, 256);
  check_matches_cpu(
      "sum_to [2, 1, 3, 1]",
      [](const Tensor& x, const Tensor&) {
        return sum_to(x, {2, 1, 3, 1});
      },
      random({4, 2, 5, 3, 6}, 15), Tensor(), 1e-5, 64);
  check_matches_cpu(
      "sum_to [1, 3] of an empty axis",
      [](const Tensor& x, const Tensor&) {
        return sum_to(x, {1, 3});
      },
      random({0, 3}, 16), Tensor(), 0, 0);
}

TEST_CASE("device maps and broadcasting: bad input names the op, the argument and the devices") {
  const Tensor x = random({2, 3, 8}, 17);
  Generator gen(18);
  const Tensor omega = orthogonal_random_features(4, 8, gen);
  for (const Device dev : kernel_devices()) {
    INFO(dev);
    const Tensor xd = x.to(dev), x64 = x.to(DType::f64).to(dev);
    check_error([&] { (void)elu_feature_map(x64); },
                {"elu_feature_map", "x is f64", "expected f32"});
    check_error([&] { (void)elu_feature_map_heads(x64, 2); },
                {"elu_feature_map_heads", "x is f64", "expected f32"});
    check_error([&] { (void)favor_feature_map(x64, omega.to(DType::f64).to(dev)); },
                {"favor_feature_map", "x is f64", "expected f32"});
    check_error([&] { (void)favor_feature_map(xd, omega); },
                {"favor_feature_map", "omega is on cpu", "x is on", "expected one device"});
    check_error(
        [&] {
          (void)favor_feature_map(xd, omega.to(dev).reshape({8, 4}));
        },
        {"favor_feature_map", "x has shape [2,3,8]", "expected [..., D]"});
    check_error([&] { (void)elu_feature_map_heads(xd, 3); },
                {"elu_feature_map_heads", "not divisible by heads = 3"});
    check_error([&] { (void)add(xd, x); },
                {"add", "b is on cpu", "a is on", "expected one device"});
    check_error([&] { (void)mul(xd, x.to(fake_device(1))); },
                {"mul", "b is on ext:1", "a is on", "expected one device"});
    check_error([&] { (void)sub(x64, x64); }, {"sub", "a is f64", "expected f32"});
    check_error(
        [&] {
          (void)div(xd, random({3, 2}, 19).to(dev));
        },
        {"div", "does not broadcast", "[3,2]", "[2,3,8]"});
    check_error(
        [&] {
          (void)sum_to(xd, {4, 1});
        },
        {"sum_to", "[4,1]", "does not broadcast", "[2,3,8]"});
    check_error([&] { (void)sum_to(x64, {3, 1}); }, {"sum_to", "grad is f64", "expected f32"});
  }
}
