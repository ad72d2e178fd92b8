// MegaAttention (kinds "mega" and "mega-chunk"): the block against a naive reference,
// gradcheck of the module, chunked against whole, the recurrent form against the parallel
// one, causality, dropout, gradient probes, the state, and bad input.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "nn/helpers.h"
#include "ops/attention/helpers.h"
#include "ops/attention/naive_mega.h"
#include "polyak/nn/mega.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

struct MegaShape {
  int64_t d = 6, n = 3, z = 4, v = 5, block = 4, max_len = 12;
};

AttentionConfig mega_config(const std::string& kind, bool causal, const std::string& score,
                            const MegaShape& s = {}) {
  AttentionConfig c;
  c.kind = kind;
  c.d_model = s.d;
  c.heads = 1;
  c.causal = causal;
  c.max_len = s.max_len;
  if (kind != "mega" && kind != "mega-chunk") return c;  // the tests of a wrong kind
  c.params = Params::defaults(*attention_spec(kind).params);
  c.params.set("ema_dim", s.n);
  c.params.set("z_dim", s.z);
  c.params.set("v_dim", s.v);
  c.params.set("attention", score);
  if (kind == "mega-chunk") c.params.set("block_size", s.block);
  return c;
}

// A module with every parameter redrawn from N(0, 0.5²): Mega's own initialisation leaves
// Q and K near zero and the attention nearly uniform, which would hide mistakes.
std::shared_ptr<MegaAttention> make_mega(const AttentionConfig& config, uint64_t seed,
                                         DType dtype = DType::f64) {
  Generator gen(seed);
  auto attn = std::dynamic_pointer_cast<MegaAttention>(make_attention(config, gen));
  REQUIRE(attn != nullptr);
  for (auto& [name, t] : attn->named_parameters()) {
    Tensor slot = t;
    normal_(slot, 0.0, 0.5, gen);
  }
  attn->to(dtype);
  return attn;
}

Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::f64) {
  Generator gen(seed);
  return Tensor::randn(shape, gen, dtype);
}

naive_mega::MegaParams params_of(const MegaAttention& m, int64_t N) {
  const AttentionConfig& c = m.config();
  naive_mega::MegaParams P;
  P.d = c.d_model;
  auto field = [&](const char* name) { return std::get<int64_t>(c.params.get(name)); };
  P.n = field("ema_dim");
  P.z = field("z_dim");
  P.v = field("v_dim") > 0 ? field("v_dim") : c.d_model;
  P.causal = c.causal;
  P.window = c.kind == "mega-chunk" ? field("block_size") : N;
  P.laplace_score = std::get<std::string>(c.params.get("attention")) == "laplace";
  auto p = [&](const char* path) { return m.parameter(path).to_vector(); };
  P.delta = p("ema_delta");
  P.alpha = p("ema_alpha");
  P.beta = p("ema_beta");
  P.eta = p("ema_eta");
  P.omega = p("ema_omega");
  P.Wv = p("v_proj.weight");
  P.bv = p("v_proj.bias");
  P.Wmx = p("mx_proj.weight");
  P.bmx = p("mx_proj.bias");
  P.Wh = p("h_proj.weight");
  P.bh = p("h_proj.bias");
  P.qk_scale = p("qk_scale");
  P.qk_offset = p("qk_offset");
  P.rel_bias = p("rel_bias");
  return P;
}

struct Variant {
  std::string kind, score;
  bool causal;
  int64_t N;
};

// Every kind, score and direction, at lengths each kind accepts (mega-chunk: a partial last
// chunk when causal, whole chunks or one short chunk when not).
const std::vector<Variant> kVariants = {
    {"mega", "softmax", true, 10},        {"mega", "laplace", true, 12},
    {"mega", "softmax", false, 9},        {"mega", "laplace", false, 7},
    {"mega-chunk", "softmax", true, 11},  {"mega-chunk", "laplace", true, 11},
    {"mega-chunk", "softmax", false, 12}, {"mega-chunk", "laplace", false, 8},
    {"mega-chunk", "softmax", false, 3},
};

}  // namespace

TEST_CASE("MegaAttention computes the documented block") {
  for (const Variant& c : kVariants) {
    CAPTURE(c.kind);
    CAPTURE(c.score);
    CAPTURE(c.causal);
    CAPTURE(c.N);
    auto attn = make_mega(mega_config(c.kind, c.causal, c.score), 5);
    const Tensor x = randn({2, c.N, 6}, 6);
    const Tensor y = attn->forward(x);
    REQUIRE(y.shape() == Shape({2, c.N, 6}));
    const std::vector<double> ref =
        naive_mega::mega_block(params_of(*attn, c.N), 2, c.N, x.to_vector());
    CHECK(scaled_error(y.to_vector(), ref) <= 1e-12);
  }
}

