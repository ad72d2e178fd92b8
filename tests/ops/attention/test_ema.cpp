// Mega's damped EMA: the sweep against a naive loop, gradcheck across checkpoint segments,
// the recurrent step against the parallel op, the memory of the backward, and bad input.
#include <cmath>
#include <vector>

#include "naive_mega.h"
#include "ops/attention/helpers.h"
#include "polyak/ops/attention/ema.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

struct EmaInputs {
  Tensor x, g, q, w;
};

// x normal; g normal; q in (0.05, 0.95) (a decay); w normal. All f64 leaves.
EmaInputs ema_inputs(int64_t B, int64_t N, int64_t C, int64_t n, uint64_t seed,
                     DType dtype = DType::f64) {
  Generator gen(seed);
  EmaInputs in;
  in.x = normal_leaf({B, N, C}, gen, dtype);
  in.g = normal_leaf({C, n}, gen, dtype);
  std::vector<double> decay = Tensor::rand({C, n}, gen, DType::f64).to_vector();
  for (double& e : decay) e = 0.05 + 0.9 * e;
  in.q = Tensor::from(decay, {C, n}, dtype).requires_grad_();
  in.w = normal_leaf({C, n}, gen, dtype);
  return in;
}

std::vector<double> naive_of(const EmaInputs& in, bool reverse) {
  return naive_mega::ema(in.x.size(0), in.x.size(1), in.x.size(2), in.g.size(1), in.x.to_vector(),
                         in.g.to_vector(), in.q.to_vector(), in.w.to_vector(), reverse);
}

}  // namespace

TEST_CASE("ema equals the naive recurrence, forwards and in reverse") {
  struct Case {
    int64_t B, N, C, n;
  };
  // N across segment boundaries (kEmaSegment = 64), C across channel blocks (16), n = 1.
  const std::vector<Case> cases = {{1, 1, 1, 1},   {2, 5, 3, 4},     {1, 64, 16, 16},
                                   {2, 65, 17, 2}, {3, 200, 33, 16}, {1, 130, 5, 3}};
  for (const Case& c : cases)
    for (bool reverse : {false, true}) {
      CAPTURE(c.B);
      CAPTURE(c.N);
      CAPTURE(c.C);
      CAPTURE(c.n);
      CAPTURE(reverse);
      const EmaInputs in = ema_inputs(c.B, c.N, c.C, c.n, 10 + static_cast<uint64_t>(c.N));
      const Tensor y = ema(in.x, in.g, in.q, in.w, reverse);
      REQUIRE(y.shape() == Shape({c.B, c.N, c.C}));
      CHECK(scaled_error(y.to_vector(), naive_of(in, reverse)) <= 1e-12);
    }
}

TEST_CASE("ema: a reverse EMA is the forward EMA of the time-reversed sequence") {
  const EmaInputs in = ema_inputs(2, 9, 3, 4, 77);
  const Tensor flipped = Tensor::from(
      [&] {
        std::vector<double> x = in.x.to_vector(), f(x.size());
        for (int64_t b = 0; b < 2; ++b)
          for (int64_t t = 0; t < 9; ++t)
            for (int64_t c = 0; c < 3; ++c)
              f[static_cast<size_t>((b * 9 + t) * 3 + c)] =
                  x[static_cast<size_t>((b * 9 + 8 - t) * 3 + c)];
        return f;
      }(),
      {2, 9, 3}, DType::f64);
  const std::vector<double> rev = ema(in.x, in.g, in.q, in.w, true).to_vector();
  const std::vector<double> fwd = ema(flipped, in.g, in.q, in.w).to_vector();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 9; ++t)
      for (int64_t c = 0; c < 3; ++c)
        CHECK(rev[static_cast<size_t>((b * 9 + t) * 3 + c)] ==
              doctest::Approx(fwd[static_cast<size_t>((b * 9 + 8 - t) * 3 + c)]).epsilon(1e-12));
}

