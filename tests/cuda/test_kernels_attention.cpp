// The attention kernels (cuda/kernels/attention.h) through the ops' device branches, against
// the CPU ops in f64, on every device of kernel_devices(): forward, and backward with a random
// cotangent. The chunked sweep is checked for N below one chunk, exactly one, and not a
// multiple of it (kernels::kChunk = 64), with several heads and per-head decays.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "kernel_devices.h"
#include "polyak/cuda/kernels/attention.h"
#include "polyak/ops/attention/decayed_attention.h"
#include "polyak/ops/attention/linear_attention.h"
#include "polyak/ops/attention/momentum_attention.h"
#include "polyak/ops/attention/norm_attention.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

using AttentionOp = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;

struct OpCase {
  std::string name;
  AttentionOp op;
};

// q, k feature-mapped (positive, so that normalisers stay away from 0), v and dy signed.
struct Inputs {
  Tensor q, k, v, dy;
};

Inputs make_inputs(int64_t B, int64_t H, int64_t N, int64_t M, int64_t D, int64_t Dv,
                   uint64_t seed) {
  Generator gen(seed);
  Inputs in;
  in.q = add(Tensor::rand({B, H, N, D}, gen), Tensor::scalar(0.1));
  in.k = add(Tensor::rand({B, H, M, D}, gen), Tensor::scalar(0.1));
  in.v = Tensor::randn({B, H, M, Dv}, gen);
  in.dy = cotangent({B, H, N, Dv}, seed + 1);
  return in;
}

Tensor leaf(const Tensor& x, DType dtype, Device device) {
  return x.to(dtype).to(device).requires_grad_();
}

// The op on `dev` (f32) against the op on the CPU (f64): y, dq, dk, dv.
void check_op(const OpCase& c, const Inputs& in, Device dev) {
  INFO(c.name << ", N = " << in.q.size(2));
  Tensor qc = leaf(in.q, DType::f64, Device::cpu()), kc = leaf(in.k, DType::f64, Device::cpu()),
         vc = leaf(in.v, DType::f64, Device::cpu());
  const Tensor yc = c.op(qc, kc, vc);
  yc.backward(in.dy.to(DType::f64));

  Tensor qd = leaf(in.q, DType::f32, dev), kd = leaf(in.k, DType::f32, dev),
         vd = leaf(in.v, DType::f32, dev);
  const Tensor yd = c.op(qd, kd, vd);
  REQUIRE(yd.device() == dev);
  yd.backward(in.dy.to(dev));
  REQUIRE(qd.grad().device() == dev);
  const int64_t n = in.k.size(2);
  check_sum_close(yd, yc, n, c.name + " y");
  check_sum_close(qd.grad(), qc.grad(), n, c.name + " dq");
  check_sum_close(kd.grad(), kc.grad(), n, c.name + " dk");
  check_sum_close(vd.grad(), vc.grad(), n, c.name + " dv");
}

std::vector<OpCase> causal_cases() {
  return {
      {"causal_dot_product", [](auto& q, auto& k, auto& v) { return causal_dot_product(q, k, v); }},
      {"causal_linear_attention",
       [](auto& q, auto& k, auto& v) { return causal_linear_attention(q, k, v, 1e-3); }},
      {"decayed_causal_dot_product (one decay)",
       [](auto& q, auto& k, auto& v) { return decayed_causal_dot_product(q, k, v, 0.9); }},
      {"decayed_causal_dot_product (decay 0)",
       [](auto& q, auto& k, auto& v) { return decayed_causal_dot_product(q, k, v, 0.0); }},
      {"decayed_causal_dot_product (per head)",
       [](auto& q, auto& k, auto& v) {
         return decayed_causal_dot_product(q, k, v, std::vector<double>{0.5, 0.97, 1.0});
       }},
      {"decayed_causal_linear_attention",
       [](auto& q, auto& k, auto& v) { return decayed_causal_linear_attention(q, k, v, 0.8); }},
      {"causal_momentum_attention (exact)",
       [](auto& q, auto& k, auto& v) { return causal_momentum_attention(q, k, v, 0.9, 0.5); }},
      {"causal_momentum_attention (beta 0)",
       [](auto& q, auto& k, auto& v) { return causal_momentum_attention(q, k, v, 0.0, 1.5); }},
      {"causal_momentum_attention (reference)",
       [](auto& q, auto& k, auto& v) {
         return causal_momentum_attention(q, k, v, 0.6, 1.2, 1e-6, MomentumWeighting::reference);
       }},
  };
}

}  // namespace

TEST_CASE("device causal sweeps: every causal form against the CPU, forward and backward") {
  const int64_t N_chunk = kernels::kChunk;
  for (const Device dev : kernel_devices()) {
    for (const int64_t N : {int64_t{5}, N_chunk, 2 * N_chunk + 22}) {
      const Inputs in = make_inputs(2, 3, N, N, 5, 3, static_cast<uint64_t>(N));
      for (const OpCase& c : causal_cases()) check_op(c, in, dev);
    }
  }
}

TEST_CASE("device causal sweeps: bad input is checked on the host") {
  const Inputs in = make_inputs(1, 2, 4, 4, 3, 2, 9);
  for (const Device dev : kernel_devices()) {
    check_error([&] { (void)causal_dot_product(in.q.to(dev), in.k, in.v.to(dev)); },
                {"causal_dot_product", "k is on cpu", "q is on", "expected one device"});
    check_error(
        [&] {
          (void)causal_linear_attention(in.q.to(DType::f64).to(dev), in.k.to(DType::f64).to(dev),
                                        in.v.to(DType::f64).to(dev));
        },
        {"causal_linear_attention", "q is f64", "expected f32"});
    check_error(
        [&] {
          (void)decayed_causal_dot_product(in.q.to(dev), in.k.to(dev), in.v.to(dev),
                                           std::vector<double>{0.5});
        },
        {"decayed_causal_dot_product", "decays has 1 entries", "expected H = 2"});
    const Tensor short_v = Tensor::zeros({1, 2, 3, 2}, DType::f32, dev);
    check_error([&] { (void)causal_dot_product(in.q.to(dev), in.k.to(dev), short_v); },
                {"causal_dot_product", "v has shape [1,2,3,2]", "expected [B,H,N,Dv]"});
  }
}

