// Momentum attention and decayed causal linear attention: the O(N) sweeps against the
// quadratic references (values and gradients), identities between the ops, gradcheck,
// f32 against f64, the memory bound of the backward, and bad input.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "helpers.h"
#include "naive.h"
#include "polyak/ops/attention/momentum_attention.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

struct Widths {
  int64_t D, Dv;
};

// Lengths that are no multiple of any block size, and N = 1.
const std::vector<int64_t> kLengths = {1, 2, 7, 64, 100, 257};
// Dv = 16, 32, 64 take the kernels' fixed-width paths, the others the general one.
const std::vector<Widths> kWidths = {{3, 5}, {8, 16}, {16, 4}, {5, 32}, {32, 64}, {6, 12}};
const std::vector<double> kBetas = {0.0, 0.1, 0.5, 0.9, 0.99};
const std::vector<double> kGammas = {0.6, 1.0, 2.5};

struct Inputs {
  Tensor q, k, v, dy;
};

Inputs make_inputs(const Shape& qs, const Shape& vs, uint64_t seed, DType dtype = DType::f64) {
  Generator gen(seed);
  Inputs in;
  in.q = positive_leaf(qs, gen, dtype);
  in.k = positive_leaf(qs, gen, dtype);
  in.v = normal_leaf(vs, gen, dtype);
  in.dy = Tensor::from(Tensor::randn(vs, gen, DType::f64).to_vector(), vs, dtype);
  return in;
}

// Values and the three gradients against a naive reference.
void check_against(const Inputs& in, const Tensor& y, const std::vector<double>& ref,
                   const naive::Grads& g, double tol) {
  CHECK(scaled_error(y.to_vector(), ref) <= tol);
  CHECK(scaled_error(in.q.grad().to_vector(), g.dq) <= tol);
  CHECK(scaled_error(in.k.grad().to_vector(), g.dk) <= tol);
  CHECK(scaled_error(in.v.grad().to_vector(), g.dv) <= tol);
}

}  // namespace

TEST_CASE("decayed causal ops equal the quadratic form") {
  for (bool normalize : {true, false}) {
    for (double decay : {0.0, 0.3, 0.9, 1.0}) {
      for (size_t t = 0; t < kLengths.size(); ++t) {
        const int64_t B = 2, H = 2, N = kLengths[t];
        const Widths w = kWidths[t % kWidths.size()];
        CAPTURE(normalize);
        CAPTURE(decay);
        CAPTURE(N);
        CAPTURE(w.Dv);
        Inputs in = make_inputs({B, H, N, w.D}, {B, H, N, w.Dv}, 500 + t);
        Tensor y = normalize ? decayed_causal_linear_attention(in.q, in.k, in.v, decay)
                             : decayed_causal_dot_product(in.q, in.k, in.v, decay);
        REQUIRE(y.shape() == Shape({B, H, N, w.Dv}));
        y.backward(in.dy);
        const std::vector<double> dyv = in.dy.to_vector();
        naive::Grads g;
        const std::vector<double> ref =
            naive::decayed_attention({B, H, N, N, w.D, w.Dv}, in.q.to_vector(), in.k.to_vector(),
                                     in.v.to_vector(), decay, normalize, 1e-6, &dyv, &g);
        check_against(in, y, ref, g, 1e-10);
      }
    }
  }
}

TEST_CASE("causal momentum attention equals the quadratic form (both weightings)") {
  for (MomentumWeighting weighting : {MomentumWeighting::exact, MomentumWeighting::reference}) {
    for (size_t t = 0; t < kLengths.size(); ++t) {
      for (double beta : kBetas) {
        for (double gamma : kGammas) {
          const int64_t B = 1, H = 2, N = kLengths[t];
          const Widths w = kWidths[(t + static_cast<size_t>(gamma * 2)) % kWidths.size()];
          CAPTURE(to_string(weighting));
          CAPTURE(N);
          CAPTURE(beta);
          CAPTURE(gamma);
          CAPTURE(w.D);
          CAPTURE(w.Dv);
          Inputs in = make_inputs({B, H, N, w.D}, {B, H, N, w.Dv}, 600 + t);
          Tensor y = causal_momentum_attention(in.q, in.k, in.v, beta, gamma, 1e-6, weighting);
          y.backward(in.dy);
          const std::vector<double> dyv = in.dy.to_vector();
          naive::Grads g;
          const std::vector<double> ref = naive::causal_momentum_attention(
              {B, H, N, N, w.D, w.Dv}, in.q.to_vector(), in.k.to_vector(), in.v.to_vector(), beta,
              gamma, weighting == MomentumWeighting::reference, 1e-6, &dyv, &g);
          check_against(in, y, ref, g, 1e-10);
        }
      }
    }
  }
}

