// The retention kind (nn/retention.h, docs/math.md §3.4): its three forms against a naive
// reference in f64, gradcheck, and its settings and errors. The generic kind suites
// (test_layers, test_transformer, test_recurrent_model, test_checkpoint, the cli suites) run
// it as they run every kind.
#include <doctest/doctest.h>

#include <cmath>

#include "helpers.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::gradcheck_module;

namespace {

AttentionConfig retention_config(const std::string& gate = "swish") {
  AttentionConfig c;
  c.kind = "retention";
  c.d_model = 6;
  c.heads = 3;  // D = 2; γ = 1 − 2⁻⁵, 1 − 2⁻⁶, 1 − 2⁻⁷
  c.params = RetentionParams{.gate = gate};
  return c;
}

// A module in f64 with every parameter redrawn from N(0, 0.5²) + 0.1, so that the norm's
// scale is not all ones and its shift not all zeros.
std::shared_ptr<RetentionAttention> make_f64(const AttentionConfig& c, uint64_t seed) {
  Generator gen(seed);
  auto attn = std::dynamic_pointer_cast<RetentionAttention>(make_attention(c, gen));
  REQUIRE(attn != nullptr);
  attn->to(DType::f64);
  NoGradGuard no_grad;
  for (Tensor p : attn->parameters()) {
    Tensor r = Tensor::randn(p.shape(), gen, DType::f64);
    p.copy_(r * 0.5 + 0.1);
  }
  return attn;
}

Tensor randn64(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return Tensor::randn(shape, gen, DType::f64);
}

// docs/math.md §3.4 in plain loops over the module's parameters: x [B, N, d] → [B, N, d].
std::vector<double> retention_reference(const RetentionAttention& m, const Tensor& x) {
  const AttentionConfig& c = m.config();
  const int64_t B = x.size(0), N = x.size(1), d = c.d_model, H = c.heads;
  const int64_t D = c.resolved_head_dim(), inner = H * D;
  const double eps = c.params.as<RetentionParams>().norm_eps;
  const std::vector<double> xs = x.to_vector(), w = m.qkv_proj->weight.to_vector(),
                            b = m.qkv_proj->bias.to_vector(), wo = m.out_proj->weight.to_vector(),
                            bo = m.out_proj->bias.to_vector(), nw = m.norm_weight.to_vector(),
                            nb = m.norm_bias.to_vector();
  std::vector<double> wg, bg;
  if (m.gate_proj) {
    wg = m.gate_proj->weight.to_vector();
    bg = m.gate_proj->bias.to_vector();
  }
  auto at = [](const std::vector<double>& t, int64_t i) { return t[static_cast<size_t>(i)]; };
  // rows[t][r]: row r of x_t W + b for a weight of `rows` rows.
  auto project = [&](const std::vector<double>& wt, const std::vector<double>& bt, int64_t t,
                     int64_t r) {
    double s = at(bt, r);
    for (int64_t a = 0; a < d; ++a) s += at(wt, r * d + a) * at(xs, t * d + a);
    return s;
  };
  std::vector<double> out(static_cast<size_t>(B * N * d));
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t i = 0; i < N; ++i) {
      const int64_t ti = bi * N + i;
      std::vector<double> y(static_cast<size_t>(inner));
      for (int64_t h = 0; h < H; ++h) {
        const double gamma = 1.0 - std::pow(2.0, -5.0 - static_cast<double>(h));
        std::vector<double> o(static_cast<size_t>(D), 0.0);
        for (int64_t j = 0; j <= i; ++j) {
          const int64_t tj = bi * N + j;
          double qk = 0;
          for (int64_t e = 0; e < D; ++e)
            qk += project(w, b, ti, h * D + e) * project(w, b, tj, inner + h * D + e);
          const double weight = std::pow(gamma, static_cast<double>(i - j)) * qk / std::sqrt(D);
          for (int64_t e = 0; e < D; ++e)
            o[static_cast<size_t>(e)] += weight * project(w, b, tj, 2 * inner + h * D + e);
        }
        double mean = 0, var = 0;
        for (double v : o) mean += v / static_cast<double>(D);
        for (double v : o) var += (v - mean) * (v - mean) / static_cast<double>(D);
        for (int64_t e = 0; e < D; ++e) {
          const int64_t ch = h * D + e;
          y[static_cast<size_t>(ch)] =
              (o[static_cast<size_t>(e)] - mean) / std::sqrt(var + eps) * at(nw, ch) + at(nb, ch);
        }
      }
      if (m.gate_proj)
        for (int64_t ch = 0; ch < inner; ++ch) {
          const double g = project(wg, bg, ti, ch);
          y[static_cast<size_t>(ch)] *= g / (1.0 + std::exp(-g));
        }
      for (int64_t r = 0; r < d; ++r) {
        double s = at(bo, r);
        for (int64_t ch = 0; ch < inner; ++ch)
          s += at(wo, r * inner + ch) * y[static_cast<size_t>(ch)];
        out[static_cast<size_t>(ti * d + r)] = s;
      }
    }
  return out;
}

