// The momentum family in nn/ and models/: momentum attention as a module, the momentum and
// adaptive connections (docs/math.md §3–4), model kinds, and the configs' bad values.
#include <cmath>
#include <cstring>
#include <memory>

#include "helpers.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::GradcheckCase;
using polyak::testing::ids;
using polyak::testing::max_abs_diff;
using polyak::testing::run_gradcheck_table;

namespace {

Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::f32) {
  Generator gen(seed);
  return Tensor::randn(shape, gen, dtype);
}

// Bitwise equality of two tensors' elements (stricter than max_abs_diff == 0: −0 ≠ +0).
bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

// Joins x with each attention output in turn, one carry across the "layers".
Tensor run_layers(Connection& c, const Tensor& x, const std::vector<Tensor>& as,
                  LayerCarry& carry) {
  Tensor h = x;
  for (const Tensor& a : as) h = c.forward(h, a, carry);
  return h;
}

AdaptiveConnectionParams adaptive(double gamma, double delta,
                                  const std::string& denominator = "velocity") {
  return {.gamma = gamma, .delta = delta, .denominator = denominator};
}

// docs/math.md §4 in plain loops over [B, N, d] (row-major vectors): the outputs after each
// layer, and β̃ of every token at layers 2, 3, … (ℓ-major).
struct AdaptiveReference {
  std::vector<double> out, velocity, betas, unclamped;
};
AdaptiveReference adaptive_reference(const Tensor& x, const std::vector<Tensor>& as,
                                     const AdaptiveConnectionParams& c) {
  const int64_t d = x.size(-1), tokens = x.numel() / d;
  AdaptiveReference r;
  r.out = x.to_vector();
  std::vector<double> prev;
  for (const Tensor& at : as) {
    std::vector<double> a = at.to_vector();
    if (r.velocity.empty()) {
      for (double e : a) r.velocity.push_back(-e);
    } else {
      for (int64_t t = 0; t < tokens; ++t) {
        double diff = 0, den = 0;
        for (int64_t j = 0; j < d; ++j) {
          const size_t i = static_cast<size_t>(t * d + j);
          diff += (a[i] - prev[i]) * (a[i] - prev[i]);
          const double n = c.denominator == "velocity" ? r.velocity[i] : prev[i];
          den += n * n;
        }
        const double u =
            std::pow(1 - std::sqrt(std::sqrt(diff) / (std::sqrt(den) + c.eps) + c.eps), 2);
        const double beta = std::min(u, 1 - c.delta);
        r.unclamped.push_back(u);
        r.betas.push_back(beta);
        for (int64_t j = 0; j < d; ++j) {
          const size_t i = static_cast<size_t>(t * d + j);
          r.velocity[i] = beta * r.velocity[i] - a[i];
        }
      }
    }
    for (size_t i = 0; i < a.size(); ++i) r.out[i] -= c.gamma * r.velocity[i];
    prev = a;
  }
  return r;
}

double max_abs_diff(const std::vector<double>& a, const Tensor& b) {
  std::vector<double> v = b.to_vector();
  REQUIRE(a.size() == v.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - v[i]));
  return m;
}

TransformerConfig small_model(const std::string& kind) {
  TransformerConfig c;
  c.vocab = 7;
  c.max_len = 8;
  c.d_model = 8;
  c.heads = 2;
  c.ff_dim = 16;
  c.layers = 3;
  c.dropout = 0.0;
  c.positions = "learned";
  c.seed = 5;
  set_model_kind(c, kind);
  return c;
}

Tensor tokens_2x6() {
  return ids({2, 6}, {1, 4, 0, 2, 3, 6, 5, 4, 2, 0, 1, 3});
}

}  // namespace

// ---- momentum connection ---------------------------------------------------------------