TEST_CASE("causal momentum attention: every block length of the sweep") {
  // The sweep rescales its decaying state once per block of L positions, L set by β
  // (β^{−(L−1)} ≤ 2^20, L ≤ 64): β = 1e−9 gives L = 1, 1e−3 gives 3, 0.5 gives 21 (pairs
  // and a lone last position), 0.999 gives 64; N = 200 ends every one mid-block.
  for (double beta : {1e-9, 1e-3, 0.5, 0.999}) {
    for (int64_t Dv : {32, 7}) {
      CAPTURE(beta);
      CAPTURE(Dv);
      const int64_t B = 1, H = 2, N = 200, D = 5;
      Inputs in = make_inputs({B, H, N, D}, {B, H, N, Dv}, 660);
      Tensor y = causal_momentum_attention(in.q, in.k, in.v, beta, 0.8);
      y.backward(in.dy);
      const std::vector<double> dyv = in.dy.to_vector();
      naive::Grads g;
      const std::vector<double> ref =
          naive::causal_momentum_attention({B, H, N, N, D, Dv}, in.q.to_vector(), in.k.to_vector(),
                                           in.v.to_vector(), beta, 0.8, false, 1e-6, &dyv, &g);
      check_against(in, y, ref, g, 1e-10);
    }
  }
}

TEST_CASE("causal momentum attention keeps f32 accuracy over long sequences") {
  // f32 against f64 at N = 2000 for small and large β: the block rescaling must not cost
  // precision (values and gradients within 1e-4 relative).
  for (double beta : {1e-3, 0.1, 0.9, 0.999}) {
    CAPTURE(beta);
    const Shape qs{1, 2, 2000, 8}, vs{1, 2, 2000, 32};
    const Inputs a = make_inputs(qs, vs, 670);
    check_f32_against_f64(
        a.q, a.k, a.v, a.dy,
        [beta](const Tensor& q, const Tensor& k, const Tensor& v) {
          return causal_momentum_attention(q, k, v, beta, 0.6);
        },
        1e-4);
  }
}

TEST_CASE("causal momentum attention covers every head width") {
  // Dv = 16, 32, 64 (fixed-width kernels) and others, D both below and above Dv.
  for (const Widths w : {Widths{32, 16}, Widths{7, 32}, Widths{64, 64}, Widths{20, 48},
                         Widths{16, 1}, Widths{1, 16}}) {
    CAPTURE(w.D);
    CAPTURE(w.Dv);
    const int64_t B = 2, H = 2, N = 100;
    Inputs in = make_inputs({B, H, N, w.D}, {B, H, N, w.Dv}, 650 + static_cast<uint64_t>(w.Dv));
    Tensor y = causal_momentum_attention(in.q, in.k, in.v, 0.5, 0.6);
    y.backward(in.dy);
    const std::vector<double> dyv = in.dy.to_vector();
    naive::Grads g;
    const std::vector<double> ref = naive::causal_momentum_attention(
        {B, H, N, N, w.D, w.Dv}, in.q.to_vector(), in.k.to_vector(), in.v.to_vector(), 0.5, 0.6,
        false, 1e-6, &dyv, &g);
    check_against(in, y, ref, g, 1e-10);
  }
}

