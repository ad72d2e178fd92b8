// Mega's kernels (cuda/kernels/mega.h) through the ops' device branches, against the CPU ops in
// f64, on every device of kernel_devices(): the EMA scan (both directions) and the chunked
// attention (both scores, whole and chunked), forward and backward with random cotangents, for
// N = 1, 63, 65, 130 (below, around and across the EMA segment and the chunks, with a partial
// last chunk); the recurrent steps against the CPU steps and the parallel forms; bad input.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernel_devices.h"
#include "polyak/ops/attention/ema.h"
#include "polyak/ops/attention/mega_attention.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/shape_ops.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

const std::vector<int64_t> kLengths = {1, 63, 65, 130};

Tensor leaf(const Tensor& x, DType dtype, Device device) {
  return x.to(dtype).to(device).requires_grad_();
}

// The leaves of one op on the CPU (f64) and on `dev` (f32), from the same f32 values.
struct Leaves {
  std::vector<Tensor> cpu, dev;
  Leaves(const std::vector<Tensor>& values, Device device) {
    for (const Tensor& v : values) {
      cpu.push_back(leaf(v, DType::f64, Device::cpu()));
      dev.push_back(leaf(v, DType::f32, device));
    }
  }
  // Runs `op` on both sets, backpropagates dy, compares the output and every gradient.
  template <class Op>
  void check(const Op& op, const Tensor& dy, int64_t terms, const std::string& what,
             const std::vector<std::string>& names) {
    const Tensor yc = op(cpu);
    yc.backward(dy.to(DType::f64));
    const Tensor yd = op(dev);
    REQUIRE(yd.device() == dev[0].device());
    yd.backward(dy.to(dev[0].device()));
    check_sum_close(yd, yc, terms, what + " y");
    for (size_t i = 0; i < cpu.size(); ++i) {
      REQUIRE(dev[i].grad().device() == dev[0].device());
      check_sum_close(dev[i].grad(), cpu[i].grad(), terms, what + " d" + names[i]);
    }
  }
};

// EMA coefficients of a stable recurrence: q ∈ (0.5, 0.95), g and w signed.
struct EmaInputs {
  Tensor x, g, q, w;
};

EmaInputs ema_inputs(int64_t B, int64_t N, int64_t C, int64_t n, uint64_t seed) {
  Generator gen(seed);
  EmaInputs in;
  in.x = Tensor::randn({B, N, C}, gen);
  in.g = Tensor::randn({C, n}, gen);
  in.q = add(mul(Tensor::rand({C, n}, gen), Tensor::scalar(0.45)), Tensor::scalar(0.5));
  in.w = Tensor::randn({C, n}, gen);
  return in;
}

}  // namespace

TEST_CASE("device ema: both directions against the CPU, forward and backward") {
  const int64_t B = 2, C = 5, n = 3;
  for (const Device dev : kernel_devices()) {
    for (const int64_t N : kLengths) {
      for (const bool reverse : {false, true}) {
        const EmaInputs in = ema_inputs(B, N, C, n, static_cast<uint64_t>(N) + (reverse ? 7 : 0));
        const std::string what =
            std::string(reverse ? "reverse " : "") + "ema N = " + std::to_string(N);
        INFO(what);
        Leaves leaves({in.x, in.g, in.q, in.w}, dev);
        leaves.check(
            [&](const std::vector<Tensor>& t) { return ema(t[0], t[1], t[2], t[3], reverse); },
            cotangent({B, N, C}, 3 + static_cast<uint64_t>(N)), B * N * n, what,
            {"x", "g", "q", "w"});
      }
    }
  }
}

