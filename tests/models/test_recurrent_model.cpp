// The recurrent (RNN-mode) form of whole models: stepped token by token they agree with
// their parallel forward at every position; generation; the state's checks.
#include <chrono>
#include <cmath>
#include <memory>

#include "nn/helpers.h"

using namespace polyak;
using polyak::testing::attention_config;
using polyak::testing::check_agree;
using polyak::testing::check_error;
using polyak::testing::has_causal_form;
using polyak::testing::host_ids;
using polyak::testing::ids;
using polyak::testing::seeded_randn;
using polyak::testing::ThreadCount;
using polyak::testing::use_test_sizes;

namespace {

TransformerConfig small_model(const std::string& kind) {
  TransformerConfig c;
  c.vocab = 7;
  c.max_len = 10;
  c.d_model = 16;
  c.heads = 2;
  c.ff_dim = 24;
  c.layers = 3;
  c.dropout = 0.1;  // inactive in eval mode and in generation
  c.positions = "learned";
  c.seed = 9;
  set_model_kind(c, kind);
  use_test_sizes(c);
  return c;
}

// tokens [B, N] with values in [0, V), a fixed pattern.
Tensor pattern(int64_t B, int64_t N, int64_t V) {
  std::vector<int64_t> t(static_cast<size_t>(B * N));
  for (int64_t i = 0; i < B * N; ++i) t[static_cast<size_t>(i)] = (i * 5 + i / 3 + 1) % V;
  return ids({B, N}, t);
}

// Steps the model through tokens [B, N] → logits [B, N, V].
Tensor step_through(TransformerLM& model, const Tensor& tokens) {
  const int64_t B = tokens.size(0), N = tokens.size(1);
  ModelState state = model.initial_state(B);
  std::vector<Tensor> rows;
  for (int64_t t = 0; t < N; ++t) {
    Tensor logits = model.step(slice(tokens, 1, t, t + 1).reshape({B}), state);
    CHECK(logits.shape() == Shape({B, model.config().vocab}));
    CHECK_FALSE(logits.requires_grad());
    rows.push_back(logits.reshape({B, 1, model.config().vocab}));
  }
  CHECK(state.position == N);
  for (const AttentionState& s : state.layers) CHECK(s.position == N);
  return concat(rows, 1);
}

int32_t argmax_last(const Tensor& logits) {  // logits [1, N, V] → argmax of row N − 1
  std::vector<double> l = logits.to_vector();
  const int64_t V = logits.size(2), base = (logits.size(1) - 1) * V;
  int64_t best = 0;
  for (int64_t v = 1; v < V; ++v)
    if (l[static_cast<size_t>(base + v)] > l[static_cast<size_t>(base + best)]) best = v;
  return static_cast<int32_t>(best);
}

}  // namespace

// ---- whole models ----------------------------------------------------------------------

TEST_CASE("recurrent: every model kind steps exactly like forward, f64 and f32") {
  struct Params {
    double beta, gamma, connection_beta, connection_gamma;
  };
  const std::vector<Params> params = {
      {0.0, 1.0, 0.0, 1.0}, {0.1, 0.6, 0.99, 0.99}, {0.7, 1.3, 0.5, 0.4}};
  for (const std::string& kind : model_kinds()) {
    if (!has_causal_form(kind)) continue;
    for (size_t p = 0; p < params.size(); ++p) {
      for (DType dtype : {DType::f64, DType::f32}) {
        TransformerConfig c = small_model(kind);
        if (c.attention == "momentum")
          c.attention_params = MomentumParams{.beta = params[p].beta, .gamma = params[p].gamma};
        if (c.connection == "momentum")
          c.connection_params = MomentumConnectionParams{.beta = params[p].connection_beta,
                                                         .gamma = params[p].connection_gamma};
        if (c.connection == "adaptive")
          c.connection_params = AdaptiveConnectionParams{.gamma = params[p].connection_gamma};
        c.pre_norm = p == 1;
        // Sinusoidal positions have no bound: step past max_len there.
        c.positions = p == 2 ? "sinusoidal" : "learned";
        const int64_t N = p == 2 ? 13 : 10;
        if (kind == "mega") c.max_len = N;  // Mega's relative bias has max_len's reach
        TransformerLM model(c);
        model.eval();
        model.to(dtype);
        Tensor tokens = pattern(2, N, c.vocab);
        INFO(kind << " params " << p << " " << dtype);
        Tensor parallel = model(tokens);  // first: it grows the sinusoidal table past max_len
        check_agree(parallel, step_through(model, tokens));
      }
    }
  }
}

