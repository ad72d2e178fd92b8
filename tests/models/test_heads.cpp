// TransformerLM's heads: classification (mean or CLS pooling, an optional ReLU layer) on
// padded batches, the mixture head's shape, their parameters, configs and checkpoints.
#include <filesystem>

#include "files.h"
#include "nn/helpers.h"
#include "polyak/models/memory.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::gradcheck_module;
using polyak::testing::has_form;
using polyak::testing::max_abs_diff;
using polyak::testing::use_test_sizes;

namespace {

// A small encoder-classifier: 2 layers, d 8, 2 heads, vocab 6, 3 classes, N ≤ 7.
TransformerConfig classifier(const std::string& kind, const std::string& pooling, int64_t hidden) {
  TransformerConfig c;
  c.vocab = 6;
  c.max_len = 8;
  c.d_model = 8;
  c.heads = 2;
  c.ff_dim = 16;
  c.layers = 2;
  c.dropout = 0.0;
  c.positions = "learned";
  c.pre_norm = true;
  c.causal = false;
  c.seed = 21;
  set_model_kind(c, kind);
  use_test_sizes(c);
  if (c.attention_params.schema()->find("block_size") != nullptr)
    c.attention_params.set("block_size", int64_t{3});
  c.head = "classes";
  c.classes = 3;
  c.pooling = pooling;
  c.head_hidden = hidden;
  return c;
}

Tensor tokens(int64_t B, int64_t N, uint64_t seed) {
  Generator gen(seed);
  std::vector<int64_t> v(static_cast<size_t>(B * N));
  for (int64_t& t : v) t = static_cast<int64_t>(gen.integer(6));
  return Tensor::from_ints(v, Shape{B, N});
}

}  // namespace

TEST_CASE("class head: a padded batch gives each row's logits alone, every non-causal kind") {
  const std::vector<int64_t> lengths = {7, 3, 5};
  const Tensor toks = tokens(3, 7, 1);
  for (const std::string& kind : model_kinds()) {
    if (!has_form(kind, /*causal=*/false)) continue;
    for (const char* pooling : {"mean", "cls"}) {
      CAPTURE(kind);
      CAPTURE(pooling);
      TransformerLM model(classifier(kind, pooling, pooling[0] == 'm' ? 0 : 16));
      model.to(DType::f64);
      model.eval();
      const Tensor logits = model.forward(toks, lengths);
      REQUIRE(logits.shape() == Shape({3, 3}));
      for (int64_t b = 0; b < 3; ++b) {
        const int64_t n = lengths[static_cast<size_t>(b)];
        const Tensor alone = model.forward(slice(slice(toks, 0, b, b + 1), 1, 0, n));
        CHECK(max_abs_diff(slice(logits, 0, b, b + 1), alone) <= 1e-12);
      }
      // What the padding holds does not matter.
      Tensor other = toks.clone();
      other.data<int64_t>()[1 * 7 + 5] = 4;
      other.data<int64_t>()[2 * 7 + 6] = 0;
      CHECK(max_abs_diff(model.forward(other, lengths), logits) <= 1e-12);
    }
  }
}

TEST_CASE("class head: mean pooling averages the real positions' final states") {
  TransformerLM model(classifier("linear", "mean", 0));
  model.to(DType::f64);
  model.eval();
  const Tensor toks = tokens(2, 5, 2);
  const std::vector<int64_t> lengths = {5, 2};
  const Tensor h = model.features(toks, lengths);
  const Tensor pooled = model.pool(h, lengths);
  const std::vector<double> hv = h.to_vector(), pv = pooled.to_vector();
  for (int64_t c = 0; c < 8; ++c) {
    double full = 0, two = 0;
    for (int64_t t = 0; t < 5; ++t) full += hv[static_cast<size_t>(t * 8 + c)] / 5;
    for (int64_t t = 0; t < 2; ++t) two += hv[static_cast<size_t>((5 + t) * 8 + c)] / 2;
    CHECK(pv[static_cast<size_t>(c)] == doctest::Approx(full).epsilon(1e-12));
    CHECK(pv[static_cast<size_t>(8 + c)] == doctest::Approx(two).epsilon(1e-12));
  }
  // The logits are the head on the pool.
  CHECK(max_abs_diff(model.forward(toks, lengths), model.head->forward(pooled)) <= 1e-12);
}