TEST_CASE("device ema_step: steps against the CPU steps and the parallel form") {
  const int64_t B = 2, C = 4, n = 3, N = 9;
  const EmaInputs in = ema_inputs(B, N, C, n, 41);
  for (const Device dev : kernel_devices()) {
    const Tensor g = in.g.to(dev), q = in.q.to(dev), w = in.w.to(dev);
    const Tensor parallel = ema(in.x.to(dev), g, q, w).cpu();
    const Tensor x64 = in.x.to(DType::f64),
                 parallel_cpu =
                     ema(x64, in.g.to(DType::f64), in.q.to(DType::f64), in.w.to(DType::f64));
    Tensor h, h_cpu;
    for (int64_t t = 0; t < N; ++t) {
      INFO("step " << t);
      const Tensor xt = slice(in.x, 1, t, t + 1).reshape({B, C});
      const Tensor y = ema_step(xt.to(dev), h, g, q, w);
      const Tensor yc = ema_step(xt.to(DType::f64), h_cpu, in.g.to(DType::f64), in.q.to(DType::f64),
                                 in.w.to(DType::f64));
      REQUIRE(y.device() == dev);
      REQUIRE(h.device() == dev);
      check_sum_close(y, yc, (t + 1) * n, "ema_step y");
      const Tensor row = slice(parallel_cpu, 1, t, t + 1).reshape({B, C});
      check_sum_close(y, row, (t + 1) * n, "ema_step y against ema");
      CHECK(max_abs(sub(y.cpu().to(DType::f64),
                        slice(parallel, 1, t, t + 1).reshape({B, C}).to(DType::f64))) <= 1e-5);
    }
    check_sum_close(h, h_cpu, N, "ema_step h");
  }
}

namespace {

struct MegaCase {
  int64_t chunk;
  bool causal;
  MegaScore score;
};

std::string describe(const MegaCase& c, int64_t N) {
  return std::string("mega_attention ") + to_string(c.score) + (c.causal ? " causal" : "") +
         " chunk " + std::to_string(c.chunk) + " N = " + std::to_string(N);
}

}  // namespace

TEST_CASE("device mega_attention: both scores, whole and chunked, against the CPU") {
  const int64_t B = 2, D = 4, Dv = 3;
  for (const Device dev : kernel_devices()) {
    for (const int64_t N : kLengths) {
      for (const int64_t chunk : {int64_t{200}, int64_t{32}}) {
        for (const bool causal : {false, true}) {
          for (const MegaScore score : {MegaScore::softmax, MegaScore::laplace}) {
            const MegaCase c{chunk, causal, score};
            const std::string what = describe(c, N);
            INFO(what);
            const int64_t W = std::min(chunk, N), L = W + 2;
            Generator gen(static_cast<uint64_t>(N * 4 + chunk));
            const Tensor q = Tensor::randn({B, N, D}, gen), k = Tensor::randn({B, N, D}, gen);
            const Tensor v = Tensor::randn({B, N, Dv}, gen);
            const Tensor bias = mul(Tensor::randn({2 * L - 1}, gen), Tensor::scalar(0.5));
            Leaves leaves({q, k, v, bias}, dev);
            leaves.check(
                [&](const std::vector<Tensor>& t) {
                  return mega_attention(t[0], t[1], t[2], t[3], chunk, causal, score);
                },
                cotangent({B, N, Dv}, 11 + static_cast<uint64_t>(N)), B * N * std::max(D, Dv), what,
                {"q", "k", "v", "rel_bias"});
          }
        }
      }
    }
  }
}