TEST_CASE("MomentumConnection: beta 0, gamma 1 is the residual connection bit for bit") {
  Tensor x = randn({2, 5, 8}, 1);
  std::vector<Tensor> as = {randn({2, 5, 8}, 2), randn({2, 5, 8}, 3), randn({2, 5, 8}, 4)};
  ResidualConnection residual;
  MomentumConnection momentum(0.0, 1.0);
  LayerCarry c1, c2;
  Tensor r = x, m = x;
  for (const Tensor& a : as) {
    r = residual.forward(r, a, c1);
    m = momentum.forward(m, a, c2);
    CHECK(same_bits(r, m));
  }
  CHECK(c2.velocity.defined());
  CHECK(same_bits(c2.prev_attn, as[2]));
  // Any other β̃ or γ̃ moves the stream away from the residual one.
  MomentumConnection other(0.5, 1.0);
  LayerCarry c3;
  CHECK(max_abs_diff(run_layers(other, x, as, c3), r) > 0.1);
}

TEST_CASE("MomentumConnection: v = beta v - a, x - gamma v over three layers (by hand)") {
  // One token, d = 2, the same x into each layer, β̃ = 0.5, γ̃ = 2:
  //   v1 = −a1 = [−0.5, 1],               x − 2 v1 = [2, 0]
  //   v2 = 0.5 v1 − a2 = [−2.25, 0.5],    x − 2 v2 = [5.5, 1]
  //   v3 = 0.5 v2 − a3 = [−1.125, −0.75], x − 2 v3 = [3.25, 3.5]
  MomentumConnection c(0.5, 2.0);
  Tensor x = Tensor::from({1.0, 2.0}).reshape({1, 1, 2});
  LayerCarry carry;
  auto at = [](double p, double q) { return Tensor::from({p, q}).reshape({1, 1, 2}); };
  CHECK(c.forward(x, at(0.5, -1), carry).to_vector() == std::vector<double>{2, 0});
  CHECK(c.forward(x, at(2, 0), carry).to_vector() == std::vector<double>{5.5, 1});
  CHECK(carry.velocity.to_vector() == std::vector<double>{-2.25, 0.5});
  CHECK(c.forward(x, at(0, 1), carry).to_vector() == std::vector<double>{3.25, 3.5});
  CHECK(carry.velocity.to_vector() == std::vector<double>{-1.125, -0.75});
}

TEST_CASE("TransformerLM: momentum connection with beta 0, gamma 1 gives the residual logits") {
  for (std::string attention : {"linear", "momentum", "softmax"}) {
    for (bool pre : {false, true}) {
      TransformerConfig c = small_model("linear");
      c.attention = attention;
      c.pre_norm = pre;
      c.dropout = 0.1;  // eval mode below; the streams are drawn the same either way
      TransformerLM residual(c);
      c.connection = "momentum";
      c.connection_params = MomentumConnectionParams{.beta = 0.0, .gamma = 1.0};
      TransformerLM momentum(c);
      residual.eval();
      momentum.eval();
      INFO(attention << (pre ? " pre-norm" : " post-norm"));
      Tensor lr = residual(tokens_2x6()), lm = momentum(tokens_2x6());
      CHECK(same_bits(lr, lm));
      c.connection_params.as<MomentumConnectionParams>().beta = 0.3;
      TransformerLM moved(c);
      moved.eval();
      CHECK(max_abs_diff(moved(tokens_2x6()), lr) > 1e-3);
    }
  }
}

// ---- adaptive connection ---------------------------------------------------------------

