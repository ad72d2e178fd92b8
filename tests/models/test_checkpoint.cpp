// Checkpoints: the config as JSON, save_model / load_model round trips with bit-identical
// logits, and one test per way a checkpoint can be wrong.
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "files.h"
#include "nn/helpers.h"
#include "polyak/core/safetensors.h"
#include "polyak/models/checkpoint.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::has_causal_form;
using polyak::testing::ids;
using polyak::testing::read_bytes;
using polyak::testing::TempDir;
using polyak::testing::use_test_sizes;
using polyak::testing::write_bytes;
namespace fs = std::filesystem;

namespace {

// A small model: 2 layers, d 16, 2 heads, vocab 7, learned positions up to 8.
TransformerConfig small(const std::string& kind = "linear") {
  TransformerConfig c;
  c.vocab = 7;
  c.max_len = 8;
  c.d_model = 16;
  c.heads = 2;
  c.ff_dim = 24;
  c.layers = 2;
  c.dropout = 0.0;
  c.positions = "learned";
  c.seed = 5;
  set_model_kind(c, kind);
  c.causal = has_causal_form(kind);
  use_test_sizes(c);
  return c;
}

// Overwrites every tensor of `model` with fresh random values, so that a loaded model can
// only match it by reading the file (construction from the same config and seed would not).
void scramble(TransformerLM& model, uint64_t seed) {
  Generator gen(seed);
  NoGradGuard no_grad;
  for (auto& [name, t] : model.state_dict()) {
    Tensor dst = t;
    dst.copy_(Tensor::randn(t.shape(), gen, t.dtype()));
  }
}

Tensor tokens() {
  return ids({2, 8}, {1, 6, 0, 2, 3, 5, 4, 1, 4, 4, 2, 0, 6, 3, 1, 2});
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

// The model's tensors as a checkpoint would hold them, with entries changed by `edit`.
void save_edited(
    const TransformerLM& model, const std::string& path,
    const std::function<void(NamedTensors&, std::map<std::string, std::string>&)>& edit) {
  NamedTensors tensors;
  for (const auto& [name, t] : model.state_dict()) tensors.emplace_back(name, t.detach());
  std::map<std::string, std::string> metadata = {{"polyak.format", "transformer-lm/2"},
                                                 {"polyak.config", config_to_json(model.config())}};
  edit(tensors, metadata);
  save_safetensors(path, tensors, metadata);
}

}  // namespace

// ---- config JSON ------------------------------------------------------------------------

TEST_CASE("config_to_json / config_from_json: every field round trips exactly") {
  TransformerConfig c;
  c.vocab = 300;
  c.max_len = 513;
  c.d_model = 96;
  c.heads = 3;
  c.head_dim = 40;
  c.ff_dim = 200;
  c.layers = 7;
  c.dropout = 0.15;
  c.attention = "momentum";
  c.causal = false;
  c.pre_norm = true;
  c.positions = "learned";
  c.activation = "relu";
  c.norm = "rmsnorm";
  c.final_norm = false;
  c.connection = "adaptive";
  c.attention_params = MomentumParams{.feature_map = feature_map_kinds().back(),
                                      .eps = 1.0 / 3.0,
                                      .beta = 0.3,
                                      .gamma = 0.7,
                                      .weighting = "reference"};
  c.connection_params = AdaptiveConnectionParams{
      .gamma = 0.9, .delta = 0.002, .eps = 1e-7, .denominator = "attention"};
  c.norm_eps = 1e-12;
  c.seed = 18446744073709551615ull;

  const std::string text = config_to_json(c);
  for (const char* key : {"vocab", "max_len", "d_model", "heads", "head_dim", "ff_dim", "layers",
                          "dropout", "attention", "causal", "pre_norm", "positions", "activation",
                          "norm", "final_norm", "connection", "norm_eps", "seed"}) {
    std::string needle = std::string(1, '"').append(key).append("\":");
    INFO(needle);
    CHECK(text.find(needle) != std::string::npos);
  }
  CHECK(text.rfind(R"({"vocab":300,"max_len":513,)", 0) == 0);
  // The kinds' settings: every field of their structs, defaults included.
  CHECK(text.find(R"("attention_params":{"feature_map":"plain-elu","eps":0.3333333333333333,)"
                  R"("beta":0.3,"gamma":0.7,"weighting":"reference"})") != std::string::npos);
  CHECK(text.find(R"("connection_params":{"gamma":0.9,"delta":0.002,"eps":1e-07,)"
                  R"("denominator":"attention"})") != std::string::npos);

  TransformerConfig r = config_from_json(text, "test");
  CHECK(r.vocab == 300);
  CHECK(r.max_len == 513);
  CHECK(r.d_model == 96);
  CHECK(r.heads == 3);
  CHECK(r.head_dim == 40);
  CHECK(r.ff_dim == 200);
  CHECK(r.layers == 7);
  CHECK(r.dropout == 0.15);
  CHECK(r.attention == "momentum");
  CHECK(r.causal == false);
  CHECK(r.pre_norm == true);
  CHECK(r.positions == "learned");
  CHECK(r.activation == "relu");
  CHECK(r.norm == "rmsnorm");
  CHECK(r.final_norm == false);
  CHECK(r.connection == "adaptive");
  CHECK(r.attention_params == c.attention_params);
  CHECK(r.attention_params.as<MomentumParams>().eps == 1.0 / 3.0);
  CHECK(r.connection_params == c.connection_params);
  CHECK(r.norm_eps == 1e-12);
  CHECK(r.seed == 18446744073709551615ull);
  CHECK(config_to_json(r) == text);

  // Defaults too; whitespace and key order do not matter, integers may stand for doubles.
  CHECK(config_to_json(config_from_json(config_to_json(TransformerConfig{}), "defaults")) ==
        config_to_json(TransformerConfig{}));
  std::string spaced = config_to_json(TransformerConfig{});
  spaced.replace(spaced.find("\"dropout\":0.1"), 13, "\"dropout\" :  0");
  CHECK(config_from_json("\n " + spaced + " \n", "spaced").dropout == 0.0);
}

TEST_CASE("config_from_json: unknown, missing, repeated or mistyped keys name the source") {
  const std::string good = config_to_json(TransformerConfig{});
  auto with = [&](const std::string& key, const std::string& value) {
    std::string j = good;
    size_t at = j.find("\"" + key + "\":");
    REQUIRE(at != std::string::npos);
    size_t begin = at + key.size() + 3;
    size_t end = j.find_first_of(",}", begin);
    if (j[begin] == '"') end = j.find('"', begin + 1) + 1;
    return j.replace(begin, end - begin, value);
  };
  auto without = [&](const std::string& key) {
    std::string j = with(key, "0");
    return j.replace(j.find("\"" + key + "\":0,"), key.size() + 5, "");
  };

  check_error([&] { config_from_json("{\"extra\":1," + good.substr(1), "run.json"); },
              {"config_from_json", "run.json", "unknown key 'extra'", "expected only: vocab,"});
  check_error([&] { config_from_json(without("heads"), "run.json"); },
              {"run.json", "missing key 'heads'"});
  check_error([&] { config_from_json("{}", "run.json"); },
              {"run.json", "missing keys 'vocab', 'max_len',", "'seed'"});
  check_error([&] { config_from_json("{\"heads\":2," + good.substr(1), "run.json"); },
              {"run.json", "key 'heads' appears twice"});
  check_error([&] { config_from_json(with("heads", "\"8\""), "run.json"); },
              {"run.json", "'heads' is \"8\" (a JSON string), expected an integer"});
  check_error([&] { config_from_json(with("heads", "8.5"), "run.json"); },
              {"'heads' is 8.5 (a JSON number), expected an integer"});
  check_error([&] { config_from_json(with("layers", "true"), "run.json"); },
              {"'layers' is true (a JSON boolean), expected an integer"});
  check_error([&] { config_from_json(with("seed", "-1"), "run.json"); },
              {"'seed' is -1", "expected a non-negative integer"});
  check_error([&] { config_from_json(with("vocab", "18446744073709551615"), "run.json"); },
              {"'vocab' is 18446744073709551615", "expected an integer"});
  check_error([&] { config_from_json(with("dropout", "\"0.1\""), "run.json"); },
              {"'dropout' is \"0.1\" (a JSON string), expected a number"});
  check_error([&] { config_from_json(with("causal", "1"), "run.json"); },
              {"'causal' is 1 (a JSON number), expected true or false"});
  check_error([&] { config_from_json(with("attention", "null"), "run.json"); },
              {"'attention' is null (a JSON null), expected a string"});
  check_error([&] { config_from_json("{\"vocab\": ", "run.json"); },
              {"config_from_json", "run.json", "not valid JSON"});
  check_error([&] { config_from_json("[1]", "run.json"); },
              {"run.json", "the config is a JSON array, expected an object"});
  // Well-formed but invalid: validate() speaks, prefixed with the source.
  check_error([&] { config_from_json(with("heads", "0"), "run.json"); },
              {"config_from_json: run.json: TransformerConfig: heads = 0"});
  check_error([&] { config_from_json(with("attention", "\"quadratic\""), "run.json"); },
              {"run.json", "attention", "quadratic"});
}

TEST_CASE("config_from_json: the kinds' settings are checked against their tables") {
  TransformerConfig c;
  set_model_kind(c, "performer");
  const std::string good = config_to_json(c);
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string j = good;
    const size_t at = j.find(from);
    REQUIRE(at != std::string::npos);
    return j.replace(at, from.size(), to);
  };
  // A field left out keeps its default (one added to the kind after the file was written).
  const TransformerConfig r = config_from_json(replaced(R"("features":64,)", ""), "run.json");
  CHECK(r.attention_params == Params(PerformerParams{}));
  check_error([&] { config_from_json(replaced(R"("features":64)", R"("m":64)"), "run.json"); },
              {"config_from_json", "run.json", "'attention_params' has unknown field 'm'",
               "Performer: features, redraw, eps"});
  check_error([&] { config_from_json(replaced(R"("features":64)", R"("features":"64")"), "j"); },
              {"'attention_params.features' is \"64\" (a JSON string), expected an integer"});
  check_error(
      [&] { config_from_json(replaced(R"("features":64)", R"("features":0)"), "run.json"); },
      {"run.json", "TransformerConfig: attention_params: features = 0", "positive integer"});
  check_error(
      [&] {
        config_from_json(replaced(R"("connection_params":{})", R"("connection_params":[])"), "j");
      },
      {"'connection_params' is a JSON array", "expected an object"});
}