TEST_CASE("MegaAttention gradcheck in x and the parameters") {
  // Small sizes; every parameter but v_proj.bias and h_proj.bias, the relative position
  // bias included.
  const MegaShape s{.d = 4, .n = 2, .z = 3, .v = 4, .block = 3, .max_len = 8};
  const std::vector<std::string> paths = {
      "ema_delta", "ema_alpha", "ema_beta",      "ema_eta",        "ema_omega",    "qk_scale",
      "qk_offset", "rel_bias",  "v_proj.weight", "mx_proj.weight", "mx_proj.bias", "h_proj.weight"};
  const std::vector<Variant> variants = {
      {"mega", "softmax", true, 5},        {"mega", "laplace", true, 5},
      {"mega", "softmax", false, 5},       {"mega", "laplace", false, 4},
      {"mega-chunk", "softmax", true, 7},  {"mega-chunk", "laplace", true, 7},
      {"mega-chunk", "softmax", false, 6}, {"mega-chunk", "laplace", false, 6},
  };
  for (const Variant& c : variants) {
    CAPTURE(c.kind);
    CAPTURE(c.score);
    CAPTURE(c.causal);
    auto attn = make_mega(mega_config(c.kind, c.causal, c.score, s), 11);
    const Tensor x = randn({2, c.N, s.d}, 12);
    GradcheckResult r =
        gradcheck_module(*attn, x, paths, [&](const Tensor& in) { return attn->forward(in); });
    INFO(r.message);
    CHECK(r.ok);
  }
}

TEST_CASE("mega-chunk with block_size ≥ N equals mega") {
  const MegaShape s{.max_len = 8};
  for (const std::string score : {"softmax", "laplace"})
    for (bool causal : {true, false}) {
      CAPTURE(score);
      CAPTURE(causal);
      MegaShape chunk = s;
      chunk.block = s.max_len;
      auto whole = make_mega(mega_config("mega", causal, score, s), 3);
      auto chunked = make_mega(mega_config("mega-chunk", causal, score, chunk), 4);
      chunked->load_state_dict(whole->state_dict());
      for (int64_t N : {5, 8}) {
        const Tensor x = randn({2, N, s.d}, 7);
        CHECK(max_abs_diff(chunked->forward(x), whole->forward(x)) == 0.0);
      }
    }
}

TEST_CASE("mega-chunk: each chunk's attention sees only its own chunk") {
  // With the EMA switched off (β = 0: X′ = silu(ω ⊙ x)), outputs in one chunk depend on x
  // in that chunk only; a change in chunk 1 leaves chunks 0 and 2 as they were.
  for (bool causal : {true, false}) {
    CAPTURE(causal);
    auto attn = make_mega(mega_config("mega-chunk", causal, "softmax"), 8);
    {
      Tensor beta = attn->parameter("ema_beta");
      beta.zero_();
    }
    const Tensor x = randn({1, 12, 6}, 2);
    std::vector<double> xv = x.to_vector();
    xv[static_cast<size_t>(5 * 6 + 2)] += 1.0;  // position 5: chunk 1 of [0,4), [4,8), [8,12)
    const Tensor x2 = Tensor::from(xv, x.shape(), DType::f64);
    const std::vector<double> a = attn->forward(x).to_vector(), b = attn->forward(x2).to_vector();
    for (int64_t t = 0; t < 12; ++t) {
      double diff = 0;
      for (int64_t c = 0; c < 6; ++c)
        diff = std::max(
            diff, std::abs(a[static_cast<size_t>(t * 6 + c)] - b[static_cast<size_t>(t * 6 + c)]));
      CAPTURE(t);
      if (t / 4 == 1 && (!causal || t >= 5))
        CHECK(diff > 1e-6);
      else
        CHECK(diff == 0.0);
    }
  }
}

TEST_CASE("MegaAttention: step() at every position equals forward()") {
  struct Case {
    std::string kind, score;
    int64_t N, max_len;
  };
  const std::vector<Case> cases = {
      {"mega", "softmax", 11, 12},      {"mega", "laplace", 11, 12},
      {"mega-chunk", "softmax", 11, 0}, {"mega-chunk", "laplace", 11, 0},
      {"mega", "softmax", 70, 80},  // past the cache's first capacity (64)
  };
  for (const Case& c : cases)
    for (DType dtype : {DType::f64, DType::f32}) {
      CAPTURE(c.kind);
      CAPTURE(c.score);
      CAPTURE(c.N);
      CAPTURE(dtype);
      MegaShape s;
      s.max_len = c.max_len;
      auto attn = make_mega(mega_config(c.kind, true, c.score, s), 21, dtype);
      const Tensor x = randn({2, c.N, s.d}, 22, dtype);
      const Tensor parallel = attn->forward(x);
      const Tensor recurrent = step_through(*attn, x);
      double scale = 0;
      for (double e : parallel.to_vector()) scale = std::max(scale, std::abs(e));
      REQUIRE(scale > 1e-3);
      const double diff = max_abs_diff(parallel, recurrent);
      CAPTURE(diff);
      CAPTURE(scale);
      CHECK(diff <= (dtype == DType::f64 ? 1e-10 : 1e-4) * scale);
    }
}