TEST_CASE("AdaptiveConnection: beta per token by hand, clamped at 1 - delta") {
  // One sample, two tokens, d = 2; γ̃ = 0.5, δ = 0.1, ε = 1e-6.
  //   token 0: ‖A2 − A1‖ = ‖[0, 0.8]‖ = 0.8, ‖v1‖ = ‖[3, 4]‖ = 5:
  //            β̃ = (1 − sqrt(0.8 / (5 + ε) + ε))² = (1 − 0.40000121…)² = 0.35999854800365…
  //   token 1: ‖A2 − A1‖ = 0.002, ‖v1‖ = 2: (1 − sqrt(0.001 + …))² = 0.9377… → 1 − δ = 0.9
  Tensor x = Tensor::from({1, -1, 0.5, 0.25}, DType::f64).reshape({1, 2, 2});
  auto at = [](std::vector<double> v) { return Tensor::from(v, {1, 2, 2}, DType::f64); };
  std::vector<Tensor> as = {at({3, 4, 0, 2}), at({3, 4.8, 0.002, 2}), at({-1, 2, 0.5, 1})};

  AdaptiveConnection c(adaptive(0.5, 0.1));
  LayerCarry carry;
  Tensor h = c.forward(x, as[0], carry);
  CHECK(max_abs_diff(h, at({2.5, 1, 0.5, 1.25})) < 1e-15);  // v1 = −A1, x − 0.5 v1
  h = c.forward(h, as[1], carry);
  // v2 = β̃ v1 − A2 per token.
  const double b0 = 0.35999854800365078, b1 = 0.9;
  CHECK(max_abs_diff(carry.velocity, at({-3 * b0 - 3, -4 * b0 - 4.8, -0.002, -2 * b1 - 2})) <
        1e-14);
  // Layer 3: the whole stream against the values computed by hand (double, docs/math.md §4).
  h = c.forward(h, as[2], carry);
  CHECK(max_abs_diff(h, at({4.1142142567630362, 5.2335045999966763, 0.7512095770287186,
                            4.0481963545654951})) < 1e-14);
  CHECK(max_abs_diff(carry.velocity, at({0.85156713048488042, -2.227015007978749,
                                         -0.50041915405743731, -1.7963927091309899})) < 1e-14);

  // The paper's denominator ‖A_{ℓ−1}‖: the same at ℓ = 2 (v1 = −A1), different at ℓ = 3.
  AdaptiveConnection paper(adaptive(0.5, 0.1, "attention"));
  LayerCarry pc;
  Tensor p = run_layers(paper, x, as, pc);
  CHECK(max_abs_diff(p, at({4.0503510006388446, 5.1358313713786341, 0.75106381886747886,
                            3.7712558482098801})) < 1e-14);
  CHECK(max_abs_diff(p, h) > 0.05);
}

TEST_CASE("AdaptiveConnection: matches the loop reference for both denominators") {
  for (std::string den : {"velocity", "attention"}) {
    for (double noise : {1.0, 0.003}) {
      AdaptiveConnectionParams cfg = adaptive(0.8, 0.25, den);
      Tensor x = randn({2, 3, 5}, 10, DType::f64);
      Tensor a1 = randn({2, 3, 5}, 11, DType::f64);
      std::vector<Tensor> as = {a1};
      for (uint64_t s : {12, 13}) as.push_back(as.back() + randn({2, 3, 5}, s, DType::f64) * noise);
      AdaptiveConnection c(cfg);
      LayerCarry carry;
      Tensor h = run_layers(c, x, as, carry);
      AdaptiveReference ref = adaptive_reference(x, as, cfg);
      INFO(den << " noise " << noise);
      CHECK(max_abs_diff(ref.out, h) < 1e-12);
      CHECK(max_abs_diff(ref.velocity, carry.velocity) < 1e-12);
      // Near-repeated attention outputs push β̃ to the clamp; independent ones keep it low.
      for (double b : ref.betas) CHECK((noise < 0.1 ? b == 0.75 : b < 0.75));
    }
  }
}

