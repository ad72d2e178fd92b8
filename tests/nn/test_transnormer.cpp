// TransNormer's attention modules (docs/math.md §5): NormAttention against a naive loop, f64
// gradchecks of both modules, the recurrent form against forward() across block
// boundaries, gradient inspection, the "transnormer" model stack, bad configs and states.
//
// Dimension legend: B batch, N length, d model width, H heads, D head dim, L block length.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "nn/helpers.h"
#include "ops/attention/helpers.h"
#include "polyak/nn/transnormer.h"
#include "polyak/ops/attention/norm_attention.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

AttentionConfig config(const std::string& kind, bool causal,
                       const std::string& feature_map = "elu") {
  AttentionConfig c;
  c.kind = kind;
  c.d_model = 6;
  c.heads = 2;
  c.causal = causal;
  if (kind == "norm") c.params = NormParams{.feature_map = feature_map};
  if (kind == "diag") c.params = DiagParams{.block_size = 4};
  return c;
}

std::shared_ptr<Attention> make_f64(const AttentionConfig& c, uint64_t seed = 3) {
  Generator gen(seed);
  auto attn = make_attention(c, gen);
  attn->to(DType::f64);
  return attn;
}

Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::f64) {
  Generator gen(seed);
  return Tensor::randn(shape, gen, dtype);
}

// NormAttention's block in plain loops, from the module's parameters:
//   q, k, v = x W_{q,k,v}ᵀ + b_{q,k,v}                           (rows of qkv_proj)
//   o_i = Σ_j (φ(q_i)·φ(k_j)) v_j per head, j ≤ i when causal
//   y_i = o_i / (‖o_i‖₂ (H·D)^{−1/2} + 1e−8) over the H·D values of position i
//   out_i = W_o y_i + b_o
std::vector<double> norm_attention_reference(const Attention& m, const Tensor& x) {
  const AttentionConfig& c = m.config();
  const int64_t B = x.size(0), N = x.size(1), d = c.d_model, H = c.heads;
  const int64_t D = c.resolved_head_dim(), inner = H * D;
  const std::vector<double> xs = x.to_vector(), w = m.qkv_proj->weight.to_vector(),
                            bias = m.qkv_proj->bias.to_vector(),
                            wo = m.out_proj->weight.to_vector(), bo = m.out_proj->bias.to_vector();
  auto at = [](const std::vector<double>& t, int64_t i) { return t[static_cast<size_t>(i)]; };
  auto phi = [&](double z) {
    const double elu = z > 0 ? z : std::exp(z) - 1;
    return c.params.as<NormParams>().feature_map == "plain-elu" ? elu : elu + 1;
  };
  // proj[b][n][r] for r < 3·inner: q, then k, then v.
  std::vector<double> proj(static_cast<size_t>(B * N * 3 * inner));
  for (int64_t t = 0; t < B * N; ++t)
    for (int64_t r = 0; r < 3 * inner; ++r) {
      double s = at(bias, r);
      for (int64_t a = 0; a < d; ++a) s += at(w, r * d + a) * at(xs, t * d + a);
      proj[static_cast<size_t>(t * 3 * inner + r)] = r < 2 * inner ? phi(s) : s;
    }
  auto q = [&](int64_t b, int64_t n, int64_t h, int64_t a) {
    return at(proj, (b * N + n) * 3 * inner + h * D + a);
  };
  auto k = [&](int64_t b, int64_t n, int64_t h, int64_t a) { return q(b, n, h, a + inner); };
  auto v = [&](int64_t b, int64_t n, int64_t h, int64_t a) { return q(b, n, h, a + 2 * inner); };

  std::vector<double> out(static_cast<size_t>(B * N * d));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < N; ++i) {
      std::vector<double> o(static_cast<size_t>(inner), 0.0);
      for (int64_t h = 0; h < H; ++h)
        for (int64_t j = 0; j < (c.causal ? i + 1 : N); ++j) {
          double score = 0;
          for (int64_t a = 0; a < D; ++a) score += q(b, i, h, a) * k(b, j, h, a);
          for (int64_t a = 0; a < D; ++a)
            o[static_cast<size_t>(h * D + a)] += score * v(b, j, h, a);
        }
      double squares = 0;
      for (double e : o) squares += e * e;
      const double denom = std::sqrt(squares / static_cast<double>(inner)) + 1e-8;
      for (int64_t r = 0; r < d; ++r) {
        double s = at(bo, r);
        for (int64_t a = 0; a < inner; ++a) s += at(wo, r * inner + a) * at(o, a) / denom;
        out[static_cast<size_t>((b * N + i) * d + r)] = s;
      }
    }
  return out;
}

const std::vector<std::string> kParameterPaths = {"qkv_proj.weight", "qkv_proj.bias",
                                                  "out_proj.weight", "out_proj.bias"};

}  // namespace

// ---- NormAttention ---------------------------------------------------------------------

