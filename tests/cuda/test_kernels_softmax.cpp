// The softmax-family attention kernels (cuda/kernels/softmax_attention.h) through the ops'
// device branches, against the CPU ops in f64, on every device of kernel_devices(): tiled
// softmax attention (causal and not, M ≠ N, N not a multiple of the 64-row tile), block
// softmax attention, Linformer's sequence projection, forward and backward with random
// cotangents; the KV-cache steps against the CPU's steps and the parallel form.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "kernel_devices.h"
#include "polyak/cuda/kernels/attention.h"
#include "polyak/ops/attention/norm_attention.h"
#include "polyak/ops/attention/sequence_projection.h"
#include "polyak/ops/attention/softmax_attention.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

// f32 sums of n terms of order one; the floor of 1 covers gradients that vanish (one key's
// softmax is flat: dq = dk = 0).
void check_terms(const Tensor& on_device, const Tensor& cpu, int64_t n, const std::string& what) {
  check_sum_close(on_device, cpu, n, what, /*floor=*/1.0);
}

Tensor leaf(const Tensor& x, DType dtype, Device device) {
  return x.to(dtype).to(device).requires_grad_();
}

using AttentionOp = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;

// The op on `dev` (f32) against the op on the CPU (f64): y, dq, dk, dv, for q [B,H,N,D],
// k [B,H,M,D], v [B,H,M,Dv] drawn from `seed` (scores of order 1, so the softmax is not flat).
void check_attention(const std::string& name, const AttentionOp& op, int64_t N, int64_t M,
                     Device dev, uint64_t seed) {
  INFO(name << ", N = " << N << ", M = " << M);
  const int64_t B = 2, H = 2, D = 5, Dv = 3;
  Generator gen(seed);
  const Tensor q = Tensor::randn({B, H, N, D}, gen), k = Tensor::randn({B, H, M, D}, gen),
               v = Tensor::randn({B, H, M, Dv}, gen);
  const Tensor dy = cotangent({B, H, N, Dv}, seed + 1);

  Tensor qc = leaf(q, DType::f64, Device::cpu()), kc = leaf(k, DType::f64, Device::cpu()),
         vc = leaf(v, DType::f64, Device::cpu());
  const Tensor yc = op(qc, kc, vc);
  yc.backward(dy.to(DType::f64));

  Tensor qd = leaf(q, DType::f32, dev), kd = leaf(k, DType::f32, dev),
         vd = leaf(v, DType::f32, dev);
  const Tensor yd = op(qd, kd, vd);
  REQUIRE(yd.device() == dev);
  yd.backward(dy.to(dev));
  REQUIRE(qd.grad().device() == dev);
  check_terms(yd, yc, M, name + " y");
  check_terms(qd.grad(), qc.grad(), M, name + " dq");
  check_terms(kd.grad(), kc.grad(), N, name + " dk");
  check_terms(vd.grad(), vc.grad(), N, name + " dv");
}

}  // namespace

TEST_CASE("device softmax attention: tiled, causal and not, against the CPU") {
  REQUIRE(kernels::kSoftmaxRows == 64);  // the lengths below straddle the tile
  const AttentionOp causal = [](auto& q, auto& k, auto& v) {
    return softmax_attention(q, k, v, true);
  };
  const AttentionOp full = [](auto& q, auto& k, auto& v) {
    return softmax_attention(q, k, v, false);
  };
  for (const Device dev : kernel_devices()) {
    for (const int64_t N : {1, 63, 64, 65, 130})
      check_attention("causal softmax_attention", causal, N, N, dev, static_cast<uint64_t>(N));
    for (const auto& [N, M] :
         std::vector<std::pair<int64_t, int64_t>>{{1, 7}, {63, 65}, {130, 9}, {65, 130}, {12, 12}})
      check_attention("softmax_attention", full, N, M, dev, static_cast<uint64_t>(N + 7 * M));
  }
}

