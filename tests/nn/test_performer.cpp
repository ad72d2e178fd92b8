// Performer (docs/math.md §7): FavorFeatureMap's buffer, generator and redraw schedule, and
// kind "performer" — linear attention on FAVOR+ — stepped, checkpointed and compared with
// the softmax attention it approximates.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "nn/helpers.h"
#include "ops/attention/helpers.h"
#include "polyak/nn/performer.h"
#include "polyak/ops/attention/favor.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

AttentionConfig performer_config(int64_t features, int64_t redraw_interval = 0) {
  AttentionConfig c;
  c.kind = "performer";
  c.d_model = 8;
  c.heads = 2;  // D = 4
  c.params = PerformerParams{.features = features, .redraw = redraw_interval};
  return c;
}

FavorFeatureMap& favor_of(Attention& attn) {
  auto* linear = dynamic_cast<LinearAttention*>(&attn);
  REQUIRE(linear != nullptr);
  auto* favor = dynamic_cast<FavorFeatureMap*>(linear->feature_map.get());
  REQUIRE(favor != nullptr);
  return *favor;
}

Tensor randn(const Shape& shape, uint64_t seed, DType dtype) {
  Generator gen(seed);
  return Tensor::randn(shape, gen, dtype);
}

}  // namespace

// ---- the feature map module ----------------------------------------------------------------

TEST_CASE("FavorFeatureMap: a persistent omega buffer and its own generator") {
  Generator gen(3);
  FavorFeatureMap map(4, 6, 0, gen);
  CHECK(gen.offset() == 1);  // one block, the fork: Ω comes from the map's own stream
  CHECK(map.parameters().empty());
  const NamedTensors state = map.state_dict();
  REQUIRE(state.size() == 1);
  CHECK(state[0].first == "omega");
  CHECK(state[0].second.shape() == Shape({6, 4}));
  REQUIRE(map.named_generators().size() == 1);
  CHECK(map.named_generators()[0].first == "generator");

  // Ω is orthogonal_random_features drawn from the forked stream.
  Generator parent(3);
  Generator own = fork(parent);
  CHECK(max_abs_diff(map.omega, orthogonal_random_features(6, 4, own)) == 0.0);

  // forward is favor_feature_map with that Ω, on any leading axes.
  const Tensor x = randn({2, 3, 5, 4}, 7, DType::f32);
  const Tensor y = map.forward(x);
  CHECK(y.shape() == Shape({2, 3, 5, 6}));
  CHECK(max_abs_diff(y, favor_feature_map(x, map.omega)) == 0.0);
  CHECK(map.forward(randn({3, 4}, 8, DType::f32)).shape() == Shape({3, 6}));
}

TEST_CASE("FavorFeatureMap: redraws on the 4th, 7th, ... advance with interval 3, never with 0") {
  Generator gen(4);
  FavorFeatureMap every3(4, 8, 3, gen), never(4, 8, 0, gen);
  std::vector<double> prev = every3.omega.to_vector();
  const std::vector<double> fixed = never.omega.to_vector();
  for (int t = 1; t <= 10; ++t) {
    CAPTURE(t);
    every3.advance();
    never.advance();
    const std::vector<double> now = every3.omega.to_vector();
    CHECK((now != prev) == (t > 1 && t % 3 == 1));  // each Ω serves three forwards
    CHECK(never.omega.to_vector() == fixed);
    prev = now;
  }
  // A manual redraw changes Ω and leaves the schedule where it was: the 13th advance
  // redraws, the 11th and 12th do not.
  every3.redraw();
  CHECK(every3.omega.to_vector() != prev);
  prev = every3.omega.to_vector();
  every3.advance();
  every3.advance();
  CHECK(every3.omega.to_vector() == prev);
  every3.advance();
  CHECK(every3.omega.to_vector() != prev);

  never.redraw();
  CHECK(never.omega.to_vector() != fixed);

  // Two maps from one seed redraw alike.
  Generator g1(9), g2(9);
  FavorFeatureMap a(4, 5, 1, g1), b(4, 5, 1, g2);
  for (int t = 0; t < 3; ++t) {
    a.advance();
    b.advance();
  }
  CHECK(a.omega.to_vector() == b.omega.to_vector());
}