TEST_CASE("load_model: checkpoints of the first format (transformer-lm/1) load as written") {
  // Written by polyak train before the kinds had tables (flat momentum_beta, block_size, …
  // fields), with --layers 2 --heads 2 --d-model 8 --ff 16 --length 16 --beta 0.3
  // --delta 0.01 --features 4 --block-size 4 --ema-dim 2 --z-dim 4; the logits of tokens
  // 1 2 3 4 5 6 7 0 1 2 3 (eval mode) as that version computed them.
  struct Old {
    std::string kind;
    Params params;
    double sum, first, last;
  };
  const std::vector<Old> files = {
      {"momentum", MomentumParams{.beta = 0.3}, -22.4226529, -0.693834126, -0.326503366},
      {"adaptive", MomentumParams{.beta = 0.3}, -22.4363567, -0.69364816, -0.326991171},
      {"performer", PerformerParams{.features = 4}, -4.50968524, -0.501841128, -0.318671584},
      {"mega-chunk", MegaChunkParams{.ema_dim = 2, .z_dim = 4, .block_size = 4}, -1.7427321,
       0.242388055, -1.53927863},
      {"transnormer", TransNormerParams{.block_size = 4}, -17.5918026, -0.561508536, -0.200527385},
  };
  TempDir dir("polyak-test-old-checkpoint");
  for (const Old& old : files) {
    CAPTURE(old.kind);
    const std::string path = std::string(POLYAK_TEST_DATA) + "/v1/" + old.kind + ".safetensors";
    CHECK(load_safetensors(path).metadata.at("polyak.format") == "transformer-lm/1");
    std::shared_ptr<TransformerLM> m = load_model(path);
    CHECK(model_kind(m->config()) == old.kind);
    CHECK(m->config().attention_params == old.params);
    if (old.kind == "adaptive")
      CHECK(m->config().connection_params == Params(AdaptiveConnectionParams{.delta = 0.01}));
    m->eval();
    const std::vector<int64_t> t = {1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3};
    const std::vector<double> y = (*m)(ids({1, 11}, t)).to_vector();
    double sum = 0;
    for (double v : y) sum += v;
    CHECK(sum == doctest::Approx(old.sum).epsilon(1e-5));
    CHECK(y.front() == doctest::Approx(old.first).epsilon(1e-5));
    CHECK(y.back() == doctest::Approx(old.last).epsilon(1e-5));
    // Saved again, in the current format, it reads back the same.
    const std::string again = dir.file(old.kind + ".safetensors");
    save_model(*m, again);
    CHECK(load_safetensors(again).metadata.at("polyak.format") == "transformer-lm/2");
    CHECK(load_model(again)->config().attention_params == old.params);
  }
}