TEST_CASE("device block softmax attention: whole blocks and a partial last one") {
  for (const Device dev : kernel_devices()) {
    for (const auto& [N, block] :
         std::vector<std::pair<int64_t, int64_t>>{{130, 48}, {13, 4}, {12, 4}, {5, 8}})
      check_attention(
          "causal block_softmax_attention (block " + std::to_string(block) + ")",
          [block](auto& q, auto& k, auto& v) {
            return block_softmax_attention(q, k, v, block, true);
          },
          N, N, dev, static_cast<uint64_t>(N + block));
    for (const auto& [N, block] : std::vector<std::pair<int64_t, int64_t>>{{12, 4}, {70, 70}})
      check_attention(
          "block_softmax_attention (block " + std::to_string(block) + ")",
          [block](auto& q, auto& k, auto& v) {
            return block_softmax_attention(q, k, v, block, false);
          },
          N, N, dev, static_cast<uint64_t>(3 * N + block));
  }
}

TEST_CASE("device sequence projection: y, dx and de against the CPU") {
  const int64_t B = 2, H = 3, N = 7, D = 4, kp = 5, M = 9;
  Generator gen(41);
  const Tensor x = Tensor::randn({B, H, N, D}, gen), e = Tensor::randn({kp, M}, gen);
  const Tensor dy = cotangent({B, H, kp, D}, 42);
  for (const Device dev : kernel_devices()) {
    for (const bool x_grad : {true, false}) {
      for (const bool e_grad : {true, false}) {
        INFO("x needs a gradient: " << x_grad << ", e: " << e_grad);
        Tensor xc = x.to(DType::f64).requires_grad_(x_grad),
               ec = e.to(DType::f64).requires_grad_(e_grad);
        Tensor xd = x.to(dev).requires_grad_(x_grad), ed = e.to(dev).requires_grad_(e_grad);
        const Tensor yc = sequence_projection(xc, ec), yd = sequence_projection(xd, ed);
        REQUIRE(yd.device() == dev);
        check_terms(yd, yc, N, "sequence_projection y");
        if (!x_grad && !e_grad) continue;
        yc.backward(dy.to(DType::f64));
        yd.backward(dy.to(dev));
        if (x_grad) check_terms(xd.grad(), xc.grad(), kp, "sequence_projection dx");
        if (e_grad) check_terms(ed.grad(), ec.grad(), B * H * D, "sequence_projection de");
      }
    }
  }
}

namespace {

// `steps` KV-cache steps on `dev` (f32) and on the CPU (f64) from undefined caches; y at
// every step against the CPU's step, and all of them against the CPU's parallel form.
using StepOp =
    std::function<Tensor(const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, int64_t)>;
using ParallelOp = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;

void check_steps(const std::string& name, const StepOp& step, const ParallelOp& parallel,
                 int64_t steps, Device dev) {
  INFO(name);
  const int64_t B = 1, H = 2, D = 4, Dv = 3;
  Generator gen(23);
  const Tensor q = Tensor::randn({B, H, steps, D}, gen), k = Tensor::randn({B, H, steps, D}, gen),
               v = Tensor::randn({B, H, steps, Dv}, gen);
  const Tensor y_parallel = parallel(q.to(DType::f64), k.to(DType::f64), v.to(DType::f64));
  Tensor kc_cpu, vc_cpu, kc_dev, vc_dev;
  std::vector<Tensor> rows;
  for (int64_t t = 0; t < steps; ++t) {
    auto at = [&](const Tensor& x) { return slice(x, 2, t, t + 1).reshape({B, H, x.size(3)}); };
    const Tensor yc =
        step(at(q).to(DType::f64), at(k).to(DType::f64), at(v).to(DType::f64), kc_cpu, vc_cpu, t);
    const Tensor yd = step(at(q).to(dev), at(k).to(dev), at(v).to(dev), kc_dev, vc_dev, t);
    REQUIRE(yd.device() == dev);
    REQUIRE(kc_dev.device() == dev);
    check_terms(yd, yc, t + 1, name + " y at step " + std::to_string(t));
    rows.push_back(yd.reshape({B, H, 1, Dv}));
  }
  check_terms(concat(rows, 2), y_parallel, steps, name + " steps against the parallel form");
}

}  // namespace