TEST_CASE("MegaAttention: causal outputs ignore the future, bidirectional ones do not") {
  for (const std::string kind : {"mega", "mega-chunk"})
    for (bool causal : {true, false}) {
      CAPTURE(kind);
      CAPTURE(causal);
      auto attn = make_mega(mega_config(kind, causal, "laplace"), 30);
      const Tensor x = randn({1, 8, 6}, 31);
      std::vector<double> xv = x.to_vector();
      xv[static_cast<size_t>(6 * 6)] += 1.0;  // position 6
      const std::vector<double> a = attn->forward(x).to_vector();
      const std::vector<double> b =
          attn->forward(Tensor::from(xv, x.shape(), DType::f64)).to_vector();
      double past = 0;
      for (size_t i = 0; i < static_cast<size_t>(6 * 6); ++i)
        past = std::max(past, std::abs(a[i] - b[i]));
      if (causal)
        CHECK(past == 0.0);
      else
        CHECK(past > 1e-6);  // the reverse EMA carries position 6 back to every position
    }
}

TEST_CASE("MegaAttention: parameters, initialisation and state layout") {
  Generator gen(1);
  const MegaShape s;
  auto causal = std::dynamic_pointer_cast<MegaAttention>(
      make_attention(mega_config("mega", true, "softmax", s), gen));
  auto bidir = std::dynamic_pointer_cast<MegaAttention>(
      make_attention(mega_config("mega-chunk", false, "softmax", s), gen));
  REQUIRE(causal != nullptr);
  REQUIRE(bidir != nullptr);
  CHECK(causal->qkv_proj == nullptr);
  CHECK(causal->out_proj == nullptr);
  CHECK(causal->ema_delta.shape() == Shape({1, s.d, s.n}));
  CHECK(bidir->ema_delta.shape() == Shape({2, s.d, s.n}));  // forward and reverse
  CHECK(causal->rel_bias.shape() == Shape({2 * s.max_len - 1}));
  CHECK(bidir->rel_bias.shape() == Shape({2 * s.block - 1}));
  CHECK(causal->mx_proj->weight.shape() == Shape({2 * s.d + s.z + s.v, s.d}));
  CHECK(causal->parameter("qk_scale").shape() == Shape({2, s.z}));
  // β starts near +1, −1, +1, … along n.
  const std::vector<double> beta = causal->ema_beta.to_vector();
  for (size_t i = 0; i < beta.size(); ++i)
    CHECK(std::abs(beta[i] - (i % static_cast<size_t>(s.n) % 2 == 0 ? 1.0 : -1.0)) < 0.1);

  AttentionState state = causal->initial_state(3);
  CHECK(state.kind == "mega");
  REQUIRE(state.tensors.size() == 3);
  CHECK(state.tensors[0].shape() == Shape({3, s.d, s.n}));  // h
  CHECK(state.tensors[1].shape() == Shape({3, 64, s.z}));   // k_cache, growing
  CHECK(state.tensors[2].shape() == Shape({3, 64, s.v}));   // v_cache
  auto chunked = make_attention(mega_config("mega-chunk", true, "laplace", s), gen);
  AttentionState cs = chunked->initial_state(2);
  CHECK(cs.tensors[1].shape() == Shape({2, s.block, s.z}));
  CHECK(cs.tensors[2].shape() == Shape({2, s.block, s.v}));
  Tensor x = randn({2, 1, s.d}, 2, DType::f32).requires_grad_();
  Tensor y = chunked->step(x, cs);
  CHECK(y.shape() == Shape({2, 1, s.d}));
  CHECK_FALSE(y.requires_grad());
  CHECK(cs.position == 1);
}