TEST_CASE("ema gradcheck in x, g, q, w across checkpoint segments") {
  // N = 2·kEmaSegment + 13: three segments, the last one partial; N = 7: one partial.
  // n = 16 takes the kernels' fixed-width path, n = 4 the general one.
  struct Case {
    int64_t N, C, n;
  };
  for (const Case& c : {Case{7, 3, 4}, Case{2 * kEmaSegment + 13, 3, 4}, Case{70, 2, 16}})
    for (bool reverse : {false, true}) {
      CAPTURE(c.N);
      CAPTURE(c.n);
      CAPTURE(reverse);
      const EmaInputs in = ema_inputs(2, c.N, c.C, c.n, 31);
      GradcheckResult r = gradcheck(
          [reverse](const std::vector<Tensor>& t) { return ema(t[0], t[1], t[2], t[3], reverse); },
          {in.x, in.g, in.q, in.w});
      INFO(r.message);
      CHECK(r.ok);
    }
}

TEST_CASE("ema gradients equal those of the naive recurrence written in differentiable ops") {
  // The same recurrence unrolled position by position with elementwise ops (autograd
  // differentiates it): a second, independent derivation of dx, dg, dq, dw.
  const int64_t B = 2, N = 70, C = 3, n = 2;
  for (bool reverse : {false, true}) {
    CAPTURE(reverse);
    const EmaInputs in = ema_inputs(B, N, C, n, 5);
    Generator gen(8);
    const Tensor dy = Tensor::randn({B, N, C}, gen, DType::f64);
    ema(in.x, in.g, in.q, in.w, reverse).backward(dy);
    const Tensor dx = in.x.grad(), dg = in.g.grad(), dq = in.q.grad(), dw = in.w.grad();
    for (const Tensor& t : {in.x, in.g, in.q, in.w}) t.zero_grad();

    Tensor h = Tensor::zeros({B, C, n}, DType::f64);
    std::vector<Tensor> ys(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) {
      const int64_t t = reverse ? N - 1 - i : i;
      const Tensor xt = slice(in.x, 1, t, t + 1).reshape({B, C, 1});
      h = in.g * xt + in.q * h;
      ys[static_cast<size_t>(t)] = sum(h * in.w, 2).reshape({B, 1, C});
    }
    concat(ys, 1).backward(dy);
    CHECK(max_abs_diff(dx, in.x.grad()) <= 1e-11);
    CHECK(max_abs_diff(dg, in.g.grad()) <= 1e-10);
    CHECK(max_abs_diff(dq, in.q.grad()) <= 1e-10);
    CHECK(max_abs_diff(dw, in.w.grad()) <= 1e-10);
  }
}

TEST_CASE("ema in f32 agrees with f64") {
  const EmaInputs in = ema_inputs(2, 150, 20, 16, 3);
  const EmaInputs in32 = ema_inputs(2, 150, 20, 16, 3, DType::f32);
  const Tensor y = ema(in.x, in.g, in.q, in.w);
  const Tensor y32 = ema(in32.x, in32.g, in32.q, in32.w);
  CHECK(y32.dtype() == DType::f32);
  CHECK(relative_error(y32.to_vector(), y.to_vector()) <= 1e-5);
  Generator gen(4);
  const Tensor dy = Tensor::randn({2, 150, 20}, gen, DType::f64);
  y.backward(dy);
  y32.backward(dy.to(DType::f32));
  CHECK(relative_error(in32.x.grad().to_vector(), in.x.grad().to_vector()) <= 1e-5);
  CHECK(relative_error(in32.q.grad().to_vector(), in.q.grad().to_vector()) <= 1e-4);
  CHECK(relative_error(in32.w.grad().to_vector(), in.w.grad().to_vector()) <= 1e-4);
}