double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("retention: the parallel and recurrent forms equal the naive reference (f64)") {
  for (std::string gate : {"swish", "none"}) {
    CAPTURE(gate);
    auto attn = make_f64(retention_config(gate), 3);
    attn->eval();
    CHECK(attn->decays() == std::vector<double>{1 - 1.0 / 32, 1 - 1.0 / 64, 1 - 1.0 / 128});
    CHECK((attn->gate_proj != nullptr) == (gate == "swish"));
    const int64_t B = 2, N = 9;
    const Tensor x = randn64({B, N, 6}, 4);
    const std::vector<double> ref = retention_reference(*attn, x);
    const Tensor y = attn->forward(x);
    CHECK(max_diff(y.to_vector(), ref) <= 1e-10);

    AttentionState state = attn->initial_state(B);
    std::vector<Tensor> rows;
    for (int64_t t = 0; t < N; ++t) rows.push_back(attn->step(slice(x, 1, t, t + 1), state));
    CHECK(state.position == N);
    CHECK(max_diff(concat(rows, 1).to_vector(), ref) <= 1e-10);
  }
}

TEST_CASE("retention: gradcheck (f64, random cotangent) through x and every kind of parameter") {
  auto attn = make_f64(retention_config(), 5);
  const GradcheckResult r = gradcheck_module(
      *attn, randn64({2, 5, 6}, 6),
      {"qkv_proj.weight", "gate_proj.weight", "norm_weight", "norm_bias", "out_proj.bias"},
      [&](const Tensor& x) { return attn->forward(x); });
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("retention: its settings and errors come from its table") {
  Generator gen(0);
  AttentionConfig c = retention_config();
  c.params = RetentionParams{.gate = "relu"};
  check_error([&] { make_attention(c, gen); },
              {"AttentionConfig: gate = 'relu'", "one of: swish, none"});
  c.params = RetentionParams{.norm_eps = 0};
  check_error([&] { make_attention(c, gen); }, {"AttentionConfig: norm_eps = 0"});
  c = retention_config();
  c.causal = false;
  check_error([&] { make_attention(c, gen); },
              {"kind = 'retention' with causal = false", "no non-causal form"});
  auto attn = make_attention(retention_config(), gen);
  check_error(
      [&] {
        attn->forward(Tensor::zeros({2, 3, 5}));
      },
      {"RetentionAttention", "x has shape [2,3,5]", "[B, N, 6]"});
  AttentionState state = attn->initial_state(2);
  CHECK(state.tensors.at(0).shape() == Shape({2, 3, 2, 2}));
  check_error([&] { attn->step(Tensor::zeros({3, 1, 6}), state); }, {"batch 3", "batch 2"});
}