TEST_CASE("class head: gradcheck through the pooling, the ReLU layer and the CLS vector") {
  for (const char* pooling : {"mean", "cls"}) {
    CAPTURE(pooling);
    TransformerLM model(classifier("momentum", pooling, 6));
    model.to(DType::f64);
    const Tensor toks = tokens(2, 5, 3);
    const std::vector<int64_t> lengths = {3, 5};
    std::vector<std::string> paths = {"head.weight", "head_hidden.weight",
                                      "layers.0.attention.qkv_proj.weight"};
    if (std::string(pooling) == "cls") paths.push_back("cls");
    GradcheckResult r = gradcheck_module(
        model, Tensor(), paths, [&](const Tensor&) { return model.forward(toks, lengths); });
    INFO(r.message);
    CHECK(r.ok);
  }
}

TEST_CASE("heads: parameters and outputs") {
  for (const char* pooling : {"mean", "cls"})
    for (int64_t hidden : {0, 16}) {
      const TransformerConfig c = classifier("softmax", pooling, hidden);
      const TransformerLM model(c);
      CHECK(parameter_count(c) == static_cast<double>(model.num_parameters()));
      CHECK((model.head_hidden != nullptr) == (hidden > 0));
      CHECK(model.cls.defined() == (std::string(pooling) == "cls"));
    }
  TransformerConfig m;
  m.vocab = 256;
  m.max_len = 16;
  m.d_model = 8;
  m.heads = 2;
  m.layers = 1;
  m.head = "mixture";
  m.mixtures = 4;
  TransformerLM mixture(m);
  CHECK(parameter_count(m) == static_cast<double>(mixture.num_parameters()));
  Generator gen(4);
  std::vector<int64_t> v(2 * 5);
  for (int64_t& t : v) t = static_cast<int64_t>(gen.integer(256));
  CHECK(mixture.forward(Tensor::from_ints(v, Shape{2, 5})).shape() == Shape({2, 5, 12}));
  ModelState state = mixture.initial_state(2);
  CHECK(mixture.step(Tensor::from_ints({1, 2}, Shape{2}), state).shape() == Shape({2, 12}));
  // A mixture head generates images, not tokens.
  check_error(
      [&] {
        generate(mixture, {1, 2}, GenerateOptions{});
      },
      {"generate", "mixture head", "sample_images"});
  // A token head over the first 256 of 257 tokens: the pixel model's 256-way softmax.
  TransformerConfig softmax_pixels = m;
  softmax_pixels.vocab = 257;
  softmax_pixels.head = "tokens";
  softmax_pixels.output_vocab = 256;
  TransformerLM pixels(softmax_pixels);
  CHECK(parameter_count(softmax_pixels) == static_cast<double>(pixels.num_parameters()));
  CHECK(pixels.forward(Tensor::from_ints({256, 3}, Shape{1, 2})).shape() == Shape({1, 2, 256}));
  CHECK(config_from_json(config_to_json(softmax_pixels), "t").output_vocab == 256);
}