TEST_CASE("ema_step equals the parallel ema at every position") {
  const int64_t B = 2, N = 20, C = 5, n = 3;
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype);
    const EmaInputs in = ema_inputs(B, N, C, n, 12, dtype);
    NoGradGuard no_grad;
    const std::vector<double> y = ema(in.x, in.g, in.q, in.w).to_vector();
    Tensor h;  // undefined: starts at zero
    for (int64_t t = 0; t < N; ++t) {
      const Tensor xt = slice(in.x, 1, t, t + 1).reshape({B, C});
      const std::vector<double> yt = ema_step(xt, h, in.g, in.q, in.w).to_vector();
      REQUIRE(h.shape() == Shape({B, C, n}));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c) {
          const double want = y[static_cast<size_t>((b * N + t) * C + c)];
          const double got = yt[static_cast<size_t>(b * C + c)];
          CHECK(std::abs(got - want) <=
                (dtype == DType::f64 ? 1e-13 : 1e-5) * std::max(1.0, std::abs(want)));
        }
    }
  }
}

TEST_CASE("ema backward keeps O(N·C) memory, not a state per position") {
  // Storing h for every position would take N·C·n values (16 N·C here); the checkpoints
  // take N·C·n/kEmaSegment (N·C/4). Forward + backward: y, checkpoints, dx, small partials.
  const int64_t B = 1, C = 32, n = 16;
  auto peak_bytes = [&](int64_t N) {
    const EmaInputs in = ema_inputs(B, N, C, n, 2);
    Generator gen(3);
    const Tensor dy = Tensor::randn({B, N, C}, gen, DType::f64);
    empty_cache();
    reset_peak_allocated();
    const size_t before = allocator_stats().allocated_bytes;
    ema(in.x, in.g, in.q, in.w).backward(dy);
    CHECK(in.x.grad().defined());
    return static_cast<double>(allocator_stats().peak_allocated_bytes - before);
  };
  for (int64_t N : {2048, 4096}) {
    const double peak = peak_bytes(N);
    const double activation = static_cast<double>(B * N * C) * 8;
    CAPTURE(N);
    CAPTURE(peak);
    CHECK(peak < 4 * activation);
    CHECK(peak > activation);  // y itself: the measurement sees the op
  }
}

TEST_CASE("ema: bad input is an error naming the argument") {
  const EmaInputs in = ema_inputs(2, 6, 3, 4, 1);
  Generator gen(2);
  const Tensor bad_c = Tensor::randn({5, 4}, gen, DType::f64);
  check_error(
      [&] {
        ema(in.x.reshape({12, 3}), in.g, in.q, in.w);
      },
      {"ema", "x", "[12,3]", "rank 3", "[B,N,C]"});
  check_error([&] { ema(in.x, bad_c, in.q, in.w); },
              {"ema", "g has shape [5,4]", "C = 3", "[2,6,3]"});
  check_error(
      [&] {
        ema(in.x, in.g, Tensor::randn({3, 5}, gen, DType::f64), in.w);
      },
      {"ema", "q has shape [3,5]", "[3,4] matching g"});
  check_error([&] { ema(in.x, in.g, in.q, Tensor::randn({3}, gen, DType::f64)); },
              {"ema", "w", "rank 2", "[C,n]"});
  check_error([&] { ema(in.x.to(DType::f32), in.g, in.q, in.w); }, {"ema", "f32", "f64"});

  Tensor h = Tensor::zeros({2, 3, 5}, DType::f64);
  const Tensor xt = Tensor::randn({2, 3}, gen, DType::f64);
  check_error([&] { ema_step(xt, h, in.g, in.q, in.w); },
              {"ema_step", "h has shape [2,3,5]", "[B,C,n] = [2,3,4]"});
  Tensor h32 = Tensor::zeros({2, 3, 4}, DType::f32);
  check_error([&] { ema_step(xt, h32, in.g, in.q, in.w); }, {"ema_step", "h", "f32", "f64"});
  Tensor ok;
  check_error([&] { ema_step(in.x, ok, in.g, in.q, in.w); }, {"ema_step", "x", "rank 2", "[B,C]"});
}
