// TransformerLM: parameters, state dicts, modes, dtypes, causality, gradients, configs.
#include <cmath>
#include <memory>

#include "fake_device.h"
#include "nn/helpers.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::gradcheck_module;
using polyak::testing::has_causal_form;
using polyak::testing::has_form;
using polyak::testing::ids;
using polyak::testing::ids_filled;
using polyak::testing::max_abs_diff;
using polyak::testing::parameter_sample;
using polyak::testing::use_test_sizes;

namespace {

// The tiny model of the gradient tests: 2 layers, d 8, 2 heads, vocab 5, N ≤ 6.
TransformerConfig tiny(const std::string& attention = "softmax") {
  TransformerConfig c;
  c.vocab = 5;
  c.max_len = 6;
  c.d_model = 8;
  c.heads = 2;
  c.ff_dim = 16;
  c.layers = 2;
  c.dropout = 0.0;
  c.attention = attention;
  c.positions = "learned";
  c.seed = 11;
  c.causal = has_causal_form(attention);
  use_test_sizes(c);
  return c;
}

Tensor tokens_2x6() {
  return ids({2, 6}, {1, 4, 0, 2, 3, 1, 4, 4, 2, 0, 1, 3});
}

}  // namespace

TEST_CASE("TransformerLM: parameter names, order and count of a known config") {
  TransformerLM model(tiny());
  std::vector<std::string> expected = {"embedding.weight", "positions.weight"};
  for (std::string l : {"layers.0.", "layers.1."})
    for (std::string n :
         {"attention.qkv_proj.weight", "attention.qkv_proj.bias", "attention.out_proj.weight",
          "attention.out_proj.bias", "norm1.weight", "norm1.bias", "feed_forward.linear1.weight",
          "feed_forward.linear1.bias", "feed_forward.linear2.weight", "feed_forward.linear2.bias",
          "norm2.weight", "norm2.bias"})
      expected.push_back(l + n);
  for (std::string n : {"final_norm.weight", "final_norm.bias", "head.weight", "head.bias"})
    expected.push_back(n);

  NamedTensors params = model.named_parameters();
  REQUIRE(params.size() == expected.size());
  for (size_t i = 0; i < params.size(); ++i) {
    CHECK(params[i].first == expected[i]);
    CHECK(params[i].second.name() == expected[i]);
  }
  CHECK(model.parameter("layers.1.attention.qkv_proj.weight").shape() == Shape({24, 8}));
  CHECK(model.parameter("layers.0.feed_forward.linear2.weight").shape() == Shape({8, 16}));

  // By hand: embedding 5·8 = 40, learned positions 6·8 = 48;
  // per layer: qkv 24·8 + 24 = 216, out 8·8 + 8 = 72, two norms 2·16 = 32,
  //            linear1 16·8 + 16 = 144, linear2 8·16 + 8 = 136        → 600;
  // final norm 16, head 5·8 + 5 = 45.   40 + 48 + 2·600 + 16 + 45 = 1349.
  CHECK(model.num_parameters() == 1349);

  TransformerConfig c = tiny();
  c.positions = "sinusoidal";
  c.final_norm = false;
  TransformerLM lean(c);
  CHECK(lean.num_parameters() == 1349 - 48 - 16);
  CHECK(lean.named_buffers().size() == 1);
  CHECK(lean.final_norm == nullptr);
}

TEST_CASE("TransformerLM: logits shape for every attention kind") {
  for (const std::string& kind : stack_attention_kinds()) {
    for (bool causal : {true, false}) {
      if (!has_form(kind, causal)) continue;
      TransformerConfig c = tiny(kind);
      c.causal = causal;
      use_test_sizes(c);
      TransformerLM model(c);
      Tensor logits = model(tokens_2x6());
      CHECK(logits.shape() == Shape({2, 6, 5}));
      CHECK(logits.dtype() == DType::f32);
      CHECK(model.features(tokens_2x6()).shape() == Shape({2, 6, 8}));
    }
  }
}