TEST_CASE("recurrent: the adaptive model at the clamp steps like forward") {
  // δ = 0.9: 1 − δ = 0.1, so β̃ sits at the clamp for most tokens.
  TransformerConfig c = small_model("adaptive");
  c.connection_params = AdaptiveConnectionParams{.delta = 0.9, .denominator = "attention"};
  TransformerLM model(c);
  model.eval();
  model.to(DType::f64);
  Tensor tokens = pattern(3, 7, c.vocab);
  Tensor parallel = model(tokens);
  check_agree(parallel, step_through(model, tokens));
}

// ---- generation ------------------------------------------------------------------------

TEST_CASE("generate: greedy equals the argmax of forward on the growing sequence") {
  for (const std::string& kind : model_kinds()) {
    if (!has_causal_form(kind)) continue;
    INFO(kind);
    TransformerConfig c = small_model(kind);
    c.positions = kind == "linear" ? "sinusoidal" : "learned";
    TransformerLM model(c);
    CHECK(model.is_training());
    const std::vector<int32_t> prompt = {1, 2, 3};
    std::vector<int32_t> got = generate(model, prompt, {.max_new_tokens = 6});
    CHECK(model.is_training());  // restored
    REQUIRE(got.size() == 6);

    model.eval();  // the reference: forward (dropout off) re-run on the growing sequence
    std::vector<int32_t> seq = prompt, expected;
    for (int i = 0; i < 6; ++i) {
      Tensor logits = model(ids({1, static_cast<int64_t>(seq.size())}, {seq.begin(), seq.end()}));
      expected.push_back(argmax_last(logits));
      seq.push_back(expected.back());
    }
    CHECK(got == expected);
    CHECK_FALSE(model.is_training());  // eval mode stays eval
    CHECK(generate(model, prompt, {.max_new_tokens = 6}) == expected);
    CHECK_FALSE(model.is_training());
  }
}

TEST_CASE("generate: sampling, stop token, callback, zero tokens") {
  TransformerLM model(small_model("momentum"));
  const std::vector<int32_t> prompt = {4, 0};
  std::vector<int32_t> greedy = generate(model, prompt, {.max_new_tokens = 8});

  GenerateOptions o{.max_new_tokens = 8, .temperature = 1.0, .seed = 3};
  std::vector<int32_t> a = generate(model, prompt, o), b = generate(model, prompt, o);
  CHECK(a == b);  // the same seed, the same draws
  REQUIRE(a.size() == 8);
  for (int32_t t : a) CHECK((t >= 0 && t < 7));
  bool differs = false;
  for (uint64_t seed = 4; seed < 8; ++seed) {
    o.seed = seed;
    differs = differs || generate(model, prompt, o) != a;
  }
  CHECK(differs);
  // A tiny temperature is greedy.
  CHECK(generate(model, prompt, {.max_new_tokens = 8, .temperature = 1e-9}) == greedy);

  // stop_token: generation stops after producing it (it is included).
  std::vector<int32_t> stopped =
      generate(model, prompt, {.max_new_tokens = 8, .stop_token = greedy[2]});
  size_t first = 0;
  while (greedy[first] != greedy[2]) ++first;
  CHECK(stopped == std::vector<int32_t>(greedy.begin(), greedy.begin() + first + 1));

  std::vector<int32_t> seen;
  std::vector<int32_t> two =
      generate(model, prompt, {.max_new_tokens = 8, .on_token = [&](int32_t t) {
                                 seen.push_back(t);
                                 return seen.size() < 2;
                               }});
  CHECK(two == std::vector<int32_t>(greedy.begin(), greedy.begin() + 2));
  CHECK(seen == two);
  CHECK(generate(model, prompt, {.max_new_tokens = 0}).empty());
}