TEST_CASE("gradcheck: momentum and adaptive connections over three layers of carry") {
  // Output: the stream after layer 3 and the velocity v3, so that a wrong gradient through
  // the carried velocity or through β̃ (which depends on A_{ℓ−1} and v_{ℓ−1}) shows.
  auto three_layers = [](std::shared_ptr<Connection> c) {
    return [c](const std::vector<Tensor>& in) {
      LayerCarry carry;
      Tensor h = run_layers(*c, in[0], {in[1], in[2], in[3]}, carry);
      return concat({h, carry.velocity}, 0);
    };
  };
  const Shape s = {2, 3, 4};
  // Inputs x, a1, a2, a3. noise < 0: independent normal outputs; otherwise
  // a_ℓ = a_{ℓ−1} + noise·n_ℓ, a small noise keeping ‖A_ℓ − A_{ℓ−1}‖ small and β̃ high.
  auto inputs = [s](double noise) {
    return [s, noise](Generator& gen) {
      std::vector<Tensor> in = {Tensor::randn(s, gen, DType::f64),
                                Tensor::randn(s, gen, DType::f64)};
      for (int l = 0; l < 2; ++l) {
        Tensor n = Tensor::randn(s, gen, DType::f64);
        in.push_back(noise < 0 ? n : in.back() + n * noise);
      }
      for (Tensor& t : in) t = polyak::testing::leaf_copy(t);
      return in;
    };
  };
  std::vector<GradcheckCase> cases;
  for (auto [beta, gamma] :
       std::vector<std::pair<double, double>>{{0.0, 1.0}, {0.5, 0.7}, {0.9, 2.0}})
    cases.push_back({"momentum beta " + std::to_string(beta) + " gamma " + std::to_string(gamma),
                     {},
                     three_layers(std::make_shared<MomentumConnection>(beta, gamma)),
                     inputs(-1)});

  // Where the clamp at 1 − δ is for the tokens of each case (checked below, on the same
  // inputs): "active" for all, "inactive" for all, or "mixed".
  struct Adaptive {
    std::string name;
    AdaptiveConnectionParams config;
    double noise;
    std::string clamp;
  };
  const std::vector<Adaptive> adaptive_cases = {
      {"independent outputs, delta 1e-3", adaptive(0.9, 1e-3), -1, "mixed"},
      {"near-repeated outputs, delta 0.3", adaptive(1.3, 0.3), 0.003, "active"},
      {"moderate change, delta 0.05", adaptive(0.6, 0.05), 0.3, "inactive"},
      {"attention denominator, delta 0.55", adaptive(1.5, 0.55, "attention"), 0.1, "mixed"},
  };
  for (const Adaptive& a : adaptive_cases)
    cases.push_back({"adaptive, " + a.name + " (clamp " + a.clamp + ")",
                     {},
                     three_layers(std::make_shared<AdaptiveConnection>(a.config)),
                     inputs(a.noise)});
  run_gradcheck_table(cases);

  for (const Adaptive& a : adaptive_cases) {
    Generator gen(1234);  // run_gradcheck_table's seed: the inputs it checked
    std::vector<Tensor> in = inputs(a.noise)(gen);
    AdaptiveReference ref = adaptive_reference(in[0], {in[1], in[2], in[3]}, a.config);
    const double kink = 1 - a.config.delta;
    int64_t clamped = 0;
    for (double u : ref.unclamped) {
      INFO(a.name << ": unclamped beta " << u << ", clamp at " << kink);
      CHECK(std::abs(u - kink) > 0.02);  // finite differences stay on one side
      clamped += u > kink;
    }
    const int64_t tokens = static_cast<int64_t>(ref.unclamped.size());
    INFO(a.name << ": " << clamped << " of " << tokens << " tokens clamped");
    if (a.clamp == "active") CHECK(clamped == tokens);
    if (a.clamp == "inactive") CHECK(clamped == 0);
    if (a.clamp == "mixed") CHECK((clamped > 0 && clamped < tokens));
  }
}

TEST_CASE("TransformerLayer: momentum and adaptive connections pass the carry between layers") {
  for (std::string kind : {"momentum", "adaptive"}) {
    TransformerLayerConfig c;
    c.attention.kind = "linear";
    c.attention.d_model = 8;
    c.attention.heads = 2;
    c.ff_dim = 16;
    c.connection.kind = kind;
    if (kind == "momentum")
      c.connection.params = MomentumConnectionParams{.beta = 0.6, .gamma = 0.8};
    else
      c.connection.params = AdaptiveConnectionParams{.gamma = 0.8};
    Generator gen(3);
    TransformerLayer l1(c, gen), l2(c, gen);
    Tensor x = randn({2, 4, 8}, 4);
    LayerCarry carry;
    Tensor h = l1.forward(x, carry);
    REQUIRE(carry.velocity.defined());
    Tensor v1 = carry.velocity;
    Tensor a1 = l1.attention->forward(x);
    CHECK(max_abs_diff(v1, -a1) < 1e-6);  // v1 = −A1
    CHECK(max_abs_diff(carry.prev_attn, a1) < 1e-6);
    Tensor with_carry = l2.forward(h, carry);
    CHECK(max_abs_diff(with_carry, l2.forward(h)) > 1e-3);  // the carry matters at ℓ = 2
    if (kind == "momentum") {
      Tensor a2 = l2.attention->forward(h);
      CHECK(max_abs_diff(carry.velocity, v1 * 0.6 - a2) < 1e-6);
    }
  }
}