TEST_CASE("momentum attention identities") {
  const int64_t B = 2, H = 2, N = 73, D = 6, Dv = 16;

  SUBCASE("beta = 0 is gamma times causal linear attention, values and gradients") {
    for (double gamma : kGammas) {
      CAPTURE(gamma);
      const Inputs in = make_inputs({B, H, N, D}, {B, H, N, Dv}, 700);
      check_same_function(
          in.q, in.k, in.v, in.dy,
          [gamma](const Tensor& q, const Tensor& k, const Tensor& v) {
            return causal_momentum_attention(q, k, v, 0.0, gamma);
          },
          [gamma](const Tensor& q, const Tensor& k, const Tensor& v) {
            return causal_linear_attention(q, k, v) * gamma;
          },
          1e-12);
    }
  }

  SUBCASE("decay = 1 is the undecayed op, decay = 0 keeps only j = i") {
    Inputs in = make_inputs({B, H, N, D}, {B, H, N, Dv}, 701);
    CHECK(max_abs_diff(decayed_causal_dot_product(in.q, in.k, in.v, 1.0),
                       causal_dot_product(in.q, in.k, in.v)) <= 1e-12);
    CHECK(max_abs_diff(decayed_causal_linear_attention(in.q, in.k, in.v, 1.0),
                       causal_linear_attention(in.q, in.k, in.v)) <= 1e-12);
    // λ = 0: y_i = (q_i·k_i) v_i / (q_i·k_i + ε).
    const std::vector<double> y =
        decayed_causal_linear_attention(in.q, in.k, in.v, 0.0, 0.0).to_vector();
    const std::vector<double> v = in.v.to_vector();
    double err = 0;
    for (size_t i = 0; i < y.size(); ++i) err = std::max(err, std::abs(y[i] - v[i]));
    CHECK(err <= 1e-12);
  }

  SUBCASE("exact = (gamma/(1-beta)) (plain - beta decayed(beta)) numerators (docs/math.md §3)") {
    Inputs in = make_inputs({B, H, N, D}, {B, H, N, Dv}, 702);
    const double beta = 0.7, gamma = 1.3;
    // y · (Σ_{j≤i} q_i·k_j + ε) = γ/(1−β) · (o_plain − β o_decayed).
    Tensor plain = causal_dot_product(in.q, in.k, in.v);
    Tensor decayed = decayed_causal_dot_product(in.q, in.k, in.v, beta);
    Tensor numerator = (plain - decayed * beta) * (gamma / (1 - beta));
    Tensor sums = causal_dot_product(in.q, in.k, Tensor::ones({B, H, N, 1}, DType::f64)) + 1e-6;
    Tensor y = causal_momentum_attention(in.q, in.k, in.v, beta, gamma);
    CHECK(scaled_error((y * sums).to_vector(), numerator.to_vector()) <= 1e-12);
  }

  SUBCASE("reference weighting agrees with exact at the last position only") {
    Inputs in = make_inputs({B, H, N, D}, {B, H, N, Dv}, 703);
    const std::vector<double> exact =
        causal_momentum_attention(in.q, in.k, in.v, 0.5, 0.6).to_vector();
    const std::vector<double> ref =
        causal_momentum_attention(in.q, in.k, in.v, 0.5, 0.6, 1e-6, MomentumWeighting::reference)
            .to_vector();
    for (int64_t h = 0; h < B * H; ++h) {
      for (int64_t i = 0; i < N; ++i) {
        double diff = 0;
        for (int64_t c = 0; c < Dv; ++c) {
          const size_t at = static_cast<size_t>((h * N + i) * Dv + c);
          diff = std::max(diff, std::abs(exact[at] - ref[at]));
        }
        CAPTURE(h);
        CAPTURE(i);
        if (i == N - 1) {
          CHECK(diff <= 1e-12);
        } else {
          CHECK(diff > 1e-6);
        }
      }
    }
  }

  SUBCASE("non-causal momentum: beta = 0 is gamma times linear attention") {
    Inputs in = make_inputs({B, H, N, D}, {B, H, N, Dv}, 704);
    CHECK(max_abs_diff(momentum_attention(in.q, in.k, in.v, 0.0, 2.5),
                       linear_attention(in.q, in.k, in.v) * 2.5) <= 1e-12);
  }

  SUBCASE("non-causal momentum: its last row is the causal one's") {
    Inputs in = make_inputs({1, H, N, D}, {1, H, N, Dv}, 705);
    const std::vector<double> full = momentum_attention(in.q, in.k, in.v, 0.9, 0.6).to_vector();
    const std::vector<double> causal =
        causal_momentum_attention(in.q, in.k, in.v, 0.9, 0.6).to_vector();
    for (int64_t h = 0; h < H; ++h)
      for (int64_t c = 0; c < Dv; ++c) {
        const size_t at = static_cast<size_t>((h * N + N - 1) * Dv + c);
        CHECK(std::abs(full[at] - causal[at]) <= 1e-12);
      }
  }
}

