// Layers: gradchecks (f64, random cotangent) of every module, shapes, positions, configs.
#include <cmath>
#include <memory>

#include "helpers.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::gradcheck_module;
using polyak::testing::has_causal_form;
using polyak::testing::has_form;
using polyak::testing::has_qkv_projections;
using polyak::testing::ids;
using polyak::testing::max_abs_diff;
using polyak::testing::parameter_sample;
using polyak::testing::use_test_sizes;

namespace {

// Converts `m` to f64 and redraws every parameter from N(0, 0.5²) + 0.1 (so that a norm's
// gain is not all ones and a bias not all zeros, which would hide a missing factor).
void prepare_f64(Module& m, uint64_t seed) {
  m.to(DType::f64);
  Generator gen(seed);
  NoGradGuard no_grad;
  for (Tensor p : m.parameters()) {
    Tensor r = Tensor::randn(p.shape(), gen, DType::f64);
    double* d = r.data<double>();
    for (int64_t i = 0; i < r.numel(); ++i) d[i] = 0.5 * d[i] + 0.1;
    p.copy_(r);
  }
}

Tensor randn64(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return Tensor::randn(shape, gen, DType::f64);
}

void check_ok(const GradcheckResult& r) {
  INFO(r.message);
  CHECK(r.ok);
}

AttentionConfig attention_config(const std::string& kind, bool causal) {
  AttentionConfig c;
  c.kind = kind;
  c.d_model = 8;
  c.heads = 2;
  c.causal = causal;
  use_test_sizes(c);
  return c;
}

}  // namespace

TEST_CASE("gradcheck: Linear") {
  Generator gen(1);
  Linear lin(4, 5, gen);
  prepare_f64(lin, 2);
  check_ok(gradcheck_module(lin, randn64({2, 3, 4}, 3), {"weight", "bias"},
                            [&](const Tensor& x) { return lin(x); }));
}

TEST_CASE("gradcheck: LayerNorm and RMSNorm") {
  LayerNorm ln(6);
  prepare_f64(ln, 1);
  check_ok(gradcheck_module(ln, randn64({2, 3, 6}, 2), {"weight", "bias"},
                            [&](const Tensor& x) { return ln(x); }));
  RMSNorm rms(6, 1e-6);
  prepare_f64(rms, 3);
  check_ok(gradcheck_module(rms, randn64({2, 3, 6}, 4), {"weight"},
                            [&](const Tensor& x) { return rms(x); }));
}

TEST_CASE("gradcheck: FeedForward") {
  for (std::string act : {"relu", "gelu"}) {
    SUBCASE(act.c_str()) {
      Generator gen(1);
      FeedForward ff(4, 6, act, 0.0, gen);
      prepare_f64(ff, 2);
      check_ok(gradcheck_module(ff, randn64({2, 3, 4}, 3), {"linear1.weight", "linear2.bias"},
                                [&](const Tensor& x) { return ff(x); }));
    }
  }
}

TEST_CASE("gradcheck: attention kinds, causal and not") {
  for (const std::string& kind : attention_kinds()) {
    for (bool causal : {true, false}) {
      if (!has_form(kind, causal)) continue;
      std::string name = kind + (causal ? " causal" : " non-causal");
      SUBCASE(name.c_str()) {
        Generator gen(1);
        auto attn = make_attention(attention_config(kind, causal), gen);
        prepare_f64(*attn, 2);
        check_ok(gradcheck_module(*attn, randn64({2, 5, 8}, 3), parameter_sample(*attn, "", 4),
                                  [&](const Tensor& x) { return attn->forward(x); }));
      }
    }
  }
}

TEST_CASE("gradcheck: TransformerLayer, post-norm and pre-norm") {
  for (const std::string& kind : attention_kinds()) {
    for (bool pre : {false, true}) {
      std::string name = kind + (pre ? " pre-norm" : " post-norm");
      SUBCASE(name.c_str()) {
        TransformerLayerConfig c;
        c.attention = attention_config(kind, has_causal_form(kind));
        c.ff_dim = 12;
        c.pre_norm = pre;
        Generator gen(1);
        TransformerLayer layer(c, gen);
        prepare_f64(layer, 2);
        std::vector<std::string> paths = parameter_sample(layer, "attention.", 2);
        for (const char* p : {"norm1.weight", "feed_forward.linear1.weight", "norm2.bias"})
          paths.emplace_back(p);
        check_ok(gradcheck_module(layer, randn64({2, 4, 8}, 3), paths,
                                  [&](const Tensor& x) { return layer(x); }));
      }
    }
  }
}