TEST_CASE("NormAttention equals SRMSNorm(phi(Q) (phi(K)^T V)) computed by loops") {
  for (bool causal : {true, false}) {
    for (std::string map : {"elu", "plain-elu"}) {
      CAPTURE(causal);
      CAPTURE(map);
      auto attn = make_f64(config("norm", causal, map));
      REQUIRE(dynamic_cast<NormAttention*>(attn.get()) != nullptr);
      Tensor x = randn({2, 7, 6}, 4);
      Tensor y = attn->forward(x);
      REQUIRE(y.shape() == x.shape());
      CHECK(relative_error(y.to_vector(), norm_attention_reference(*attn, x)) <= 1e-12);
    }
  }
}

TEST_CASE("gradcheck (f64, random cotangent): NormAttention w.r.t. x and its weights") {
  for (bool causal : {true, false}) {
    for (std::string map : {"elu", "plain-elu"}) {
      CAPTURE(causal);
      CAPTURE(map);
      auto attn = make_f64(config("norm", causal, map));
      GradcheckResult r = gradcheck_module(*attn, randn({2, 5, 6}, 5), kParameterPaths,
                                           [&](const Tensor& x) { return attn->forward(x); });
      INFO(r.message);
      CHECK(r.ok);
    }
  }
}

TEST_CASE("NormAttention: gradient inspection sees the normed output's gradient") {
  auto attn = make_f64(config("norm", true));
  attn->inspect_gradients(true);
  Tensor x = randn({2, 5, 6}, 6).requires_grad_();
  Tensor c = randn({2, 5, 6}, 7);
  sum(attn->forward(x) * c).backward();
  const AttentionGradNorms& g = attn->gradient_norms();
  CHECK(g.backwards == 1);
  CHECK(g.q > 0);
  CHECK(g.k > 0);
  CHECK(g.v > 0);
  // out = y W_oᵀ + b_o, so the gradient at y (the input of out_proj) is c W_o.
  Tensor dy = matmul(c, attn->out_proj->weight.detach());
  CHECK(g.out == doctest::Approx(std::sqrt(sum(square(dy)).item())).epsilon(1e-12));
}

// ---- DiagAttention ---------------------------------------------------------------------

TEST_CASE("DiagAttention mixes with block_softmax_attention inside blocks of block_size") {
  for (bool causal : {true, false}) {
    CAPTURE(causal);
    AttentionConfig c = config("diag", causal);
    auto attn = make_f64(c);
    REQUIRE(dynamic_cast<DiagAttention*>(attn.get()) != nullptr);
    Tensor x = randn({2, 8, 6}, 8);
    // The same block built from the ops: project, split, block attention, merge, project.
    NoGradGuard no_grad;
    auto part = [&](int64_t i) {
      return split_heads(linear(x, attn->qkv_proj->weight.narrow0(6 * i, 6 * i + 6),
                                attn->qkv_proj->bias.narrow0(6 * i, 6 * i + 6)),
                         2);
    };
    Tensor mixed = block_softmax_attention(part(0), part(1), part(2), 4, causal);
    Tensor expected = attn->out_proj->forward(merge_heads(mixed));
    CHECK(max_abs_diff(attn->forward(x), expected) < 1e-14);
    // Positions of different blocks do not mix: changing the second block leaves the
    // first block's outputs alone.
    std::vector<double> changed = x.to_vector();
    for (size_t i = 0; i < changed.size(); ++i)
      if ((i / 6) % 8 >= 4) changed[i] += 1.0;
    Tensor y0 = attn->forward(x), y1 = attn->forward(Tensor::from(changed, x.shape(), DType::f64));
    CHECK(max_abs_diff(slice(y0, 1, 0, 4), slice(y1, 1, 0, 4)) == 0);
    CHECK(max_abs_diff(slice(y0, 1, 4, 8), slice(y1, 1, 4, 8)) > 1e-3);
  }
}

TEST_CASE("gradcheck (f64, random cotangent): DiagAttention w.r.t. x and its weights") {
  struct Case {
    bool causal;
    int64_t N;
  };
  for (Case c : {Case{true, 7}, Case{true, 3}, Case{false, 8}, Case{false, 3}}) {
    CAPTURE(c.causal);
    CAPTURE(c.N);
    auto attn = make_f64(config("diag", c.causal));
    GradcheckResult r = gradcheck_module(*attn, randn({2, c.N, 6}, 9), kParameterPaths,
                                         [&](const Tensor& x) { return attn->forward(x); });
    INFO(r.message);
    CHECK(r.ok);
  }
}

// ---- recurrent form --------------------------------------------------------------------

TEST_CASE("recurrent: NormAttention and DiagAttention step exactly like forward()") {
  struct Case {
    std::string kind, map;
  };
  for (const Case& c : {Case{"norm", "elu"}, Case{"norm", "plain-elu"}, Case{"diag", "elu"}}) {
    for (DType dtype : {DType::f64, DType::f32}) {
      CAPTURE(c.kind);
      CAPTURE(c.map);
      CAPTURE(dtype);
      Generator gen(11);
      auto attn = make_attention(config(c.kind, true, c.map), gen);  // block_size 4
      attn->to(dtype);
      Tensor x = randn({2, 11, 6}, 12, dtype);  // blocks [0,4), [4,8), [8,11)
      check_agree(attn->forward(x), step_through(*attn, x));
    }
  }
}