TEST_CASE("device KV-cache steps: softmax (through the cache's growth) and block softmax") {
  for (const Device dev : kernel_devices()) {
    check_steps(
        "softmax_attention_step",
        [](auto& q, auto& k, auto& v, Tensor& kc, Tensor& vc, int64_t t) {
          int64_t length = t;
          const Tensor y = softmax_attention_step(q, k, v, kc, vc, length);
          CHECK(length == t + 1);
          return y;
        },
        [](auto& q, auto& k, auto& v) { return softmax_attention(q, k, v, true); }, 70, dev);
    check_steps(
        "block_softmax_attention_step",
        [](auto& q, auto& k, auto& v, Tensor& kc, Tensor& vc, int64_t t) {
          return block_softmax_attention_step(q, k, v, kc, vc, 4, t);
        },
        [](auto& q, auto& k, auto& v) { return block_softmax_attention(q, k, v, 4, true); }, 10,
        dev);
  }
}

TEST_CASE("device softmax family: bad input is checked on the host") {
  Generator gen(3);
  const Tensor q = Tensor::randn({1, 2, 4, 3}, gen), v = Tensor::randn({1, 2, 4, 2}, gen);
  for (const Device dev : kernel_devices()) {
    check_error([&] { (void)softmax_attention(q.to(dev), q, v.to(dev), true); },
                {"softmax_attention", "k is on cpu", "q is on", "expected one device"});
    check_error(
        [&] {
          const Tensor q64 = q.to(DType::f64).to(dev);
          (void)softmax_attention(q64, q64, v.to(DType::f64).to(dev), false);
        },
        {"softmax_attention", "q is f64", "expected f32"});
    check_error(
        [&] {
          const Tensor q64 = q.to(DType::f64).to(dev);
          (void)block_softmax_attention(q64, q64, v.to(DType::f64).to(dev), 2, true);
        },
        {"softmax_attention", "q is f64", "expected f32"});
    const Tensor qs = Tensor::ones({1, 2, 3}).to(dev), vs = Tensor::ones({1, 2, 2}).to(dev);
    Tensor kc = Tensor::zeros({1, 2, 8, 3}), vc = Tensor::zeros({1, 2, 8, 2}).to(dev);
    int64_t length = 0;
    check_error([&] { (void)softmax_attention_step(qs, qs, vs, kc, vc, length); },
                {"softmax_attention_step", "k_cache is on cpu", "q is on", "expected one device"});
    check_error(
        [&] {
          Tensor k4, v4;
          const Tensor q64 = Tensor::ones({1, 2, 3}, DType::f64).to(dev);
          const Tensor v64 = Tensor::ones({1, 2, 2}, DType::f64).to(dev);
          (void)softmax_attention_step(q64, q64, v64, k4, v4, length);
        },
        {"softmax_attention_step", "q is f64", "expected f32"});
    check_error(
        [&] { (void)block_softmax_attention_step(qs, qs, vs, kc, vc, 8, 1); },
        {"block_softmax_attention_step", "k_cache is on cpu", "q is on", "expected one device"});
    const Tensor x = Tensor::randn({1, 2, 4, 3}, gen), e = Tensor::randn({2, 5}, gen);
    check_error([&] { (void)sequence_projection(x.to(dev), e); },
                {"sequence_projection", "e is on cpu", "x is on", "expected one device"});
    check_error(
        [&] { (void)sequence_projection(x.to(DType::f64).to(dev), e.to(DType::f64).to(dev)); },
        {"sequence_projection", "x is f64", "expected f32"});
  }
}