TEST_CASE("config_to_json: a non-finite number has no JSON form") {
  TransformerConfig c;
  c.norm_eps = std::numeric_limits<double>::infinity();
  check_error([&] { config_to_json(c); }, {"config_to_json: norm_eps = inf, expected a finite"});
}

// ---- round trips -----------------------------------------------------------------------------

TEST_CASE("save_model / load_model: every model kind gives bit-identical logits") {
  TempDir dir("polyak-test-checkpoint");
  for (const std::string& kind : model_kinds()) {
    CAPTURE(kind);
    TransformerLM model(small(kind));
    scramble(model, 99);
    model.eval();
    Tensor logits = model(tokens());

    const std::string path = dir.file(kind + ".safetensors");
    save_model(model, path, {{"step", "250"}, {"run", "copy task"}});
    std::map<std::string, std::string> metadata = {{"stale", "entry"}};
    std::shared_ptr<TransformerLM> loaded = load_model(path, &metadata);
    REQUIRE(loaded);
    CHECK(metadata == std::map<std::string, std::string>{{"step", "250"}, {"run", "copy task"}});
    CHECK(config_to_json(loaded->config()) == config_to_json(model.config()));
    CHECK(loaded->dtype() == DType::f32);

    NamedTensors want = model.state_dict(), got = loaded->state_dict();
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i].first == want[i].first);
      CHECK(same_bits(got[i].second, want[i].second));
    }
    loaded->eval();
    CHECK(same_bits(loaded->forward(tokens()), logits));

    // The file is what loading read: a model built from the config alone differs.
    TransformerLM fresh(small(kind));
    fresh.eval();
    CHECK_FALSE(same_bits(fresh(tokens()), logits));
  }
}