TEST_CASE(
    "recurrent: the states' layouts, and the model stack of DiagAttention then NormAttention") {
  Generator gen(13);
  auto norm = make_attention(config("norm", true), gen);
  AttentionState ns = norm->initial_state(3);
  REQUIRE(ns.tensors.size() == 1);
  CHECK(ns.tensors[0].shape() == Shape({3, 2, 3, 3}));  // s [B,H,D',D]
  auto diag = make_attention(config("diag", true), gen);
  AttentionState ds = diag->initial_state(3);
  REQUIRE(ds.tensors.size() == 2);
  CHECK(ds.tensors[0].shape() == Shape({3, 2, 4, 3}));  // k_cache [B,H,L,D]
  CHECK(ds.tensors[1].shape() == Shape({3, 2, 4, 3}));  // v_cache [B,H,L,D]
  // The state stays one block long however far generation goes.
  Tensor x = randn({3, 9, 6}, 14, DType::f32);
  for (int64_t t = 0; t < 9; ++t) diag->step(slice(x, 1, t, t + 1), ds);
  CHECK(ds.tensors[0].shape() == Shape({3, 2, 4, 3}));

  TransformerConfig mc;
  set_model_kind(mc, "transnormer");
  mc.vocab = 7;
  mc.max_len = 11;
  mc.d_model = 8;
  mc.heads = 2;
  mc.ff_dim = 16;
  mc.layers = 2;
  mc.attention_params = TransNormerParams{.block_size = 4};
  mc.positions = "learned";
  mc.seed = 2;
  TransformerLM model(mc);
  model.to(DType::f64);
  model.eval();
  REQUIRE(dynamic_cast<DiagAttention*>((*model.layers)[0]->attention.get()) != nullptr);
  REQUIRE(dynamic_cast<NormAttention*>((*model.layers)[1]->attention.get()) != nullptr);
  const int64_t B = 2, N = 11;
  std::vector<int64_t> values(static_cast<size_t>(B * N));
  for (int64_t i = 0; i < B * N; ++i) values[static_cast<size_t>(i)] = (i * 5 + 1) % 7;
  const Tensor tokens = ids({B, N}, values);
  ModelState state = model.initial_state(B);
  std::vector<Tensor> rows;
  for (int64_t t = 0; t < N; ++t)
    rows.push_back(model.step(slice(tokens, 1, t, t + 1).reshape({B}), state).reshape({B, 1, 7}));
  check_agree(model(tokens), concat(rows, 1));
}

// ---- bad input -------------------------------------------------------------------------

TEST_CASE("TransNormer modules: bad configs, inputs and states are errors") {
  Generator gen(15);
  for (int64_t block : {0, -2}) {
    AttentionConfig c = config("diag", true);
    c.params = DiagParams{.block_size = block};
    check_error([&] { c.validate(); }, {"AttentionConfig: block_size = " + std::to_string(block),
                                        "expected a positive integer"});
    check_error([&] { make_attention(c, gen); }, {"block_size = " + std::to_string(block)});
  }

  auto diag = make_attention(config("diag", false), gen);
  // Not causal, a partial last block is a block of its own (the op itself asks for whole
  // blocks; tests/nn/test_padding.cpp checks the values).
  CHECK(diag->forward(randn({1, 6, 6}, 16, DType::f32)).shape() == Shape({1, 6, 6}));
  check_error([&] { diag->initial_state(1); }, {"not causal"});
  auto norm = make_attention(config("norm", false), gen);
  check_error([&] { norm->initial_state(1); }, {"not causal"});
  check_error(
      [&] {
        norm->forward(randn({1, 6, 5}, 17, DType::f32));
      },
      {"NormAttention: x has shape [1,6,5]", "expected [B, N, 6]"});

  Tensor x = randn({2, 1, 6}, 18, DType::f32);
  auto causal_diag = make_attention(config("diag", true), gen);
  AttentionState ds = causal_diag->initial_state(2);
  ds.tensors[1] = Tensor::zeros({2, 2, 5, 3});
  check_error(
      [&] { causal_diag->step(x, ds); },
      {"Attention::step: state tensor 'v_cache' has shape [2,2,5,3]", "expected [2,2,4,3]"});
  auto causal_norm = make_attention(config("norm", true), gen);
  AttentionState ns = causal_norm->initial_state(2);
  ns.tensors[0] = Tensor::zeros({2, 2, 3, 4});
  check_error([&] { causal_norm->step(x, ns); },
              {"Attention::step: state tensor 's' has shape [2,2,3,4]", "expected [2,2,3,3]"});
  check_error([&] { causal_norm->step(x, ds); },
              {"the state was made by a 'diag' attention", "expected one made by a 'norm'"});
}