TEST_CASE("MegaAttention: dropout on the output, in training mode only") {
  AttentionConfig config = mega_config("mega-chunk", true, "softmax");
  config.dropout = 0.5;
  auto attn = make_mega(config, 40);
  const Tensor x = randn({2, 9, 6}, 41);
  attn->eval();
  const std::vector<double> clean = attn->forward(x).to_vector();
  const std::vector<double> ref = naive_mega::mega_block(params_of(*attn, 9), 2, 9, x.to_vector());
  CHECK(scaled_error(clean, ref) <= 1e-12);
  attn->train();
  const std::vector<double> dropped = attn->forward(x).to_vector();
  int64_t zeros = 0;
  for (size_t i = 0; i < clean.size(); ++i) {
    if (dropped[i] == 0.0)
      ++zeros;
    else
      CHECK(dropped[i] == doctest::Approx(2 * clean[i]).epsilon(1e-12));
  }
  CHECK(zeros > 20);
  CHECK(zeros < 88);
}

TEST_CASE("MegaAttention: gradient probes see q, k, v and the attention output") {
  auto attn = make_mega(mega_config("mega", true, "softmax"), 50);
  attn->inspect_gradients(true);
  const Tensor x = randn({2, 6, 6}, 51);
  attn->forward(x).backward(randn({2, 6, 6}, 52));
  const AttentionGradNorms& g = attn->gradient_norms();
  CHECK(g.backwards == 1);
  CHECK(g.q > 0);
  CHECK(g.k > 0);
  CHECK(g.v > 0);
  CHECK(g.out > 0);
}

TEST_CASE("MegaAttention: bad input is an error naming the argument") {
  Generator gen(1);
  {
    AttentionConfig bad = mega_config("mega-chunk", true, "softmax");
    bad.params.set("block_size", int64_t{0});
    check_error([&] { make_attention(bad, gen); }, {"block_size = 0", "positive"});
    bad.params.set("block_size", int64_t{-3});
    check_error([&] { make_attention(bad, gen); }, {"block_size = -3", "positive"});
  }
  {
    AttentionConfig bad = mega_config("softmax", true, "softmax");
    check_error([&] { std::make_shared<MegaAttention>(bad, gen); },
                {"MegaAttention", "kind = 'softmax'", "'mega' or 'mega-chunk'"});
  }
  auto chunk_bidir = make_attention(mega_config("mega-chunk", false, "softmax"), gen);
  // A partial last chunk is a chunk of its own, causal or not.
  CHECK(chunk_bidir->forward(randn({1, 6, 6}, 1, DType::f32)).shape() == Shape({1, 6, 6}));
  auto whole = make_attention(mega_config("mega", true, "softmax"), gen);
  check_error(
      [&] {
        whole->forward(randn({1, 13, 6}, 1, DType::f32));
      },
      {"MegaAttention::forward", "N = 13", "exceeds max_len = 12"});
  check_error(
      [&] {
        whole->forward(randn({1, 5, 7}, 1, DType::f32));
      },
      {"MegaAttention::forward", "x has shape [1,5,7]", "[B, N, 6]"});
  check_error(
      [&] {
        whole->forward(randn({5, 6}, 1, DType::f32));
      },
      {"MegaAttention::forward", "x", "rank 3"});

  // The recurrent form.
  check_error([&] { chunk_bidir->initial_state(1); }, {"not causal"});
  auto chunked = make_attention(mega_config("mega-chunk", true, "laplace"), gen);
  const Tensor x1 = randn({2, 1, 6}, 3, DType::f32);
  {
    AttentionState state = chunked->initial_state(2);
    state.tensors[1] = Tensor::zeros({2, 3, 4});
    check_error([&] { chunked->step(x1, state); },
                {"MegaAttention::step", "'k_cache' has shape [2,3,4]", "expected [2,4,4]"});
  }
  {
    AttentionState state = chunked->initial_state(2);
    state.tensors[0] = Tensor::zeros({2, 6, 2});
    check_error([&] { chunked->step(x1, state); },
                {"MegaAttention::step", "'h' has shape [2,6,2]", "expected [2,6,3]"});
  }
  {
    AttentionState state = chunked->initial_state(3);
    check_error([&] { chunked->step(x1, state); }, {"MegaAttention::step", "batch 2", "3"});
  }
  {
    AttentionState state = whole->initial_state(2);
    check_error([&] { chunked->step(x1, state); },
                {"MegaAttention::step", "'mega' attention", "'mega-chunk'"});
  }
  {
    AttentionState state = chunked->initial_state(2);
    check_error(
        [&] {
          chunked->step(randn({2, 2, 6}, 4, DType::f32), state);
        },
        {"MegaAttention::step", "x has shape [2,2,6]", "[B, 1, 6]"});
  }
  {
    AttentionState state = whole->initial_state(2);
    for (int64_t t = 0; t < 12; ++t) whole->step(x1, state);
    check_error([&] { whole->step(x1, state); },
                {"MegaAttention::step", "position 12", "max_len = 12"});
  }
}
