// bf16 autocast (core/autocast.h): the rounding (core/bf16.h), the device GEMMs under it —
// matmul, linear and an executor's gemm, as the attention drivers call it — against the
// CPU's f32 GEMM of bf16-rounded operands, the scope guard, and a model trained under bf16
// against the same model in f32 (docs/design.md, "Precision").
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "device_models.h"
#include "kernel_devices.h"
#include "polyak/core/bf16.h"
#include "polyak/models/transformer.h"
#include "polyak/nn/kinds.h"
#include "polyak/ops/matmul.h"
#include "polyak/ops/nn_ops.h"
#include "polyak/optim/radam.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// The bf16 nearest to finite x by comparing distances in double, ties to the even pattern:
// an independent reference for bf16_bits. Past the largest bf16 the next pattern up is ±inf,
// which IEEE rounding picks from half an ulp beyond the maximum.
uint16_t nearest_bf16(float x) {
  const uint32_t u = bits_of(x);
  const auto lo = static_cast<uint16_t>(u >> 16);
  const auto hi = static_cast<uint16_t>(lo + 1);
  const double v_lo = from_bits(static_cast<uint32_t>(lo) << 16);
  double v_hi = from_bits(static_cast<uint32_t>(hi) << 16);
  if (std::isinf(v_hi)) v_hi = std::copysign(std::ldexp(1.0, 128), x);  // where inf "sits"
  const double d_lo = std::abs(x - v_lo), d_hi = std::abs(x - v_hi);
  if (d_lo != d_hi) return d_lo < d_hi ? lo : hi;
  return (lo & 1u) == 0 ? lo : hi;
}

Tensor randn(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return Tensor::randn(shape, gen);
}

// A CPU copy of `t` with every element rounded to bf16.
Tensor rounded(const Tensor& t) {
  Tensor r = t.clone();
  float* p = r.data<float>();
  for (int64_t i = 0; i < r.numel(); ++i) p[i] = round_bf16(p[i]);
  return r;
}

double cosine(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double xy = 0, xx = 0, yy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    xy += x[i] * y[i];
    xx += x[i] * x[i];
    yy += y[i] * y[i];
  }
  return xy / std::sqrt(xx * yy);
}

// The bf16 product's tolerance against the CPU's f32 product of the rounded operands: the
// same products, summed in another order (the fake device: none; HostExec: in double;
// cuBLAS: its own blocking).
constexpr double kGemmAtol = 1e-5, kGemmK = 256;

}  // namespace