TEST_CASE("device mega_attention_step: steps against the CPU steps and the causal form") {
  const int64_t B = 2, D = 4, Dv = 3, N = 7, L = 8;
  Generator gen(23);
  const Tensor q = Tensor::randn({B, N, D}, gen), k = Tensor::randn({B, N, D}, gen);
  const Tensor v = Tensor::randn({B, N, Dv}, gen);
  const Tensor bias = mul(Tensor::randn({2 * L - 1}, gen), Tensor::scalar(0.5));
  auto at = [&](const Tensor& t, int64_t i) {
    return slice(t, 1, i, i + 1).reshape({B, t.size(2)});
  };
  for (const Device dev : kernel_devices()) {
    for (const MegaScore score : {MegaScore::softmax, MegaScore::laplace}) {
      INFO(to_string(score));
      const Tensor parallel = mega_attention(q.to(DType::f64), k.to(DType::f64), v.to(DType::f64),
                                             bias.to(DType::f64), N, true, score);
      // Caches of 2 rows: the step grows them (on the device) at row 2.
      Tensor kc = Tensor::zeros({B, 2, D}, DType::f32, dev);
      Tensor vc = Tensor::zeros({B, 2, Dv}, DType::f32, dev);
      Tensor kc64 = Tensor::zeros({B, 2, D}, DType::f64),
             vc64 = Tensor::zeros({B, 2, Dv}, DType::f64);
      for (int64_t row = 0; row < N; ++row) {
        INFO("row " << row);
        const Tensor y = mega_attention_step(at(q, row).to(dev), at(k, row).to(dev),
                                             at(v, row).to(dev), kc, vc, row, bias.to(dev), score);
        const Tensor yc = mega_attention_step(at(q, row).to(DType::f64), at(k, row).to(DType::f64),
                                              at(v, row).to(DType::f64), kc64, vc64, row,
                                              bias.to(DType::f64), score);
        REQUIRE(y.device() == dev);
        REQUIRE(kc.device() == dev);
        REQUIRE(kc.shape() == kc64.shape());
        check_sum_close(y, yc, (row + 1) * D, "mega_attention_step y");
        check_sum_close(y, at(parallel, row), (row + 1) * D,
                        "mega_attention_step y against the "
                        "causal form");
      }
      check_sum_close(kc, kc64, 1, "k_cache");
      check_sum_close(vc, vc64, 1, "v_cache");
    }
  }
}

TEST_CASE("device mega kernels: bad input is checked on the host") {
  const EmaInputs in = ema_inputs(1, 4, 3, 2, 5);
  for (const Device dev : kernel_devices()) {
    check_error(
        [&] {
          (void)ema(in.x.to(DType::f64).to(dev), in.g.to(DType::f64).to(dev),
                    in.q.to(DType::f64).to(dev), in.w.to(DType::f64).to(dev));
        },
        {"ema", "x is f64", "expected f32"});
    check_error([&] { (void)ema(in.x.to(dev), in.g, in.q.to(dev), in.w.to(dev)); },
                {"ema", "g is on cpu", "x is on", "expected one device"});
    Tensor h = Tensor::zeros({1, 3, 2});
    const Tensor x0 = slice(in.x, 1, 0, 1).reshape({1, 3});
    check_error([&] { (void)ema_step(x0.to(dev), h, in.g.to(dev), in.q.to(dev), in.w.to(dev)); },
                {"ema_step", "h is on cpu", "x is on", "expected one device"});

    const Tensor q = Tensor::ones({1, 4, 2}), v = Tensor::ones({1, 4, 3});
    const Tensor bias = Tensor::zeros({7});
    check_error(
        [&] {
          (void)mega_attention(q.to(DType::f64).to(dev), q.to(DType::f64).to(dev),
                               v.to(DType::f64).to(dev), bias.to(DType::f64).to(dev), 4, true,
                               MegaScore::softmax);
        },
        {"mega_attention", "q is f64", "expected f32"});
    check_error(
        [&] {
          (void)mega_attention(q.to(dev), q.to(dev), v.to(dev), bias, 4, true, MegaScore::laplace);
        },
        {"mega_attention", "rel_bias is on cpu", "q is on", "expected one device"});
    check_error(
        [&] {
          (void)mega_attention(q.to(dev), q, v.to(dev), bias.to(dev), 4, false, MegaScore::softmax);
        },
        {"mega_attention", "k is on cpu", "q is on", "expected one device"});
    Tensor kc = Tensor::zeros({1, 4, 2}), vc = Tensor::zeros({1, 4, 3}, DType::f32, dev);
    const Tensor q1 = Tensor::ones({1, 2}).to(dev), v1 = Tensor::ones({1, 3}).to(dev);
    check_error(
        [&] { (void)mega_attention_step(q1, q1, v1, kc, vc, 0, bias.to(dev), MegaScore::softmax); },
        {"mega_attention_step", "k_cache is on cpu", "q is on", "expected one device"});
  }
}