TEST_CASE("save_model / load_model: an f64 model loads as f64 with identical logits") {
  TempDir dir("polyak-test-checkpoint");
  TransformerLM model(small("softmax"));
  model.to(DType::f64);
  scramble(model, 3);
  model.eval();
  Tensor logits = model(tokens());
  const std::string path = dir.file("f64.safetensors");
  save_model(model, path);
  std::shared_ptr<TransformerLM> loaded = load_model(path);
  CHECK(loaded->dtype() == DType::f64);
  loaded->eval();
  Tensor again = loaded->forward(tokens());
  CHECK(again.dtype() == DType::f64);
  CHECK(same_bits(again, logits));
  // The header says what it holds.
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata.at("polyak.format") == "transformer-lm/2");
  CHECK(f.metadata.at("polyak.config") == config_to_json(model.config()));
  CHECK(f.tensors.front().first == "embedding.weight");
  CHECK(f.tensors.front().second.dtype() == DType::f64);
}

TEST_CASE("save_model: reserved metadata keys, a failed save keeps the old checkpoint") {
  TempDir dir("polyak-test-checkpoint");
  TransformerLM model(small());
  const std::string path = dir.file("ckpt.safetensors");
  save_model(model, path, {{"step", "1"}});
  const std::string before = read_bytes(path);

  check_error(
      [&] {
        save_model(model, path, {{"polyak.config", "{}"}});
      },
      {"save_model", path, "metadata key 'polyak.config' starts with \"polyak.\""});
  CHECK(read_bytes(path) == before);

  fs::create_directories(dir.path / "taken.safetensors" / "inner");
  check_error([&] { save_model(model, dir.file("taken.safetensors"), {}); }, {"cannot rename"});
  const std::string nowhere = dir.file("no-such-dir/ckpt.safetensors");
  check_error([&] { save_model(model, nowhere); }, {nowhere, "cannot create the temporary file"});
  CHECK(read_bytes(path) == before);
  std::map<std::string, std::string> metadata;
  load_model(path, &metadata);
  CHECK(metadata.at("step") == "1");
}