TEST_CASE("non-causal momentum attention equals the quadratic form, with lengths") {
  struct Case {
    int64_t N, M;
    std::vector<int64_t> lengths;
  };
  const std::vector<Case> cases = {
      {1, 1, {}},           {7, 7, {}},        {64, 64, {64, 1}}, {100, 100, {37, 100}},
      {257, 257, {3, 200}}, {20, 45, {45, 9}}, {50, 8, {}},
  };
  for (size_t t = 0; t < cases.size(); ++t) {
    for (double beta : kBetas) {
      const Case& cs = cases[t];
      const double gamma = kGammas[t % kGammas.size()];
      const int64_t B = 2, H = 2;
      const Widths w = kWidths[t % kWidths.size()];
      CAPTURE(cs.N);
      CAPTURE(cs.M);
      CAPTURE(beta);
      Generator gen(800 + t);
      Inputs in;
      in.q = positive_leaf({B, H, cs.N, w.D}, gen);
      in.k = positive_leaf({B, H, cs.M, w.D}, gen);
      in.v = normal_leaf({B, H, cs.M, w.Dv}, gen);
      in.dy = Tensor::randn({B, H, cs.N, w.Dv}, gen, DType::f64);
      Tensor y = momentum_attention(in.q, in.k, in.v, beta, gamma, 1e-6, cs.lengths);
      y.backward(in.dy);
      const std::vector<double> dyv = in.dy.to_vector();
      naive::Grads g;
      const std::vector<double> ref = naive::momentum_attention(
          {B, H, cs.N, cs.M, w.D, w.Dv}, in.q.to_vector(), in.k.to_vector(), in.v.to_vector(), beta,
          gamma, cs.lengths, 1e-6, &dyv, &g);
      check_against(in, y, ref, g, 1e-10);
    }
  }
}

TEST_CASE("non-causal momentum attention ignores padding keys") {
  // Row b with length n equals the same op on its first n keys; padding keys get zero
  // gradients and changing them changes nothing.
  const int64_t H = 2, N = 30, D = 5, Dv = 16, n = 17;
  Inputs in = make_inputs({1, H, N, D}, {1, H, N, Dv}, 900);
  Tensor y = momentum_attention(in.q, in.k, in.v, 0.6, 0.9, 1e-6, {n});
  y.backward(in.dy);

  std::vector<double> kv = in.k.to_vector(), vv = in.v.to_vector();
  std::vector<double> k_head, v_head;
  for (int64_t h = 0; h < H; ++h) {
    k_head.insert(k_head.end(), kv.begin() + h * N * D, kv.begin() + (h * N + n) * D);
    v_head.insert(v_head.end(), vv.begin() + h * N * Dv, vv.begin() + (h * N + n) * Dv);
  }
  Tensor y_cut = momentum_attention(in.q, Tensor::from(k_head, {1, H, n, D}, DType::f64),
                                    Tensor::from(v_head, {1, H, n, Dv}, DType::f64), 0.6, 0.9);
  CHECK(max_abs_diff(y, y_cut) <= 1e-12);

  const std::vector<double> dk = in.k.grad().to_vector(), dv = in.v.grad().to_vector();
  double padding_grad = 0, live_grad = 0;
  for (int64_t h = 0; h < H; ++h)
    for (int64_t j = 0; j < N; ++j) {
      double& into = j < n ? live_grad : padding_grad;
      for (int64_t a = 0; a < D; ++a)
        into = std::max(into, std::abs(dk[static_cast<size_t>((h * N + j) * D + a)]));
      for (int64_t c = 0; c < Dv; ++c)
        into = std::max(into, std::abs(dv[static_cast<size_t>((h * N + j) * Dv + c)]));
    }
  CHECK(padding_grad == 0.0);
  CHECK(live_grad > 0.0);
}