TEST_CASE("TransformerLM: state_dict round trip gives identical logits") {
  TransformerConfig c = tiny("linear");
  c.dropout = 0.1;
  c.seed = 1;
  TransformerLM a(c);
  c.seed = 2;
  TransformerLM b(c);
  a.eval();
  b.eval();
  CHECK(max_abs_diff(a(tokens_2x6()), b(tokens_2x6())) > 1e-3);
  b.load_state_dict(a.state_dict());
  CHECK(max_abs_diff(a(tokens_2x6()), b(tokens_2x6())) == 0.0);
}

TEST_CASE("TransformerLM: load_state_dict errors name the key") {
  TransformerLM model(tiny());
  NamedTensors state = model.state_dict();
  NamedTensors missing(state.begin() + 1, state.end());
  check_error([&] { model.load_state_dict(missing); }, {"missing key 'embedding.weight'"});

  NamedTensors unexpected = state;
  unexpected.emplace_back("layers.2.norm1.weight", Tensor::ones({8}));
  check_error([&] { model.load_state_dict(unexpected); },
              {"unexpected key 'layers.2.norm1.weight'"});

  TransformerConfig wide = tiny();
  wide.vocab = 7;
  TransformerLM other(wide);
  check_error([&] { model.load_state_dict(other.state_dict()); },
              {"'embedding.weight' has shape [7,8], expected [5,8]",
               "'head.weight' has shape [7,8], expected [5,8]", "'head.bias'"});
}

TEST_CASE("TransformerLM: dropout is active only in training mode") {
  TransformerConfig c = tiny("linear");
  c.dropout = 0.3;
  TransformerLM dropped(c);
  c.dropout = 0.0;
  TransformerLM plain(c);  // same seed: same parameters (dropout streams are always forked)
  Tensor t = tokens_2x6();

  CHECK(dropped.is_training());
  Tensor t1 = dropped(t), t2 = dropped(t);
  CHECK(max_abs_diff(t1, t2) > 1e-4);  // fresh masks each call
  CHECK(max_abs_diff(t1, plain(t)) > 1e-4);

  dropped.eval();
  CHECK_FALSE(dropped.layers->operator[](1)->feed_forward->dropout->is_training());
  CHECK(max_abs_diff(dropped(t), plain(t)) == 0.0);
  CHECK(max_abs_diff(dropped(t), dropped(t)) == 0.0);
}

TEST_CASE("TransformerLM: to(f64) runs the same model in double") {
  for (std::string positions : {"learned", "sinusoidal"}) {
    TransformerConfig c = tiny("linear");
    c.positions = positions;
    TransformerLM model(c);
    Tensor f32 = model(tokens_2x6());
    model.to(DType::f64);
    for (const Tensor& p : model.parameters()) CHECK(p.dtype() == DType::f64);
    for (const auto& [name, b] : model.named_buffers()) CHECK(b.dtype() == DType::f64);
    Tensor f64 = model(tokens_2x6());
    CHECK(f64.dtype() == DType::f64);
    CHECK(max_abs_diff(f32, f64) < 1e-4);
    CHECK(model.parameter("head.weight").name() == "head.weight");
  }
}

TEST_CASE("TransformerLM: causal models do not look ahead") {
  for (const std::string& kind : stack_attention_kinds()) {
    if (!has_causal_form(kind)) continue;
    for (bool pre : {false, true}) {
      TransformerConfig c = tiny(kind);
      c.pre_norm = pre;
      TransformerLM model(c);
      Indices a = to_indices("test", "tokens", tokens_2x6()), b = a;
      const int64_t t = 3, N = 6, V = 5;
      b[t] = (a[t] + 1) % 5;          // sample 0, position 3
      b[N + t] = (a[N + t] + 2) % 5;  // sample 1, position 3
      std::vector<double> la = model(to_tensor(a)).to_vector(),
                          lb = model(to_tensor(b)).to_vector();
      for (int64_t s = 0; s < 2; ++s) {
        double before = 0, at = 0;
        for (int64_t i = 0; i < N; ++i)
          for (int64_t v = 0; v < V; ++v) {
            double d = std::abs(la[(s * N + i) * V + v] - lb[(s * N + i) * V + v]);
            if (i < t)
              before = std::max(before, d);
            else
              at = std::max(at, d);
          }
        CHECK(before < 1e-6);
        CHECK(at > 1e-4);
      }
    }
  }
  // A non-causal model does look ahead.
  TransformerConfig c = tiny("linear");
  c.causal = false;
  TransformerLM model(c);
  Indices a = to_indices("test", "tokens", tokens_2x6()), b = a;
  b[5] = (a[5] + 1) % 5;
  std::vector<double> la = model(to_tensor(a)).to_vector(), lb = model(to_tensor(b)).to_vector();
  CHECK(std::abs(la[0] - lb[0]) > 1e-6);
}