// ---- wrong checkpoints ---------------------------------------------------------------------

TEST_CASE("load_model: a missing, truncated or foreign file") {
  TempDir dir("polyak-test-checkpoint");
  const std::string missing = dir.file("missing.safetensors");
  check_error([&] { load_model(missing); }, {missing, "no such file"});

  TransformerLM model(small());
  const std::string path = dir.file("ckpt.safetensors");
  save_model(model, path);
  const std::string bytes = read_bytes(path);
  const std::string cut = dir.file("cut.safetensors");
  write_bytes(cut, bytes.substr(0, bytes.size() - 5));
  check_error([&] { load_model(cut); }, {"load_safetensors", cut, "run past the data section"});
  write_bytes(cut, bytes.substr(0, 100));
  check_error([&] { load_model(cut); }, {"load_safetensors", cut, "only 92 bytes follow it"});

  const std::string plain = dir.file("plain.safetensors");
  save_safetensors(plain, {{"w", Tensor::ones({2})}}, {{"format", "pt"}});
  check_error([&] { load_model(plain); },
              {"load_model", plain, "not a polyak checkpoint", "polyak.format"});
}

TEST_CASE("load_model: a wrong format tag or config") {
  TempDir dir("polyak-test-checkpoint");
  TransformerLM model(small());
  const std::string path = dir.file("bad.safetensors");

  save_edited(model, path, [](NamedTensors&, std::map<std::string, std::string>& m) {
    m["polyak.format"] = "transformer-lm/3";
  });
  check_error([&] { load_model(path); },
              {"load_model", path, "format \"transformer-lm/3\" is not supported",
               "expected \"transformer-lm/2\" (or the older \"transformer-lm/1\")"});

  save_edited(model, path, [](NamedTensors&, std::map<std::string, std::string>& m) {
    m.erase("polyak.config");
  });
  check_error([&] { load_model(path); }, {"load_model", path, "no \"polyak.config\""});

  save_edited(model, path, [](NamedTensors&, std::map<std::string, std::string>& m) {
    m["polyak.config"] = "{\"colour\":\"blue\"," + m["polyak.config"].substr(1);
  });
  check_error([&] { load_model(path); },
              {"config_from_json", path + " (metadata polyak.config)", "unknown key 'colour'"});

  save_edited(model, path, [](NamedTensors&, std::map<std::string, std::string>& m) {
    m["polyak.config"] = "not json";
  });
  check_error([&] { load_model(path); }, {path, "not valid JSON"});

  // A config that describes a model bigger than the machine, in a file of a few KB: refused
  // before the model is built (it used to grow towards the out-of-memory killer).
  TransformerConfig deep = small();
  deep.layers = 1000000000;
  save_edited(model, path, [&](NamedTensors&, std::map<std::string, std::string>& m) {
    m["polyak.config"] = config_to_json(deep);
  });
  check_error([&] { load_model(path); },
              {"load_model", path, "its config (layers = 1000000000", "tensor elements)",
               "needs about", "available on cpu", "check that the file is the checkpoint"});
}

