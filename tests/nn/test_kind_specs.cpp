// The kinds' table (nn/kinds.h): every spec complete, flags consistent, model kinds derived.
#include <doctest/doctest.h>

#include <set>

#include "helpers.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::use_test_sizes;

TEST_CASE("kinds: every spec is complete and builds what it names") {
  std::set<std::string> names;
  for (const AttentionSpec* spec : attention_specs()) {
    CAPTURE(spec->name);
    CHECK(names.insert(spec->name).second);
    REQUIRE(spec->params != nullptr);
    CHECK(!spec->summary.empty());
    CHECK(static_cast<bool>(spec->make) != static_cast<bool>(spec->per_layer));
    CHECK((spec->forms.causal || spec->forms.non_causal));
    CHECK((!spec->forms.recurrent || spec->forms.causal));
    // The defaults pass the kind's own rules.
    Params::defaults(*spec->params).validate(spec->name);
    if (!spec->make) continue;
    REQUIRE(spec->flops);
    REQUIRE(spec->kept_bytes);
    AttentionConfig c;
    c.kind = spec->name;
    c.d_model = 8;
    c.heads = 2;
    c.causal = spec->forms.causal;
    c.max_len = 8;
    use_test_sizes(c);
    Generator gen(1);
    auto attn = make_attention(c, gen);
    CHECK(attn->config().kind == spec->name);
    CHECK(spec->flops(c, 8) > projection_flops(c) * 0.5);
    CHECK(spec->kept_bytes(c, 8) >= 0);
    Tensor x = Tensor::randn({1, 8, 8}, gen);
    CHECK(attn->forward(x).shape() == Shape({1, 8, 8}));
    if (spec->forms.recurrent) CHECK(attn->initial_state(1).batch == 1);
  }
  for (const ConnectionSpec* spec : connection_specs()) {
    CAPTURE(spec->name);
    CHECK(names.insert("connection " + spec->name).second);
    REQUIRE(spec->params != nullptr);
    CHECK(make_connection({.kind = spec->name}) != nullptr);
  }
}

TEST_CASE("kinds: a flag shared by several kinds has one type and one rule") {
  for (const ParamField* f : kind_flag_fields()) {
    CAPTURE(f->flag);
    CHECK(f->flag.rfind("--", 0) == 0);
    CHECK(!f->help.empty());
    for (const ParamField* other : fields_of_flag(f->flag)) {
      CHECK(other->default_value.index() == f->default_value.index());
      CHECK(other->check.expected == f->check.expected);
    }
  }
  // apply_flags sets the fields a kind has and leaves the others.
  Params p = Params::defaults(MegaChunkParams::schema());
  apply_flags(p, {{"--block-size", int64_t{8}}, {"--beta", 0.3}});
  CHECK(p == Params(MegaChunkParams{.block_size = 8}));
}

TEST_CASE("kinds: the model kinds follow from the table, in the paper's order") {
  CHECK(model_kinds() == std::vector<std::string>{"softmax", "linear", "momentum",
                                                  "momentum-connection", "adaptive", "transnormer",
                                                  "mega", "mega-chunk", "performer", "linformer",
                                                  "retention"});
  check_error([] { attention_spec("quadratic", "fn", "attention"); },
              {"fn: attention = 'quadratic'", "softmax, linear"});
  check_error([] { connection_spec("highway"); },
              {"connection_spec: kind = 'highway'", "residual, momentum, adaptive"});
  // A stack kind has no module of its own.
  AttentionConfig c;
  c.kind = "transnormer";
  Generator gen(0);
  check_error([&] { make_attention(c, gen); }, {"'transnormer' is a stack kind", "diag"});
}