TEST_CASE("precision: bf16 rounding is to nearest, ties to even") {
  auto check = [](uint32_t in, uint16_t expected) {
    INFO("input 0x" << std::hex << in);
    CHECK(bf16_bits(from_bits(in)) == expected);
  };
  check(0x3F800000u, 0x3F80);  // 1: exact
  check(0x3F808000u, 0x3F80);  // 1 + 2⁻⁸: a tie, down to the even 0x3F80
  check(0x3F818000u, 0x3F82);  // 1 + 3·2⁻⁸: a tie, up to the even 0x3F82
  check(0x3F807FFFu, 0x3F80);  // just under a tie
  check(0x3F808001u, 0x3F81);  // just over a tie
  check(0xBF808000u, 0xBF80);  // negative ties too
  check(0xBF818000u, 0xBF82);
  check(0x00008000u, 0x0000);  // subnormal tie to even zero
  check(0x00018000u, 0x0002);
  check(0x80000000u, 0x8000);  // −0 keeps its sign
  // Near the largest finite bf16, 0x7F7F (3.3895e38): below half an ulp past it stays; the
  // tie and above go to inf (0x7F7F is odd); f32's largest value is past it.
  check(0x7F7F0000u, 0x7F7F);
  check(0x7F7F7FFFu, 0x7F7F);
  check(0x7F7F8000u, 0x7F80);
  check(0x7F7FFFFFu, 0x7F80);
  check(0xFF7FFFFFu, 0xFF80);
  check(0x7F7E8000u, 0x7F7E);  // a tie below the max, to the even 0x7F7E
  check(0x7F800000u, 0x7F80);  // ±inf stay
  check(0xFF800000u, 0xFF80);
  // NaN stays NaN (quiet, sign kept), never inf: 0x7F800001 would round up to 0x7F80.
  for (uint32_t nan : {0x7FC00000u, 0x7F800001u, 0x7FFFFFFFu, 0xFF800001u}) {
    INFO("NaN 0x" << std::hex << nan);
    const uint16_t b = bf16_bits(from_bits(nan));
    CHECK(std::isnan(from_bits(static_cast<uint32_t>(b) << 16)));
    CHECK((b & 0x8000u) == ((nan >> 16) & 0x8000u));
  }
  CHECK(std::isnan(round_bf16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(round_bf16(std::numeric_limits<float>::infinity()) ==
        std::numeric_limits<float>::infinity());

  // Every finite pattern class, against the distance reference.
  Generator gen(11);
  const Tensor r = Tensor::rand({4, 50000}, gen);
  const std::vector<double> v = r.to_vector();
  int64_t bad = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const auto u = static_cast<uint32_t>(v[i] * 4294967296.0);
    const float x = from_bits(u);
    if (!std::isfinite(x)) continue;
    if (bf16_bits(x) != nearest_bf16(x)) ++bad;
    // Low-bit patterns at ties and around them, with this sign and exponent.
    for (uint32_t low : {0x8000u, 0x7FFFu, 0x8001u, 0x0000u, 0xFFFFu}) {
      const float y = from_bits((u & 0xFFFF0000u) | low);
      if (std::isfinite(y) && bf16_bits(y) != nearest_bf16(y)) ++bad;
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("precision: the Autocast guard nests, restores and is per thread") {
  CHECK(autocast_precision() == Precision::f32);
  {
    const Autocast outer(Precision::bf16);
    CHECK(autocast_precision() == Precision::bf16);
    {
      const Autocast inner(Precision::f32);
      CHECK(autocast_precision() == Precision::f32);
      CHECK(autocast(GemmArgs{1, 2, 2, 2, false, false, 0, 0, 0}).precision == Precision::f32);
    }
    CHECK(autocast_precision() == Precision::bf16);
    CHECK(autocast(GemmArgs{1, 2, 2, 2, false, false, 0, 0, 0}).precision == Precision::bf16);
    Precision elsewhere = Precision::bf16;
    std::thread([&] { elsewhere = autocast_precision(); }).join();
    CHECK(elsewhere == Precision::f32);
  }
  CHECK(autocast_precision() == Precision::f32);
  CHECK(std::string(name(Precision::bf16)) == "bf16");
  CHECK(std::string(name(Precision::f32)) == "f32");
}

TEST_CASE("precision: bf16 matmul on a device is the f32 product of bf16-rounded operands") {
  const int64_t B = 3, M = 5, N = 7, K = 37;
  for (const Device dev : kernel_devices()) {
    for (const bool ta : {false, true}) {
      for (const bool tb : {false, true}) {
        for (const bool batched : {false, true}) {
          for (const bool shared_b : {false, true}) {
            if (shared_b && !batched) continue;
            INFO(dev << " trans_a " << ta << " trans_b " << tb << " batched " << batched
                     << " shared b " << shared_b);
            Shape sa = ta ? Shape{K, M} : Shape{M, K}, sb = tb ? Shape{N, K} : Shape{K, N};
            if (batched) sa = Shape{B, sa[0], sa[1]};
            if (batched && !shared_b) sb = Shape{B, sb[0], sb[1]};
            const Tensor a = randn(sa, 1), b = randn(sb, 2);
            Tensor on_dev;
            {
              const Autocast bf16(Precision::bf16);
              on_dev = matmul(a.to(dev), b.to(dev), ta, tb);
            }
            const Tensor reference = matmul(rounded(a), rounded(b), ta, tb);
            check_close(on_dev, reference, kGemmAtol, kGemmK, "bf16 matmul");
            // The rounding is real: the f32 product is further away than the tolerance.
            const Tensor exact = matmul(a, b, ta, tb);
            CHECK(max_abs_diff(on_dev.cpu(), exact) > 1e-3);
            // Outside the scope the device is f32 again.
            check_close(matmul(a.to(dev), b.to(dev), ta, tb), exact, 1e-5, 64, "f32 matmul");
          }
        }
      }
    }
  }
}

TEST_CASE("precision: bf16 linear and its gradients on a device use rounded operands") {
  for (const Device dev : kernel_devices()) {
    INFO(dev);
    const Tensor x = randn({2, 4, 19}, 3), w = randn({6, 19}, 4), bias = randn({6}, 5);
    const Tensor dy = cotangent({2, 4, 6}, 6);
    Tensor xd = x.to(dev).requires_grad_(), wd = w.to(dev).requires_grad_();
    {
      const Autocast bf16(Precision::bf16);
      const Tensor y = linear(xd, wd, bias.to(dev));
      check_close(y, linear(rounded(x), rounded(w), bias).detach(), kGemmAtol, kGemmK, "y");
      y.backward(dy.to(dev));
    }
    // dX = dY · W and dW = dYᵀ · X, each of rounded operands.
    const Tensor dy2 = dy.reshape({8, 6}), x2 = x.reshape({8, 19});
    check_close(xd.grad(), matmul(rounded(dy2), rounded(w)).reshape({2, 4, 19}), kGemmAtol, kGemmK,
                "dx");
    check_close(wd.grad(), matmul(rounded(dy2), rounded(x2), true, false), kGemmAtol, kGemmK, "dw");
    REQUIRE(xd.grad().device() == dev);
  }
}

TEST_CASE("precision: an executor's gemm (the attention drivers') follows the scope") {
  // HostExec is the fake device's executor; cuda:0's CudaExec is reached through the
  // attention kernels in the model test below.
  const Device dev = fake_device();
  const int64_t B = 2, M = 4, N = 6, K = 33;
  for (const bool ta : {false, true}) {
    for (const bool tb : {false, true}) {
      INFO("trans_a " << ta << " trans_b " << tb);
      const Tensor a = randn(ta ? Shape{B, K, M} : Shape{B, M, K}, 7);
      const Tensor b = randn(tb ? Shape{B, N, K} : Shape{B, K, N}, 8);
      const Tensor ad = a.to(dev), bd = b.to(dev);
      Tensor out = Tensor::empty({B, M, N}, DType::f32, dev);
      const HostExec ex(dev);
      const GemmArgs args{B, M, N, K, ta, tb, M * K, K * N, M * N};
      auto run = [&](const GemmArgs& g) {
        ex.gemm(static_cast<const float*>(ad.raw_data()), static_cast<const float*>(bd.raw_data()),
                static_cast<float*>(out.raw_data()), g);
        return out.cpu();
      };
      const Tensor reference = matmul(rounded(a), rounded(b), ta, tb);
      {
        const Autocast bf16(Precision::bf16);
        check_close(run(args).to(dev), reference, kGemmAtol, kGemmK, "under the scope");
      }
      GemmArgs asked = args;
      asked.precision = Precision::bf16;
      check_close(run(asked).to(dev), reference, kGemmAtol, kGemmK, "asked for by the args");
      check_close(run(args).to(dev), matmul(a, b, ta, tb), 1e-5, 64, "f32");
    }
  }
}

namespace {

Tensor step_tokens(int64_t step, int64_t shift, int64_t vocab) {
  std::vector<int64_t> t(24);
  for (int64_t i = 0; i < 24; ++i)
    t[static_cast<size_t>(i)] = (i * 5 + i / 3 + step + shift) % vocab;
  return ids({2, 12}, t);
}

// Tolerance of a bf16 run's loss against the f32 run's, relative: one bf16 rounding, 2⁻⁹
// (docs/design.md, "Precision"; measured: at most 2e-4 over the five steps).
constexpr double kLossRelTol = 2e-3;

}  // namespace

TEST_CASE("precision: a retention model trained under bf16 follows its f32 run") {
  for (const Device dev : kernel_devices()) {
    INFO(dev);
    const TransformerConfig c = device_model("retention", 0);
    TransformerLM f32(c), bf16(c);
    f32.to(dev);
    bf16.to(dev);
    RAdam opt_f32(f32.parameters(), {.lr = 3e-3}), opt_bf16(bf16.parameters(), {.lr = 3e-3});
    auto loss_of = [&](TransformerLM& model, int64_t s) {
      const Tensor logits = model.forward(step_tokens(s, 0, c.vocab).to(dev));
      return cross_entropy(logits.reshape({-1, c.vocab}),
                           step_tokens(s, 2, c.vocab).reshape({-1}).to(dev));
    };
    std::vector<double> l32, l16;
    for (int64_t s = 0; s < 5; ++s) {
      opt_f32.zero_grad();
      opt_bf16.zero_grad();
      const Tensor loss32 = loss_of(f32, s);
      loss32.backward();
      {
        const Autocast scope(Precision::bf16);
        const Tensor loss16 = loss_of(bf16, s);
        loss16.backward();
        l16.push_back(loss16.cpu().item());
      }
      l32.push_back(loss32.cpu().item());
      if (s == 0) {
        // The same weights: bf16's gradients point where f32's do.
        const NamedTensors p32 = f32.named_parameters(), p16 = bf16.named_parameters();
        for (size_t i = 0; i < p32.size(); ++i) {
          INFO("gradient of " << p32[i].first);
          REQUIRE(p16[i].second.grad().device() == dev);
          CHECK(cosine(p16[i].second.grad().cpu(), p32[i].second.grad().cpu()) > 0.99);
        }
        CHECK(l16[0] != l32[0]);  // bf16 did round something
      }
      opt_f32.step();  // the updates run in f32, outside the scope
      opt_bf16.step();
    }
    for (size_t s = 0; s < l32.size(); ++s) {
      INFO("step " << s << ": f32 " << l32[s] << ", bf16 " << l16[s]);
      CHECK(std::abs(l16[s] - l32[s]) <= kLossRelTol * std::abs(l32[s]));
    }
    CHECK(l16.back() < l16.front());
    // Master weights and optimizer state stay f32.
    for (const Tensor& p : bf16.parameters()) CHECK(p.dtype() == DType::f32);
  }
}