TEST_CASE("load_model: tensors that do not match the config are each named") {
  TempDir dir("polyak-test-checkpoint");
  TransformerLM model(small());
  const std::string path = dir.file("bad.safetensors");

  save_edited(model, path, [](NamedTensors& t, std::map<std::string, std::string>&) {
    t.pop_back();  // head.bias
  });
  check_error([&] { load_model(path); },
              {"load_model", path, "do not match", "missing tensor 'head.bias'"});

  save_edited(model, path, [](NamedTensors& t, std::map<std::string, std::string>&) {
    t.emplace_back("extra.weight", Tensor::ones({3}));
  });
  check_error([&] { load_model(path); }, {path, "unexpected tensor 'extra.weight'"});

  save_edited(model, path, [](NamedTensors& t, std::map<std::string, std::string>&) {
    for (auto& [name, tensor] : t)
      if (name == "head.weight") tensor = Tensor::zeros({7, 15});
  });
  check_error([&] { load_model(path); },
              {path, "tensor 'head.weight' has shape [7,15], expected [7,16]"});

  // Several faults at once are all listed.
  save_edited(model, path, [](NamedTensors& t, std::map<std::string, std::string>&) {
    t.erase(t.begin());
    t.emplace_back("bogus", Tensor::ones({1}));
  });
  check_error([&] { load_model(path); },
              {"missing tensor 'embedding.weight'", "unexpected tensor 'bogus'"});

  // A model of another size: every tensor of the wrong shape is reported.
  TransformerConfig wider = small();
  wider.d_model = 32;
  TransformerLM other(wider);
  save_edited(other, path, [&](NamedTensors&, std::map<std::string, std::string>& m) {
    m["polyak.config"] = config_to_json(model.config());
  });
  check_error([&] { load_model(path); },
              {"tensor 'embedding.weight' has shape [7,32], expected [7,16]",
               "tensor 'layers.1.norm2.weight' has shape [32], expected [16]",
               "tensor 'head.weight' has shape [7,32], expected [7,16]"});

  save_edited(model, path, [](NamedTensors& t, std::map<std::string, std::string>&) {
    t.back().second = t.back().second.to(DType::f64);
  });
  check_error(
      [&] { load_model(path); },
      {path, "tensor 'head.bias' is f64 but 'embedding.weight' is f32", "expected one dtype"});
}

TEST_CASE("load_model: a non-finite weight is an error naming the tensor") {
  TempDir dir("polyak-test-checkpoint-nan");
  TransformerLM model(small());
  const std::string path = dir.file("nan.safetensors");
  for (const double bad : {std::nan(""), static_cast<double>(INFINITY)}) {
    save_edited(model, path, [&](NamedTensors& t, std::map<std::string, std::string>&) {
      for (auto& [name, tensor] : t)
        if (name == "head.weight") tensor.data<float>()[5] = static_cast<float>(bad);
    });
    check_error([&] { load_model(path); }, {"load_model", path, "tensor 'head.weight' holds",
                                            "at element 5", "expected finite values"});
  }
}