TEST_CASE("generate: a model trained on a tiny copy task copies the word after its separator") {
  // One thread: the model is far too small to gain from more, and on a busy machine the
  // waiting of OpenMP's threads would dominate the test's time.
  const ThreadCount one_thread(1);
  const auto start = std::chrono::steady_clock::now();
  CopyTask task({.length = 12, .min_word = 3, .max_word = 6, .symbols = 4, .seed = 1});
  TransformerConfig c;
  c.vocab = task.vocab();
  c.max_len = task.length();
  c.d_model = 32;
  c.heads = 2;
  c.ff_dim = 64;
  c.layers = 2;
  c.dropout = 0.0;
  c.seed = 1;
  set_model_kind(c, "momentum");
  TransformerLM model(c);
  Adam opt(model.parameters(), {.lr = 3e-3});
  for (int step = 0; step < 600; ++step) {
    Batch batch = task.batch(32);
    Tensor loss = cross_entropy(model(batch.tokens), batch.targets, batch.mask);
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  CopyTask test({.length = 12, .min_word = 3, .max_word = 6, .symbols = 4, .seed = 2});
  Batch batch = test.batch(16);
  const Indices tokens = host_ids(batch.tokens);
  for (int64_t row = 0; row < 16; ++row) {
    const int64_t n = batch.word_lengths[static_cast<size_t>(row)];
    std::vector<int32_t> word;
    for (int64_t t = 0; t < n; ++t) word.push_back(tokens[row * task.length() + t]);
    std::vector<int32_t> prompt = word;
    prompt.push_back(0);  // "w 0"
    std::vector<int32_t> copied =
        generate(model, prompt, {.max_new_tokens = static_cast<int64_t>(n)});
    CHECK(copied == word);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("copy task: trained and generated in " << seconds << " s");
}

// ---- bad input -------------------------------------------------------------------------

TEST_CASE("recurrent: states from another kind, batch, width or dtype are errors") {
  Generator gen(0);
  auto momentum = make_attention(attention_config("momentum", 0.1, 0.6), gen);
  auto linear = make_attention(attention_config("linear", 0.1, 0.6), gen);
  Tensor x = seeded_randn({2, 1, 8}, 1);

  AttentionState ls = linear->initial_state(2);
  check_error([&] { momentum->step(x, ls); },
              {"Attention::step", "state was made by a 'linear' attention",
               "expected one made by a 'momentum' attention"});

  AttentionState ms = momentum->initial_state(3);
  check_error([&] { momentum->step(x, ms); },
              {"Attention::step", "x has batch 2, expected the state's batch 3"});

  AttentionConfig narrow = attention_config("momentum", 0.1, 0.6);
  narrow.head_dim = 3;
  auto other = make_attention(narrow, gen);
  AttentionState ns = other->initial_state(2);
  check_error([&] { momentum->step(x, ns); },
              {"Attention::step", "state tensor 'm' has shape [2,2,3,3]", "expected [2,2,4,4]",
               "head_dim 4"});

  AttentionState fs = momentum->initial_state(2);
  fs.tensors.pop_back();
  check_error([&] { momentum->step(x, fs); }, {"the state has 2 tensors, expected 3"});

  auto wide = make_attention(attention_config("momentum", 0.1, 0.6), gen);
  wide->to(DType::f64);
  AttentionState f32_state = momentum->initial_state(2);
  check_error([&] { wide->step(x.to(DType::f64), f32_state); },
              {"state tensor 'm' is f32, expected f64"});

  AttentionState ok = momentum->initial_state(2);
  check_error(
      [&] {
        momentum->step(seeded_randn({2, 2, 8}, 1), ok);
      },
      {"Attention::step", "x has shape [2,2,8], expected [B, 1, 8]"});
  CHECK(ok.position == 0);  // nothing consumed by a failed step

  // Softmax: a cache shorter than the position cannot be this state's.
  auto soft = make_attention(attention_config("softmax", 0.1, 0.6), gen);
  AttentionState ss = soft->initial_state(2);
  ss.position = 100;
  check_error([&] { soft->step(x, ss); },
              {"state tensor 'k_cache' has shape [2,2,64,4]", "C ≥ 100"});
}

TEST_CASE("recurrent: modules and models that cannot step say why") {
  Generator gen(0);
  AttentionConfig c = attention_config("linear", 0.1, 0.6);
  c.causal = false;
  auto bidirectional = make_attention(c, gen);
  check_error([&] { bidirectional->initial_state(1); },
              {"Attention::initial_state", "'linear' attention is not causal", "causal = false"});
  AttentionState s;
  s.kind = "linear";
  s.batch = 1;
  check_error(
      [&] {
        bidirectional->step(seeded_randn({1, 1, 8}, 1), s);
      },
      {"Attention::step", "not causal"});

  c = attention_config("momentum", 0.1, 0.6);
  c.params.as<MomentumParams>().weighting = "reference";
  auto reference = make_attention(c, gen);
  check_error([&] { reference->initial_state(1); },
              {"Attention::initial_state", "weighting = 'reference' has no recurrent form",
               "expected 'exact'"});
  auto exact = make_attention(attention_config("momentum", 0.1, 0.6), gen);
  check_error([&] { exact->initial_state(0); }, {"batch = 0", "positive"});

  TransformerConfig mc = small_model("momentum");
  mc.causal = false;
  TransformerLM encoder(mc);
  check_error([&] { encoder.initial_state(1); },
              {"TransformerLM::initial_state", "not causal (causal = false)"});
  check_error([&] { generate(encoder, {1, 2}, {}); }, {"generate", "not causal (causal = false)"});
}

TEST_CASE("recurrent: model.step checks the state, the tokens and the positions") {
  TransformerLM model(small_model("momentum-connection"));  // 3 layers
  TransformerConfig two = small_model("momentum-connection");
  two.layers = 2;
  TransformerLM shallow(two);
  ModelState s2 = shallow.initial_state(2);
  check_error(
      [&] {
        model.step(ids({2}, {1, 2}), s2);
      },
      {"TransformerLM::step", "the state has 2 layers, expected 3"});

  TransformerLM linear(small_model("linear"));
  ModelState ls = linear.initial_state(2);
  check_error(
      [&] {
        model.step(ids({2}, {1, 2}), ls);
      },
      {"TransformerLM::step", "state of layer 0 was made by a 'linear' attention", "'momentum'"});

  ModelState s = model.initial_state(2);
  check_error(
      [&] {
        model.step(ids({3}, {1, 2, 3}), s);
      },
      {"TransformerLM::step", "tokens has batch 3, expected the state's batch 2"});
  check_error(
      [&] {
        model.step(ids({2}, {1, 7}), s);
      },
      {"TransformerLM::step", "tokens[1] = 7", "[0, vocab = 7)"});
  check_error([&] { model.step(ids({1, 2}, {1, 2}), s); }, {"tokens has shape [1,2]", "[B]"});
  CHECK(s.position == 0);

  // Learned positions end at max_len = 10.
  for (int i = 0; i < 10; ++i) model.step(ids({2}, {1, 2}), s);
  check_error(
      [&] {
        model.step(ids({2}, {1, 2}), s);
      },
      {"TransformerLM::step", "position 10 is beyond the learned positions", "max_len = 10"});
}

TEST_CASE("generate: bad prompts and options") {
  TransformerLM model(small_model("adaptive"));
  check_error([&] { generate(model, {}, {}); }, {"generate", "prompt is empty"});
  check_error(
      [&] {
        generate(model, {1, 9}, {});
      },
      {"generate", "prompt[1] = 9", "[0, vocab = 7)"});
  check_error([&] { generate(model, {1}, {.max_new_tokens = -1}); },
              {"generate", "max_new_tokens = -1", "≥ 0"});
  check_error([&] { generate(model, {1}, {.temperature = -0.5}); },
              {"generate", "temperature = -0.5"});
  check_error(
      [&] {
        generate(model, {1, 2, 3}, {.max_new_tokens = 9});
      },
      {"generate", "need 11 positions", "max_len = 10"});
  CHECK(generate(model, {1, 2, 3}, {.max_new_tokens = 8}).size() == 8);  // exactly 10 positions
}

TEST_CASE("generate: whole-sequence Mega past its max_len is refused before any token") {
  // Mega without chunks attends through a relative bias over max_len positions: with
  // sinusoidal positions nothing else bounds the sequence, and a run that met the bound
  // part-way would lose what it had generated.
  TransformerConfig c = small_model("mega");
  c.positions = "sinusoidal";
  TransformerLM model(c);
  CHECK(model.step_limit() == 10);
  int generated = 0;
  GenerateOptions o{.max_new_tokens = 12};
  o.on_token = [&](int32_t) {
    ++generated;
    return true;
  };
  check_error(
      [&] {
        generate(model, {1, 2}, o);
      },
      {"generate", "need 13 positions",
       "expected at most 10 (mega attention over "
       "max_len = 10)"});
  CHECK(generated == 0);
  o.max_new_tokens = 9;  // exactly 10 positions
  CHECK(generate(model, {1, 2}, o).size() == 9);
  // Chunked Mega and the other kinds step without a bound of their own.
  CHECK(TransformerLM(small_model("mega-chunk")).step_limit() == 10);  // learned positions
  TransformerConfig linear = small_model("linear");
  linear.positions = "sinusoidal";
  CHECK(TransformerLM(linear).step_limit() == 0);
}