TEST_CASE("TransformerLayer: post-norm and pre-norm compute the documented formulas") {
  for (bool pre : {false, true}) {
    TransformerLayerConfig c;
    c.attention = attention_config("softmax", true);
    c.pre_norm = pre;
    Generator gen(1);
    TransformerLayer layer(c, gen);
    Tensor x = Tensor::randn({2, 3, 8}, gen);
    Tensor expected;
    if (pre) {
      Tensor h = x + layer.attention->forward(layer.norm1->forward(x));
      expected = h + layer.feed_forward->forward(layer.norm2->forward(h));
    } else {
      Tensor h = layer.norm1->forward(x + layer.attention->forward(x));
      expected = layer.norm2->forward(h + layer.feed_forward->forward(h));
    }
    CHECK(max_abs_diff(layer(x), expected) < 1e-6);
  }
}

TEST_CASE("TransformerLayer: with dropout, the fused residual joins equal the composition") {
  // Two layers from one seed, in training with p = 0.3: layer(x) (each sublayer's closing
  // dropout and the residual sum in one pass) against the same formulas spelled out with
  // forward(), which draws the same masks in the same order. Values and gradients agree
  // (to rounding: the fused sum may be one multiply-add).
  for (const char* kind : {"linear", "momentum", "mega"})
    for (bool pre : {false, true}) {
      INFO("kind " << std::string(kind) << (pre ? " pre-norm" : " post-norm"));
      TransformerLayerConfig c;
      c.attention = attention_config(kind, true);
      c.attention.dropout = 0.3;
      c.dropout = 0.3;
      c.ff_dim = 12;
      c.pre_norm = pre;
      Generator ga(1), gb(1);
      TransformerLayer fused(c, ga), spelled(c, gb);
      fused.train();
      spelled.train();
      Generator data(5);
      const Tensor x0 = Tensor::randn({2, 6, 8}, data);
      const Tensor cot = Tensor::randn({2, 6, 8}, data);
      Tensor xa = x0.clone().requires_grad_(), xb = x0.clone().requires_grad_();
      Tensor ya = fused(xa), yb;
      if (pre) {
        Tensor h = xb + spelled.attention->forward(spelled.norm1->forward(xb));
        yb = h + spelled.feed_forward->forward(spelled.norm2->forward(h));
      } else {
        Tensor h = spelled.norm1->forward(xb + spelled.attention->forward(xb));
        yb = spelled.norm2->forward(h + spelled.feed_forward->forward(h));
      }
      CHECK(max_abs_diff(ya, yb) < 1e-6);  // a fused multiply-add may round the sum once
      ya.backward(cot);
      yb.backward(cot);
      CHECK(max_abs_diff(xa.grad(), xb.grad()) < 1e-5);
      CHECK(max_abs_diff(fused.feed_forward->linear1->weight.grad(),
                         spelled.feed_forward->linear1->weight.grad()) < 1e-5);
      // Dropout is on: some of the stream's values differ from the dropout-free layer's.
      fused.eval();
      CHECK(max_abs_diff(fused(x0), ya.detach()) > 1e-3);
    }
}

TEST_CASE("attention: every kind maps [B,N,d] to [B,N,d], head_dim may differ from d/H") {
  for (const std::string& kind : attention_kinds()) {
    for (bool causal : {true, false}) {
      if (!has_form(kind, causal)) continue;
      AttentionConfig c = attention_config(kind, causal);
      c.head_dim = 3;
      Generator gen(0);
      auto attn = make_attention(c, gen);
      if (has_qkv_projections(kind)) {
        CHECK(attn->qkv_proj->weight.shape() == Shape({18, 8}));
        CHECK(attn->out_proj->weight.shape() == Shape({8, 6}));
      }
      Tensor y = attn->forward(Tensor::randn({3, 7, 8}, gen));
      CHECK(y.shape() == Shape({3, 7, 8}));
    }
  }
}

TEST_CASE("attention: causal kinds do not look ahead") {
  for (const std::string& kind : attention_kinds()) {
    if (!has_causal_form(kind)) continue;
    Generator gen(0);
    auto attn = make_attention(attention_config(kind, true), gen);
    Tensor x = Tensor::randn({1, 6, 8}, gen);
    Tensor x2 = x.clone().detach();
    x2.data<float>()[4 * 8 + 1] += 1.0f;  // change position 4
    std::vector<double> a = attn->forward(x).to_vector(), b = attn->forward(x2).to_vector();
    for (int64_t i = 0; i < 4 * 8; ++i) CHECK(a[i] == b[i]);
    double later = 0;
    for (int64_t i = 4 * 8; i < 6 * 8; ++i) later = std::max(later, std::abs(a[i] - b[i]));
    CHECK(later > 1e-4);
  }
}