TEST_CASE("FavorFeatureMap: a redraw keeps omega's name and dtype and spares recorded graphs") {
  Generator gen(5);
  FavorFeatureMap map(3, 4, 0, gen);
  map.to(DType::f64);
  map.redraw();
  CHECK(map.omega.dtype() == DType::f64);
  CHECK(map.omega.name() == "omega");
  CHECK(map.omega.shape() == Shape({4, 3}));

  // The backward of a forward recorded before a redraw uses the Ω that forward saw.
  Generator xg(6);
  Tensor x = normal_leaf({2, 3}, xg);
  const Tensor before = map.omega;
  Tensor y = map.forward(x);
  map.redraw();
  Tensor dy = Tensor::randn(y.shape(), xg, DType::f64);
  y.backward(dy);
  Tensor x_ref = x.detach().requires_grad_();
  favor_feature_map(x_ref, before).backward(dy);
  CHECK(max_abs_diff(x.grad(), x_ref.grad()) == 0.0);
}

TEST_CASE("FavorFeatureMap: state_dict carries omega and loading restores the outputs") {
  Generator gen(6);
  FavorFeatureMap map(4, 7, 0, gen);
  const Tensor x = randn({1, 2, 3, 4}, 1, DType::f32);
  const Tensor y = map.forward(x);
  NamedTensors saved;
  for (const auto& [name, t] : map.state_dict()) saved.emplace_back(name, t.clone());
  map.redraw();
  CHECK(max_abs_diff(map.forward(x), y) > 1e-3);
  map.load_state_dict(saved);
  CHECK(max_abs_diff(map.forward(x), y) == 0.0);
}

TEST_CASE("FavorFeatureMap rejects bad sizes and inputs of another width") {
  Generator gen(1);
  check_error([&] { FavorFeatureMap(4, 0, 0, gen); },
              {"FavorFeatureMap", "features = 0", "positive number of random features"});
  check_error([&] { FavorFeatureMap(4, -2, 0, gen); }, {"FavorFeatureMap", "features = -2"});
  check_error([&] { FavorFeatureMap(0, 8, 0, gen); }, {"FavorFeatureMap", "head_dim = 0"});
  check_error([&] { FavorFeatureMap(4, 8, -1, gen); }, {"FavorFeatureMap", "redraw_interval = -1"});
  CHECK(gen.offset() == 0);  // checked before anything is drawn
  FavorFeatureMap map(4, 8, 0, gen);
  check_error(
      [&] {
        map.forward(Tensor::zeros({1, 2, 3, 5}));
      },
      {"favor_feature_map", "x has shape [1,2,3,5]", "D = 4"});
  check_error(
      [&] {
        map.forward(Tensor::zeros({1, 2, 3, 4}, DType::f64));
      },
      {"favor_feature_map", "f32", "f64"});

  AttentionConfig c = performer_config(0);
  check_error([&] { make_attention(c, gen); }, {"AttentionConfig", "features = 0"});
  c = performer_config(8, -1);
  check_error([&] { make_attention(c, gen); }, {"AttentionConfig", "redraw = -1"});
}

// ---- kind "performer" ------------------------------------------------------------------

TEST_CASE("performer: the parallel forward equals step() at every position, f64 and f32") {
  for (DType dtype : {DType::f64, DType::f32}) {
    for (int64_t features : {6, 32}) {  // m not a multiple of D = 4, and m > D
      CAPTURE(dtype);
      CAPTURE(features);
      Generator gen(12);
      auto attn = make_attention(performer_config(features), gen);
      attn->to(dtype);
      attn->eval();
      const Tensor x = randn({2, 9, 8}, 13, dtype);
      check_agree(attn->forward(x), step_through(*attn, x));
      CHECK(attn->initial_state(1).tensors[0].shape() == Shape({1, 2, features, 4}));
    }
  }
  // In training with a redraw every forward (from the second on), the forward maps q and k
  // with the Ω it just drew, which step() then uses too.
  Generator gen(14);
  auto attn = make_attention(performer_config(8, 1), gen);
  attn->to(DType::f64);
  attn->train();
  const Tensor x = randn({1, 7, 8}, 15, DType::f64);
  attn->forward(x);  // the first Ω serves the first forward
  const std::vector<double> before = favor_of(*attn).omega.to_vector();
  const Tensor parallel = attn->forward(x);
  CHECK(favor_of(*attn).omega.to_vector() != before);
  check_agree(parallel, step_through(*attn, x));
}