TEST_CASE("momentum attention gradcheck (f64, random cotangent)") {
  auto positive_inputs = [](const Shape& qs, const Shape& ks, const Shape& vs) {
    return [qs, ks, vs](Generator& gen) -> std::vector<Tensor> {
      return {positive_leaf(qs, gen), positive_leaf(ks, gen), normal_leaf(vs, gen)};
    };
  };
  const Shape qs{2, 2, 9, 4}, vs{2, 2, 9, 3}, vs16{2, 2, 9, 16};
  const Shape qs1{1, 2, 9, 4}, vs16_1{1, 2, 9, 16};
  std::vector<GradcheckCase> cases;
  for (double decay : {0.0, 0.5, 1.0}) {
    cases.push_back({"decayed_causal_dot_product decay " + std::to_string(decay),
                     {},
                     [decay](const std::vector<Tensor>& x) {
                       return decayed_causal_dot_product(x[0], x[1], x[2], decay);
                     },
                     positive_inputs(qs, qs, vs)});
    cases.push_back({"decayed_causal_linear_attention decay " + std::to_string(decay),
                     {},
                     [decay](const std::vector<Tensor>& x) {
                       return decayed_causal_linear_attention(x[0], x[1], x[2], decay);
                     },
                     positive_inputs(qs, qs, vs)});
  }
  for (double beta : {0.0, 0.3, 0.9}) {
    for (double gamma : {0.6, 2.5}) {
      for (MomentumWeighting wt : {MomentumWeighting::exact, MomentumWeighting::reference}) {
        cases.push_back({std::string("causal_momentum_attention ") + to_string(wt) + " beta " +
                             std::to_string(beta) + " gamma " + std::to_string(gamma),
                         {},
                         [beta, gamma, wt](const std::vector<Tensor>& x) {
                           return causal_momentum_attention(x[0], x[1], x[2], beta, gamma, 1e-6,
                                                            wt);
                         },
                         positive_inputs(qs, qs, beta > 0.5 ? vs16 : vs)});
      }
      cases.push_back(
          {"momentum_attention beta " + std::to_string(beta) + " gamma " + std::to_string(gamma),
           {},
           [beta, gamma](const std::vector<Tensor>& x) {
             return momentum_attention(x[0], x[1], x[2], beta, gamma);
           },
           positive_inputs(qs, {2, 2, 6, 4}, {2, 2, 6, 3})});
      cases.push_back({"momentum_attention with lengths beta " + std::to_string(beta) + " gamma " +
                           std::to_string(gamma),
                       {},
                       [beta, gamma](const std::vector<Tensor>& x) {
                         return momentum_attention(x[0], x[1], x[2], beta, gamma, 1e-6, {4, 9});
                       },
                       positive_inputs(qs, qs, vs)});
    }
  }
  // The fixed-width kernel path (Dv = 16) for the momentum sweep, one head of B = 1.
  cases.push_back({"causal_momentum_attention Dv 16",
                   {},
                   [](const std::vector<Tensor>& x) {
                     return causal_momentum_attention(x[0], x[1], x[2], 0.5, 1.0);
                   },
                   positive_inputs(qs1, qs1, vs16_1)});
  run_gradcheck_table(cases);
}

TEST_CASE("momentum attention agrees in f32 and f64") {
  using Op = Tensor (*)(const Tensor&, const Tensor&, const Tensor&);
  struct Case {
    std::string name;
    Op op;
  };
  const std::vector<Case> cases = {
      {"decayed_causal_dot_product",
       [](const Tensor& q, const Tensor& k, const Tensor& v) {
         return decayed_causal_dot_product(q, k, v, 0.9);
       }},
      {"decayed_causal_linear_attention",
       [](const Tensor& q, const Tensor& k, const Tensor& v) {
         return decayed_causal_linear_attention(q, k, v, 0.9);
       }},
      {"causal_momentum_attention exact",
       [](const Tensor& q, const Tensor& k, const Tensor& v) {
         return causal_momentum_attention(q, k, v, 0.9, 0.6);
       }},
      {"causal_momentum_attention reference",
       [](const Tensor& q, const Tensor& k, const Tensor& v) {
         return causal_momentum_attention(q, k, v, 0.9, 0.6, 1e-6, MomentumWeighting::reference);
       }},
      {"momentum_attention", [](const Tensor& q, const Tensor& k,
                                const Tensor& v) { return momentum_attention(q, k, v, 0.9, 0.6); }},
  };
  for (const Case& c : cases) {
    for (int64_t Dv : {24, 32}) {
      CAPTURE(c.name);
      CAPTURE(Dv);
      const Shape qs{2, 2, 100, 16}, vs{2, 2, 100, Dv};
      const Inputs a = make_inputs(qs, vs, 950);
      check_f32_against_f64(a.q, a.k, a.v, a.dy, c.op, 1e-4);
    }
  }
}