TEST_CASE("device non-causal linear and momentum attention against the CPU") {
  const std::vector<OpCase> cases = {
      {"linear_attention",
       [](auto& q, auto& k, auto& v) { return linear_attention(q, k, v, 1e-3); }},
      {"momentum_attention",
       [](auto& q, auto& k, auto& v) { return momentum_attention(q, k, v, 0.9, 0.5); }},
      {"momentum_attention (lengths)",
       [](auto& q, auto& k, auto& v) {
         return momentum_attention(q, k, v, 0.7, 1.3, 1e-6, std::vector<int64_t>{9, 4});
       }},
  };
  for (const Device dev : kernel_devices()) {
    const Inputs in = make_inputs(2, 3, 7, 9, 5, 3, 31);
    for (const OpCase& c : cases) check_op(c, in, dev);
  }
}

namespace {

// Steps `steps` positions of a recurrent op on `dev` (f32, from undefined states) and on the
// CPU (f64), comparing y at every position and the states at the end.
using StepOp =
    std::function<Tensor(const Tensor&, const Tensor&, const Tensor&, std::vector<Tensor>&)>;

void check_steps(const std::string& name, const StepOp& step, size_t states, Device dev,
                 int64_t H = 3) {
  INFO(name);
  const int64_t B = 2, D = 4, Dv = 3, steps = 6;
  Generator gen(17);
  std::vector<Tensor> on_cpu(states), on_device(states);
  for (int64_t t = 0; t < steps; ++t) {
    const Tensor q = add(Tensor::rand({B, H, D}, gen), Tensor::scalar(0.1));
    const Tensor k = add(Tensor::rand({B, H, D}, gen), Tensor::scalar(0.1));
    const Tensor v = Tensor::randn({B, H, Dv}, gen);
    const Tensor yc = step(q.to(DType::f64), k.to(DType::f64), v.to(DType::f64), on_cpu);
    const Tensor yd = step(q.to(dev), k.to(dev), v.to(dev), on_device);
    REQUIRE(yd.device() == dev);
    check_sum_close(yd, yc, steps, name + " y");
  }
  for (size_t s = 0; s < states; ++s) {
    REQUIRE(on_device[s].device() == dev);
    check_sum_close(on_device[s], on_cpu[s], steps, name + " state");
  }
}

}  // namespace

TEST_CASE("device recurrent steps: linear, decayed and momentum attention against the CPU") {
  for (const Device dev : kernel_devices()) {
    check_steps(
        "linear_attention_step",
        [](auto& q, auto& k, auto& v, auto& st) {
          return linear_attention_step(q, k, v, st[0], st[1], 1e-3);
        },
        2, dev);
    check_steps(
        "causal_dot_product_step",
        [](auto& q, auto& k, auto& v, auto& st) { return causal_dot_product_step(q, k, v, st[0]); },
        1, dev);
    check_steps(
        "decayed_attention_step",
        [](auto& q, auto& k, auto& v, auto& st) {
          return decayed_attention_step(q, k, v, st[0], std::vector<double>{0.5, 0.9, 1.0});
        },
        1, dev);
    check_steps(
        "momentum_attention_step",
        [](auto& q, auto& k, auto& v, auto& st) {
          return momentum_attention_step(q, k, v, st[0], st[1], st[2], 0.8, 0.6);
        },
        3, dev);

    // A state elsewhere than q is an error naming the step and the state.
    Tensor s = Tensor::zeros({1, 2, 3, 2}), z;
    const Tensor q = Tensor::ones({1, 2, 3}).to(dev), v = Tensor::ones({1, 2, 2}).to(dev);
    check_error([&] { (void)linear_attention_step(q, q, v, s, z); },
                {"linear_attention_step", "s is on cpu", "q is on", "expected one device"});
  }
}

TEST_CASE("device causal sweeps: more heads than the kernels carry inline, and their steps") {
  // Up to kernels::HeadDecays::kInline heads' decays travel in the launch arguments; more are
  // uploaded. 40 distinct decays, so a wrong head shows.
  const int64_t H = kernels::HeadDecays::kInline + 8;
  std::vector<double> decays;
  for (int64_t h = 0; h < H; ++h) decays.push_back(0.5 + 0.5 * static_cast<double>(h) / H);
  const Inputs in = make_inputs(1, H, 9, 9, 3, 2, 31);
  const std::vector<OpCase> cases = {
      {"decayed_causal_dot_product (40 heads)",
       [&](auto& q, auto& k, auto& v) { return decayed_causal_dot_product(q, k, v, decays); }},
      {"causal_momentum_attention (40 heads)",
       [](auto& q, auto& k, auto& v) { return causal_momentum_attention(q, k, v, 0.7, 0.5); }},
  };
  for (const Device dev : kernel_devices()) {
    for (const OpCase& c : cases) check_op(c, in, dev);
    check_steps(
        "decayed_attention_step (40 heads)",
        [&](auto& q, auto& k, auto& v, auto& st) {
          return decayed_attention_step(q, k, v, st[0], decays);
        },
        1, dev, H);
  }
}