TEST_CASE("heads: configs and bad input") {
  TransformerConfig c = classifier("linear", "cls", 16);
  const TransformerConfig back = config_from_json(config_to_json(c), "test");
  CHECK(back.head == "classes");
  CHECK(back.classes == 3);
  CHECK(back.pooling == "cls");
  CHECK(back.head_hidden == 16);

  // A config written before the heads existed is a token model.
  std::string old = config_to_json(TransformerConfig{});
  for (const char* key :
       {"head", "classes", "pooling", "head_hidden", "mixtures", "output_vocab"}) {
    const std::string field = std::string(",\"") + key + "\":";
    const size_t at = old.find(field);
    REQUIRE(at != std::string::npos);
    const size_t end = old.find_first_of(",}", old.find(':', at + 1) + 1);
    old.erase(at, end - at);
  }
  CHECK(old.find("pooling") == std::string::npos);
  CHECK(config_from_json(old, "old").head == "tokens");

  auto bad = [&](auto edit, std::vector<std::string> fragments) {
    TransformerConfig b = classifier("linear", "mean", 0);
    edit(b);
    check_error([&] { b.validate(); }, fragments);
  };
  bad([](TransformerConfig& b) { b.classes = 1; }, {"classes = 1", "at least 2"});
  bad([](TransformerConfig& b) { b.head = "pixels"; }, {"head", "pixels", "tokens"});
  bad([](TransformerConfig& b) { b.pooling = "max"; }, {"pooling", "max", "mean"});
  bad([](TransformerConfig& b) { b.head_hidden = -1; }, {"head_hidden = -1"});
  bad([](TransformerConfig& b) { b.output_vocab = 7; }, {"output_vocab = 7", "vocab = 6"});
  bad(
      [](TransformerConfig& b) {
        b.head = "mixture";
        b.vocab = 256;
        b.mixtures = 65;
      },
      {"mixtures = 65", "1 to 64"});
  bad(
      [](TransformerConfig& b) {
        b.head = "mixture";
        b.vocab = 11;
      },
      {"vocab = 11", "256"});

  TransformerConfig causal_classifier = classifier("linear", "mean", 0);
  causal_classifier.causal = true;
  TransformerLM model(causal_classifier);
  check_error([&] { model.initial_state(1); }, {"class head", "no recurrent form"});
  TransformerLM cls_model(classifier("linear", "cls", 0));
  check_error([&] { cls_model.forward(tokens(1, 8, 5)); },
              {"8 positions", "CLS vector one more", "max_len = 8"});
  check_error([&] { cls_model.forward(tokens(2, 4, 5), {4}); }, {"lengths has 1 entries"});
}

TEST_CASE("heads: a classifier's checkpoint loads and classifies the same") {
  const polyak::testing::TempDir dir("heads");
  TransformerLM model(classifier("momentum", "cls", 16));
  model.eval();
  const std::string path = dir.file("classifier.safetensors");
  save_model(model, path);
  auto loaded = load_model(path);
  loaded->eval();
  const Tensor toks = tokens(2, 6, 6);
  CHECK(loaded->config().head == "classes");
  CHECK(max_abs_diff(loaded->forward(toks, {6, 3}), model.forward(toks, {6, 3})) == 0.0);
}

TEST_CASE("mixture head: the recurrent form's nll equals the parallel form's, every causal kind") {
  // The bits/dim of a pixel model computed one pixel at a time (what sampling runs) and in
  // one parallel pass (what training and evaluation run) are the same function.
  const int64_t B = 2, N = 9, K = 3;
  Generator gen(31);
  std::vector<int64_t> pixels(static_cast<size_t>(B * N)), inputs(static_cast<size_t>(B * N));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t) {
      pixels[static_cast<size_t>(b * N + t)] = static_cast<int64_t>(gen.integer(256));
      inputs[static_cast<size_t>(b * N + t)] =
          t == 0 ? 256 : pixels[static_cast<size_t>(b * N + t - 1)];
    }
  const Tensor targets = Tensor::from_ints(pixels, Shape{B, N});
  const Tensor tokens = Tensor::from_ints(inputs, Shape{B, N});
  for (const std::string& kind : model_kinds()) {
    if (!has_form(kind, /*causal=*/true)) continue;
    CAPTURE(kind);
    TransformerConfig c;
    c.vocab = 257;
    c.max_len = 16;
    c.d_model = 8;
    c.heads = 2;
    c.ff_dim = 16;
    c.layers = 2;
    c.dropout = 0.0;
    c.seed = 32;
    set_model_kind(c, kind);
    use_test_sizes(c);
    c.head = "mixture";
    c.mixtures = K;
    TransformerLM model(c);
    model.to(DType::f64);
    model.eval();
    const double parallel = mean(logistic_mixture_nll(model.forward(tokens), targets)).item();
    ModelState state = model.initial_state(B);
    double total = 0;
    for (int64_t t = 0; t < N; ++t) {
      const Tensor params = model.step(slice(tokens, 1, t, t + 1).reshape({B}), state);
      total += sum(logistic_mixture_nll(params, slice(targets, 1, t, t + 1).reshape({B}))).item();
    }
    const double recurrent = total / static_cast<double>(B * N);
    CHECK(parallel > 1.0);  // nats per pixel of an untrained model: a real number
    CHECK(recurrent == doctest::Approx(parallel).epsilon(1e-11));
  }
}