// ---- momentum attention as a module ----------------------------------------------------

TEST_CASE("MomentumAttention: beta 0 is gamma times linear attention, causal or not") {
  for (bool causal : {true, false}) {
    AttentionConfig c;
    c.d_model = 8;
    c.heads = 2;
    c.causal = causal;
    c.kind = "linear";
    Generator g1(7), g2(7);
    auto linear = make_attention(c, g1);
    c.kind = "momentum";
    c.params = MomentumParams{.beta = 0.0, .gamma = 1.0};
    auto momentum = make_attention(c, g2);
    CHECK(std::dynamic_pointer_cast<MomentumAttention>(momentum) != nullptr);
    CHECK(momentum->named_parameters().size() == linear->named_parameters().size());
    Tensor x = randn({2, 6, 8}, 8);
    INFO((causal ? "causal" : "non-causal"));
    CHECK(max_abs_diff(momentum->forward(x), linear->forward(x)) < 1e-5);
    // β > 0 changes the function.
    c.params.as<MomentumParams>().beta = 0.5;
    Generator g3(7);
    CHECK(max_abs_diff(make_attention(c, g3)->forward(x), linear->forward(x)) > 1e-3);
  }
}

TEST_CASE("MomentumAttention: the module computes causal_momentum_attention on phi(q), phi(k)") {
  for (std::string weighting : {"exact", "reference"}) {
    AttentionConfig c;
    c.kind = "momentum";
    c.d_model = 8;
    c.heads = 2;
    c.params = MomentumParams{.beta = 0.4, .gamma = 0.9, .weighting = weighting};
    Generator gen(2);
    auto attn = make_attention(c, gen);
    attn->to(DType::f64);
    Tensor x = randn({2, 5, 8}, 3, DType::f64);
    // By hand through the public pieces: project, φ, the op, merge, out_proj.
    const Tensor& w = attn->qkv_proj->weight;
    const Tensor& b = attn->qkv_proj->bias;
    auto heads = [&](int64_t i) {
      return split_heads(linear(x, w.narrow0(8 * i, 8 * (i + 1)), b.narrow0(8 * i, 8 * (i + 1))),
                         2);
    };
    Tensor y =
        causal_momentum_attention(elu_feature_map(heads(0)), elu_feature_map(heads(1)), heads(2),
                                  0.4, 0.9, 1e-6, parse_momentum_weighting(weighting));
    Tensor expected = attn->out_proj->forward(merge_heads(y));
    INFO(weighting);
    CHECK(max_abs_diff(attn->forward(x), expected) < 1e-12);
  }
}

// ---- kinds and configs -----------------------------------------------------------------

TEST_CASE("model kinds: the (attention, connection) pairs of the comparison") {
  CHECK(model_kinds() == std::vector<std::string>{"softmax", "linear", "momentum",
                                                  "momentum-connection", "adaptive", "transnormer",
                                                  "mega", "mega-chunk", "performer", "linformer",
                                                  "retention"});
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"softmax", "residual"},  {"linear", "residual"},     {"momentum", "residual"},
      {"momentum", "momentum"}, {"momentum", "adaptive"},   {"transnormer", "residual"},
      {"mega", "residual"},     {"mega-chunk", "residual"}, {"performer", "residual"},
      {"linformer", "residual"}};
  for (size_t i = 0; i < pairs.size(); ++i) {
    TransformerConfig c;
    c.heads = 3;  // untouched
    set_model_kind(c, model_kinds()[i]);
    CHECK(c.attention == pairs[i].first);
    CHECK(c.connection == pairs[i].second);
    CHECK(c.heads == 3);
    CHECK(model_kind(c) == model_kinds()[i]);
  }
  TransformerConfig c;
  c.attention = "softmax";
  c.connection = "adaptive";
  CHECK(model_kind(c) == "");
  check_error([&] { set_model_kind(c, "reformer"); },
              {"set_model_kind", "kind = 'reformer'",
               "softmax, linear, momentum, momentum-connection, adaptive, transnormer"});

  // layer_config carries every momentum field to the layers.
  c = small_model("adaptive");
  c.attention_params = MomentumParams{.beta = 0.25, .gamma = 0.75, .weighting = "reference"};
  c.connection_params =
      AdaptiveConnectionParams{.gamma = 0.5, .delta = 0.2, .eps = 1e-4, .denominator = "attention"};
  TransformerLayerConfig l = c.layer_config();
  CHECK(l.attention.kind == "momentum");
  CHECK(l.attention.params == c.attention_params);
  CHECK(l.attention.params.as<MomentumParams>().beta == 0.25);
  CHECK(l.connection.kind == "adaptive");
  CHECK(l.connection.params == c.connection_params);
  CHECK(l.connection.params.as<AdaptiveConnectionParams>().denominator == "attention");
  TransformerLM model(c);
  CHECK(std::dynamic_pointer_cast<AdaptiveConnection>((*model.layers)[2]->connection) != nullptr);
  CHECK(std::dynamic_pointer_cast<MomentumAttention>((*model.layers)[0]->attention) != nullptr);
}