TEST_CASE("momentum attention records one named node, only when an input requires grad") {
  Inputs in = make_inputs({1, 1, 5, 4}, {1, 1, 5, 3}, 960);
  CHECK(decayed_causal_dot_product(in.q, in.k, in.v, 0.5).grad_fn()->name() ==
        "DecayedCausalDotProductBackward");
  CHECK(decayed_causal_linear_attention(in.q, in.k, in.v, 0.5).grad_fn()->name() ==
        "DecayedCausalLinearAttentionBackward");
  CHECK(causal_momentum_attention(in.q, in.k, in.v, 0.5, 1.0).grad_fn()->name() ==
        "CausalMomentumAttentionBackward");
  CHECK(momentum_attention(in.q, in.k, in.v, 0.5, 1.0).grad_fn()->name() ==
        "MomentumAttentionBackward");
  Tensor qd = in.q.detach(), kd = in.k.detach(), vd = in.v.detach();
  CHECK(causal_momentum_attention(qd, kd, vd, 0.5, 1.0).grad_fn() == nullptr);
  NoGradGuard no_grad;
  CHECK(causal_momentum_attention(in.q, in.k, in.v, 0.5, 1.0).grad_fn() == nullptr);
  CHECK(momentum_attention(in.q, in.k, in.v, 0.5, 1.0).grad_fn() == nullptr);
}

TEST_CASE("momentum weighting names round-trip") {
  CHECK(std::string(to_string(MomentumWeighting::exact)) == "exact");
  CHECK(std::string(to_string(MomentumWeighting::reference)) == "reference");
  CHECK(parse_momentum_weighting("exact") == MomentumWeighting::exact);
  CHECK(parse_momentum_weighting("reference") == MomentumWeighting::reference);
  check_error([] { parse_momentum_weighting("paper"); },
              {"parse_momentum_weighting", "\"paper\"", "exact", "reference"});
}

TEST_CASE("causal momentum attention backward keeps O(N·D) memory") {
  // As for causal linear attention: forward + backward at D = Dv = 64 fits in a small
  // multiple of N·D doubles; one D×Dv state per position would need N·D·Dv·8 bytes.
  const int64_t D = 64, Dv = 64;
  auto peak_bytes = [&](int64_t N, MomentumWeighting wt) {
    Generator gen(9);
    Tensor q = positive_leaf({1, 1, N, D}, gen), k = positive_leaf({1, 1, N, D}, gen);
    Tensor v = normal_leaf({1, 1, N, Dv}, gen);
    Tensor dy = Tensor::randn({1, 1, N, Dv}, gen, DType::f64);
    empty_cache();
    reset_peak_allocated();
    const size_t before = allocator_stats().allocated_bytes;
    causal_momentum_attention(q, k, v, 0.9, 0.6, 1e-6, wt).backward(dy);
    CHECK(q.grad().defined());
    return static_cast<double>(allocator_stats().peak_allocated_bytes - before);
  };
  for (MomentumWeighting wt : {MomentumWeighting::exact, MomentumWeighting::reference}) {
    CAPTURE(to_string(wt));
    for (int64_t N : {4096, 8192}) {
      const double peak = peak_bytes(N, wt);
      const double linear_bound = 16.0 * static_cast<double>(N * D) * 8;
      const double per_position_states = static_cast<double>(N * D * Dv) * 8;
      CAPTURE(N);
      CAPTURE(peak);
      CHECK(peak < linear_bound);
      CHECK(peak < per_position_states / 4);
    }
    CHECK(peak_bytes(8192, wt) <= 2.1 * peak_bytes(4096, wt));
  }
}