TEST_CASE("attention: config errors name the field") {
  Generator gen(0);
  AttentionConfig c = attention_config("reformer", true);
  check_error([&] { make_attention(c, gen); },
              {"AttentionConfig", "kind = 'reformer'", "softmax, linear", "mega-chunk"});
  c = attention_config("softmax", true);
  c.heads = 3;
  check_error([&] { make_attention(c, gen); }, {"d_model = 8", "heads = 3"});
  c.head_dim = 4;  // explicit head_dim: any heads
  CHECK(make_attention(c, gen)->out_proj->weight.shape() == Shape({8, 12}));
  c = attention_config("linear", true);
  c.params = LinearParams{.feature_map = "relu"};
  check_error([&] { make_attention(c, gen); }, {"feature_map = 'relu'", "elu, plain-elu"});
  c = attention_config("linear", true);
  c.dropout = -0.1;
  check_error([&] { make_attention(c, gen); }, {"dropout = -0.1"});
}

TEST_CASE("positions: sinusoidal table, offsets, extension, not a parameter") {
  SinusoidalPositions pos(4, 6);
  CHECK(pos.named_parameters().empty());
  CHECK(pos.state_dict().empty());
  CHECK(pos.named_buffers().size() == 1);
  Tensor zeros = Tensor::zeros({1, 4, 6});
  std::vector<double> t = pos(zeros).to_vector();
  CHECK(t[0] == 0.0);                                                             // sin(0)
  CHECK(t[1] == 1.0);                                                             // cos(0)
  CHECK(std::abs(t[6 + 0] - std::sin(1.0)) < 1e-6);                               // P[1, 0]
  CHECK(std::abs(t[6 + 3] - std::cos(1.0 / std::pow(10000.0, 2.0 / 6))) < 1e-6);  // P[1, 3]

  // Positions [2, 3) through the offset equal row 2 of the full table; beyond max_len the
  // table extends with the same formula.
  Tensor one = pos(Tensor::zeros({1, 1, 6}), 2);
  for (int64_t i = 0; i < 6; ++i) CHECK(one.to_vector()[i] == t[12 + i]);
  Tensor far = pos(Tensor::zeros({1, 3, 6}), 9);
  CHECK(std::abs(far.to_vector()[2 * 6 + 0] - std::sin(11.0)) < 1e-6);
  CHECK(std::abs(pos(zeros).to_vector()[6] - std::sin(1.0)) < 1e-6);

  pos.to(DType::f64);
  CHECK(pos(Tensor::zeros({1, 2, 6}, DType::f64)).dtype() == DType::f64);
}

TEST_CASE("positions: learned, with offset and a max_len bound") {
  Generator gen(0);
  LearnedPositions pos(5, 4, gen);
  CHECK(pos.named_parameters().size() == 1);
  Tensor x = Tensor::zeros({2, 2, 4});
  Tensor y = pos(x, 3);
  std::vector<double> w = pos.weight.to_vector(), v = y.to_vector();
  for (int64_t i = 0; i < 8; ++i) CHECK(v[i] == w[3 * 4 + i]);
  check_error([&] { pos(x, 4); }, {"LearnedPositions", "[4, 6)", "max_len = 5"});
  check_error([&] { pos(Tensor::zeros({2, 2, 3})); }, {"LearnedPositions", "[2,2,3]"});
}

TEST_CASE("embedding: lookup and N(0, 1) init") {
  Generator gen(0);
  Embedding emb(50, 40, gen);
  double s = 0, s2 = 0;
  for (double w : emb.weight.to_vector()) s += w, s2 += w * w;
  double n = 2000, mean = s / n, var = s2 / n - mean * mean;
  CHECK(std::abs(mean) < 0.1);
  CHECK(std::abs(var - 1.0) < 0.15);
  Tensor y = emb(ids({2, 1}, {3, 49}));
  CHECK(y.shape() == Shape({2, 1, 40}));
  for (int64_t i = 0; i < 40; ++i)
    CHECK(y.to_vector()[40 + i] == emb.weight.to_vector()[49 * 40 + i]);
}