TEST_CASE("configs: bad momentum values name the field, the value and the expectation") {
  struct Bad {
    std::function<void(TransformerConfig&)> set;
    std::vector<std::string> fragments;
  };
  const std::vector<Bad> model_cases = {
      {[](auto& c) { c.attention_params.template as<MomentumParams>().beta = 1.2; },
       {"attention_params: beta = 1.2, expected in [0, 1)"}},
      {[](auto& c) { c.attention_params.template as<MomentumParams>().beta = 1.0; },
       {"attention_params: beta = 1, expected in [0, 1)"}},
      {[](auto& c) { c.attention_params.template as<MomentumParams>().beta = -0.1; },
       {"beta = -0.1"}},
      {[](auto& c) { c.attention_params.template as<MomentumParams>().gamma = 0; },
       {"gamma = 0", "> 0"}},
      {[](auto& c) { c.attention_params.template as<MomentumParams>().gamma = -2; },
       {"gamma = -2"}},
      {[](auto& c) { c.attention_params.template as<MomentumParams>().weighting = "last"; },
       {"weighting = 'last'", "exact, reference"}},
      {[](auto& c) { c.connection_params.template as<AdaptiveConnectionParams>().gamma = 0; },
       {"connection_params: gamma = 0", "> 0"}},
      {[](auto& c) { c.connection_params.template as<AdaptiveConnectionParams>().delta = 0; },
       {"connection_params: delta = 0, expected in (0, 1)"}},
      {[](auto& c) { c.connection_params.template as<AdaptiveConnectionParams>().delta = 1; },
       {"connection_params: delta = 1, expected in (0, 1)"}},
      {[](auto& c) { c.connection_params.template as<AdaptiveConnectionParams>().eps = 0; },
       {"connection_params: eps = 0"}},
      {[](auto& c) {
         c.connection_params.template as<AdaptiveConnectionParams>().denominator = "gradient";
       },
       {"connection_params: denominator = 'gradient'", "velocity, attention"}},
      {[](auto& c) { c.connection_params = MomentumConnectionParams{.beta = 1.0}; },
       {"kind = 'adaptive' with params of the momentum connection", "the adaptive connection"}},
      {[](auto& c) { c.connection = "highway"; },
       {"connection = 'highway'", "residual, momentum, adaptive"}},
  };
  for (const Bad& b : model_cases) {
    TransformerConfig c = small_model("adaptive");
    b.set(c);
    std::vector<std::string> fragments = b.fragments;
    fragments.push_back("TransformerConfig: ");
    check_error([&] { c.validate(); }, fragments);
    check_error([&] { TransformerLM m(c); }, fragments);
  }

  auto attention = [](std::function<void(AttentionConfig&)> set) {
    AttentionConfig c;
    c.kind = "momentum";
    set(c);
    return c;
  };
  Generator gen(0);
  const std::vector<std::pair<AttentionConfig, std::vector<std::string>>> attention_cases = {
      {attention([](auto& c) { c.params = MomentumParams{.beta = 1.0}; }),
       {"AttentionConfig: beta = 1, expected in [0, 1)"}},
      {attention([](auto& c) { c.params = MomentumParams{.beta = -0.5}; }),
       {"AttentionConfig: beta = -0.5"}},
      {attention([](auto& c) { c.params = MomentumParams{.gamma = 0}; }),
       {"AttentionConfig: gamma = 0", "> 0"}},
      {attention([](auto& c) { c.params = MomentumParams{.gamma = -1}; }),
       {"AttentionConfig: gamma = -1"}},
      {attention([](auto& c) { c.params = MomentumParams{.weighting = "last"}; }),
       {"AttentionConfig: weighting = 'last'", "exact, reference"}},
      {attention([](auto& c) { c.params = LinearParams{}; }),
       {"AttentionConfig: kind = 'momentum' with params of linear attention",
        "expected those of momentum attention"}},
  };
  for (const auto& [c, fragments] : attention_cases) {
    check_error([&] { c.validate(); }, fragments);
    check_error([&] { make_attention(c, gen); }, fragments);
  }

  auto connection = [](std::function<void(ConnectionConfig&)> set) {
    ConnectionConfig c{.kind = "adaptive", .params = adaptive(1.0, 0.1)};
    set(c);
    return c;
  };
  const std::vector<std::pair<ConnectionConfig, std::vector<std::string>>> connection_cases = {
      {connection([](auto& c) {
         c.kind = "momentum";
         c.params = MomentumConnectionParams{.beta = 1.0};
       }),
       {"ConnectionConfig: beta = 1, expected in [0, 1)"}},
      {connection([](auto& c) {
         c.kind = "momentum";
         c.params = MomentumConnectionParams{.beta = -0.1};
       }),
       {"ConnectionConfig: beta = -0.1"}},
      {connection([](auto& c) { c.params = adaptive(0, 0.1); }),
       {"ConnectionConfig: gamma = 0", "> 0"}},
      {connection([](auto& c) { c.params = adaptive(-3, 0.1); }), {"ConnectionConfig: gamma = -3"}},
      {connection([](auto& c) { c.params = adaptive(1, 0); }),
       {"ConnectionConfig: delta = 0, expected in (0, 1)"}},
      {connection([](auto& c) { c.params = adaptive(1, 1.5); }), {"ConnectionConfig: delta = 1.5"}},
      {connection([](auto& c) { c.params.template as<AdaptiveConnectionParams>().eps = 0; }),
       {"ConnectionConfig: eps = 0"}},
      {connection([](auto& c) { c.params = adaptive(1, 0.1, "gradient"); }),
       {"ConnectionConfig: denominator = 'gradient'", "velocity, attention"}},
      {connection([](auto& c) { c.kind = "highway"; }),
       {"ConnectionConfig: kind = 'highway'", "residual, momentum, adaptive"}},
  };
  for (const auto& [c, fragments] : connection_cases) {
    check_error([&] { c.validate(); }, fragments);
    check_error([&] { make_connection(c); }, fragments);
    TransformerLayerConfig l;
    l.attention.d_model = 8;
    l.attention.heads = 2;
    l.connection = c;
    check_error([&] { TransformerLayer layer(l, gen); }, fragments);
  }
  check_error([] { MomentumConnection c(1.0, 1.0); }, {"MomentumConnection: beta = 1", "[0, 1)"});
  check_error([] { MomentumConnection c(0.5, 0.0); }, {"MomentumConnection: gamma = 0", "> 0"});

  // A carry from another stream (other tokens) is an error, not a silent broadcast.
  MomentumConnection m(0.5, 1.0);
  AdaptiveConnection a(adaptive(1.0, 0.1));
  for (Connection* c : std::vector<Connection*>{&m, &a}) {
    LayerCarry carry;
    c->forward(randn({2, 3, 4}, 1), randn({2, 3, 4}, 2), carry);
    check_error(
        [&] {
          c->forward(randn({2, 1, 4}, 1), randn({2, 1, 4}, 2), carry);
        },
        {"Connection: the carried velocity has shape [2,3,4]",
         "expected the attention output's [2,1,4]"});
  }
}