TEST_CASE("performer: training forwards drive the redraw schedule, eval forwards do not") {
  Generator gen(16);
  auto attn = make_attention(performer_config(8, 2), gen);
  const Tensor x = randn({1, 5, 8}, 17, DType::f32);
  FavorFeatureMap& favor = favor_of(*attn);
  std::vector<double> prev = favor.omega.to_vector();
  attn->train();
  for (int t = 1; t <= 4; ++t) {
    CAPTURE(t);
    attn->forward(x);
    const std::vector<double> now = favor.omega.to_vector();
    CHECK((now != prev) == (t > 1 && t % 2 == 1));  // each Ω serves two forwards
    prev = now;
  }
  attn->eval();
  for (int t = 0; t < 3; ++t) attn->forward(x);
  CHECK(favor.omega.to_vector() == prev);
}

TEST_CASE("performer: state_dict carries feature_map.omega, loading reproduces the outputs") {
  Generator g1(18), g2(19);
  auto a = make_attention(performer_config(8), g1);
  auto b = make_attention(performer_config(8), g2);
  a->eval();
  b->eval();
  favor_of(*a).redraw();
  const NamedTensors state = a->state_dict();
  CHECK(std::any_of(state.begin(), state.end(),
                    [](const auto& e) { return e.first == "feature_map.omega"; }));
  const Tensor x = randn({2, 6, 8}, 20, DType::f32);
  CHECK(max_abs_diff(a->forward(x), b->forward(x)) > 1e-3);
  b->load_state_dict(state);
  CHECK(max_abs_diff(a->forward(x), b->forward(x)) == 0.0);
}

TEST_CASE("performer: with many features it approximates causal softmax attention") {
  // The same projections in a softmax and in performer modules of growing m: FAVOR+'s error
  // falls like 1/√m. Against the output's scale: ~2% at m = 16384 and ~30% at m = 16, while
  // elu + 1 linear attention with the same weights, a different kernel, is ~25% off.
  AttentionConfig soft_config = performer_config(1);
  soft_config.kind = "softmax";
  soft_config.params = Params();
  soft_config.d_model = 16;  // D = 8
  Generator gen(22);
  auto soft = make_attention(soft_config, gen);
  soft->to(DType::f64);
  const Tensor x = randn({2, 12, 16}, 23, DType::f64);
  const Tensor y_soft = soft->forward(x);
  const std::vector<double> ref = y_soft.to_vector();

  auto error_of = [&](const std::string& kind, int64_t features) {
    AttentionConfig c = soft_config;
    c.kind = kind;
    c.params = Params();
    if (kind == "performer") c.params = PerformerParams{.features = features};
    Generator g(24);
    auto attn = make_attention(c, g);
    attn->to(DType::f64);
    copy_shared(*soft, *attn);
    return relative_error(attn->forward(x).to_vector(), ref);
  };
  const double small = error_of("performer", 16), large = error_of("performer", 16384);
  const double elu = error_of("linear", 0);  // m unused
  INFO("relative error: performer m = 16: " << small << ", m = 16384: " << large
                                            << ", elu linear attention: " << elu);
  CHECK(large <= 0.05);
  CHECK(large <= small / 4);
  CHECK(large <= elu / 4);
}

TEST_CASE("performer: the module passes gradcheck w.r.t. its input and projections") {
  Generator gen(25);
  auto attn = make_attention(performer_config(6), gen);
  attn->to(DType::f64);
  const Tensor x = randn({2, 5, 8}, 26, DType::f64);
  GradcheckResult r = gradcheck_module(*attn, x, {"qkv_proj.weight", "out_proj.bias"},
                                       [&](const Tensor& in) { return attn->forward(in); });
  INFO(r.message);
  CHECK(r.ok);
}