TEST_CASE("gradcheck: a tiny TransformerLM with respect to its parameters") {
  for (const std::string& kind : stack_attention_kinds()) {
    for (bool pre : {false, true}) {
      std::string name = kind + (pre ? " pre-norm" : " post-norm");
      SUBCASE(name.c_str()) {
        TransformerConfig c = tiny(kind);
        c.pre_norm = pre;
        TransformerLM model(c);
        model.to(DType::f64);
        Tensor tokens = tokens_2x6();
        std::vector<std::string> paths = {"embedding.weight", "positions.weight"};
        for (const char* layer : {"layers.0.attention.", "layers.1.attention."})
          for (const std::string& p : parameter_sample(model, layer, 2)) paths.push_back(p);
        for (const char* p : {"layers.1.norm1.weight", "layers.1.feed_forward.linear2.weight",
                              "final_norm.bias", "head.bias"})
          paths.emplace_back(p);
        GradcheckResult r =
            gradcheck_module(model, Tensor(), paths, [&](const Tensor&) { return model(tokens); });
        INFO(r.message);
        CHECK(r.ok);
      }
    }
  }
}

TEST_CASE("TransformerLM: token validation") {
  TransformerLM model(tiny());
  check_error(
      [&] {
        model(ids({1, 3}, {0, 7, 1}));
      },
      {"TransformerLM::forward", "tokens[0, 1] = 7", "[0, vocab = 5)"});
  check_error([&] { model(ids({1, 2}, {0, -1})); }, {"tokens[0, 1] = -1"});
  check_error([&] { model(ids({6}, {0, 1, 2, 3, 4, 0})); }, {"tokens has shape [6]"});
  check_error([&] { model(ids_filled({1, 7}, 0)); }, {"7 positions", "max_len = 6"});

  check_error(
      [&] {
        model(Tensor::from({1.0, 2.0}, DType::f32).reshape({1, 2}));
      },
      {"TransformerLM::forward", "tokens is f32", "integer tensor (i32 or i64)"});
  check_error([&] { model(Tensor()); }, {"TransformerLM::forward", "tokens"});
  check_error([&] { model(ids({1, 0}, {})); }, {"tokens has shape [1,0]", "B, N > 0"});

  TransformerConfig c = tiny();
  c.positions = "sinusoidal";
  TransformerLM sinusoidal(c);
  CHECK(sinusoidal(ids_filled({1, 9}, 2)).shape() == Shape({1, 9, 5}));
}

TEST_CASE("TransformerLM: i32 and i64 tokens, on the host or a device, give the same logits") {
  TransformerLM model(tiny("momentum"));
  model.eval();
  const Tensor tokens = tokens_2x6();
  REQUIRE(tokens.dtype() == DType::i64);
  const Tensor reference = model(tokens);
  CHECK(max_abs_diff(model(tokens.to(DType::i32)), reference) == 0);
  // Ids on another device are checked by the embedding's kernel (here: a host copy of them).
  const Tensor on_device = tokens.to(polyak::testing::fake_device());
  CHECK(max_abs_diff(model(on_device), reference) == 0);
  check_error(
      [&] {
        model(ids({1, 2}, {0, 9}).to(polyak::testing::fake_device()));
      },
      {"embedding", "ids has value 9", "[0, 5)"});
}