TEST_CASE("momentum attention rejects bad input") {
  Generator gen(970);
  Tensor q = positive_leaf({2, 2, 6, 4}, gen), k = positive_leaf({2, 2, 6, 4}, gen);
  Tensor v = normal_leaf({2, 2, 6, 3}, gen);
  const double nan = std::nan("");
  const double inf = std::numeric_limits<double>::infinity();

  SUBCASE("beta and gamma") {
    for (double beta : {-0.1, 1.0, 1.5, nan}) {
      CAPTURE(beta);
      check_error([&] { causal_momentum_attention(q, k, v, beta, 1.0); },
                  {"causal_momentum_attention", "beta = ", "expected in [0, 1)"});
      check_error([&] { momentum_attention(q, k, v, beta, 1.0); },
                  {"momentum_attention", "beta = ", "expected in [0, 1)"});
    }
    for (double gamma : {0.0, -1.0, nan, inf}) {
      CAPTURE(gamma);
      check_error([&] { causal_momentum_attention(q, k, v, 0.5, gamma); },
                  {"causal_momentum_attention", "gamma = ", "expected > 0"});
      check_error([&] { momentum_attention(q, k, v, 0.5, gamma); },
                  {"momentum_attention", "gamma = ", "expected > 0"});
    }
    check_error([&] { check_momentum_parameters("my_layer", 1.0, 1.0); },
                {"my_layer: beta = 1, expected in [0, 1)"});
    check_error([&] { causal_momentum_attention(q, k, v, 0.5, 1.0, -1e-6); },
                {"causal_momentum_attention", "eps is -1e-06", "expected a finite value >= 0"});
  }

  SUBCASE("decay") {
    for (double decay : {-0.01, 1.01, nan, inf}) {
      CAPTURE(decay);
      check_error([&] { decayed_causal_dot_product(q, k, v, decay); },
                  {"decayed_causal_dot_product", "decay = ", "expected in [0, 1]"});
      check_error([&] { decayed_causal_linear_attention(q, k, v, decay); },
                  {"decayed_causal_linear_attention", "decay = ", "expected in [0, 1]"});
    }
    check_error([&] { decayed_causal_linear_attention(q, k, v, 0.5, nan); },
                {"decayed_causal_linear_attention", "eps is nan"});
  }

  SUBCASE("lengths") {
    check_error([&] { momentum_attention(q, k, v, 0.5, 1.0, 1e-6, {6}); },
                {"momentum_attention", "lengths has 1 entries", "expected 0 or B = 2"});
    check_error(
        [&] {
          momentum_attention(q, k, v, 0.5, 1.0, 1e-6, {6, 0});
        },
        {"momentum_attention", "lengths[1] = 0", "expected in [1, 6]"});
    check_error(
        [&] {
          momentum_attention(q, k, v, 0.5, 1.0, 1e-6, {7, 6});
        },
        {"momentum_attention", "lengths[0] = 7", "expected in [1, 6]"});
  }

  SUBCASE("shapes and dtypes") {
    Tensor v_short = normal_leaf({2, 2, 5, 3}, gen);
    Tensor k_wide = positive_leaf({2, 2, 6, 5}, gen);
    Tensor k32 = positive_leaf({2, 2, 6, 4}, gen, DType::f32);
    Tensor q3 = positive_leaf({2, 6, 4}, gen);
    check_error([&] { causal_momentum_attention(q, k, v_short, 0.5, 1.0); },
                {"causal_momentum_attention", "v has shape [2,2,5,3]", "[B,H,N,Dv]"});
    check_error([&] { causal_momentum_attention(q, k_wide, v, 0.5, 1.0); },
                {"causal_momentum_attention", "k has shape [2,2,6,5]"});
    check_error([&] { causal_momentum_attention(q, k32, v, 0.5, 1.0); },
                {"causal_momentum_attention", "f32", "f64"});
    check_error([&] { decayed_causal_dot_product(q3, k, v, 0.5); },
                {"decayed_causal_dot_product", "q", "[B,H,N,D]"});
    check_error([&] { decayed_causal_linear_attention(q, k, v_short, 0.5); },
                {"decayed_causal_linear_attention", "v has shape [2,2,5,3]"});
    check_error([&] { momentum_attention(q, k_wide, v, 0.5, 1.0); },
                {"momentum_attention", "k has shape [2,2,6,5]"});
    check_error([&] { momentum_attention(q, k, v_short, 0.5, 1.0); },
                {"momentum_attention", "v has shape [2,2,5,3]"});
    check_error([&] { momentum_attention(q, k32, v, 0.5, 1.0); },
                {"momentum_attention", "f32", "f64"});
  }
}