TEST_CASE("TransformerConfig: bad values name the field, the value and the expectation") {
  struct Bad {
    std::function<void(TransformerConfig&)> set;
    std::vector<std::string> fragments;
  };
  std::vector<Bad> cases = {
      {[](auto& c) { c.vocab = 0; }, {"vocab = 0", "positive"}},
      {[](auto& c) { c.max_len = -3; }, {"max_len = -3", "positive"}},
      {[](auto& c) { c.d_model = 0; }, {"d_model = 0"}},
      {[](auto& c) { c.heads = -1; }, {"heads = -1"}},
      {[](auto& c) { c.layers = 0; }, {"layers = 0"}},
      {[](auto& c) { c.head_dim = -4; }, {"head_dim = -4"}},
      {[](auto& c) { c.ff_dim = -2; }, {"ff_dim = -2"}},
      {[](auto& c) { c.d_model = 10, c.heads = 3; },
       {"d_model = 10", "not divisible by heads = 3", "head_dim"}},
      {[](auto& c) { c.dropout = 1.0; }, {"dropout = 1", "[0, 1)"}},
      {[](auto& c) { c.attention = "quantum"; }, {"attention = 'quantum'", "softmax", "linear"}},
      {[](auto& c) { c.positions = "rotary"; }, {"positions = 'rotary'", "sinusoidal, learned"}},
      {[](auto& c) { c.activation = "swish"; }, {"activation = 'swish'", "relu, gelu"}},
      {[](auto& c) { c.norm = "batchnorm"; }, {"norm = 'batchnorm'", "layernorm, rmsnorm"}},
      {[](auto& c) { c.connection = "highway"; }, {"connection = 'highway'", "residual"}},
      {[](auto& c) {
         c.attention = "linear";
         c.attention_params = LinearParams{.feature_map = "relu"};
       },
       {"attention_params: feature_map = 'relu'", "elu, plain-elu"}},
      {[](auto& c) {
         c.attention = "linear";
         c.attention_params = LinearParams{.eps = 0};
       },
       {"attention_params: eps = 0"}},
      {[](auto& c) {
         c.attention = "transnormer";
         c.attention_params = TransNormerParams{.block_size = 0};
       },
       {"block_size = 0", "positive"}},
      {[](auto& c) {
         c.attention = "performer";
         c.attention_params = PerformerParams{.features = -2};
       },
       {"features = -2", "positive"}},
      {[](auto& c) {
         c.attention = "performer";
         c.attention_params = PerformerParams{.redraw = -1};
       },
       {"redraw = -1", "≥ 0"}},
      {[](auto& c) {
         c.attention = "linformer";
         c.causal = false;
         c.attention_params = LinformerParams{.k = 0};
       },
       {"k = 0", "positive"}},
      {[](auto& c) {
         c.attention = "mega";
         c.attention_params = MegaParams{.ema_dim = 0};
       },
       {"ema_dim = 0", "positive"}},
      {[](auto& c) {
         c.attention = "mega-chunk";
         c.attention_params = MegaChunkParams{.z_dim = -1};
       },
       {"z_dim = -1", "positive"}},
      {[](auto& c) {
         c.attention = "mega";
         c.attention_params = MegaParams{.v_dim = -1};
       },
       {"v_dim = -1"}},
      {[](auto& c) {
         c.attention = "mega";
         c.attention_params = MegaParams{.attention = "cosine"};
       },
       {"attention = 'cosine'", "softmax, laplace"}},
      {[](auto& c) {
         c.attention = "linformer";
         c.attention_params = Params();
       },
       {"'linformer'", "causal = true", "causal = false"}},
      {[](auto& c) {
         c.attention = "momentum";
         c.attention_params = LinearParams{};
       },
       {"kind = 'momentum' with params of linear attention"}},
      {[](auto& c) { c.norm_eps = -1; }, {"norm_eps = -1"}},
  };
  for (const Bad& b : cases) {
    TransformerConfig c = tiny();
    b.set(c);
    std::vector<std::string> fragments = b.fragments;
    fragments.push_back("TransformerConfig");
    check_error([&] { c.validate(); }, fragments);
    check_error([&] { TransformerLM m(c); }, fragments);
  }
  // head_dim set: d_model need not divide.
  TransformerConfig c = tiny();
  c.d_model = 10;
  c.heads = 3;
  c.head_dim = 4;
  TransformerLM model(c);
  CHECK(model(tokens_2x6()).shape() == Shape({2, 6, 5}));
}

TEST_CASE("TransformerConfig: the defaults validate and build") {
  TransformerConfig c;
  c.validate();
  CHECK(c.resolved_head_dim() == 32);
  CHECK(c.resolved_ff_dim() == 1024);
  TransformerLM model(c);
  model.eval();
  CHECK(model(ids_filled({1, 8}, 3)).shape() == Shape({1, 8, 11}));
}
