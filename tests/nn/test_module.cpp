// Module mechanics: registration, paths, order, modes, state dicts, conversion.
#include <memory>

#include "helpers.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::max_abs_diff;

namespace {

// Own parameter "scale", a Linear "proj" and a nested Block "inner".
class Block : public Module {
 public:
  explicit Block(Generator& gen, bool nested = true) {
    proj = register_module("proj", std::make_shared<Linear>(3, 2, gen));
    scale = Tensor::full({2}, 0.5);
    register_parameter("scale", scale);
    if (nested) inner = register_module("inner", std::make_shared<Block>(gen, false));
    drop = register_module("drop", std::make_shared<Dropout>(0.5, gen));
  }
  std::shared_ptr<Linear> proj;
  std::shared_ptr<Block> inner;
  std::shared_ptr<Dropout> drop;
  Tensor scale;
};

class Root : public Module {
 public:
  explicit Root(uint64_t seed) {
    Generator gen(seed);
    blocks = register_module("blocks", std::make_shared<ModuleList<Block>>());
    blocks->push_back(std::make_shared<Block>(gen));
    blocks->push_back(std::make_shared<Block>(gen));
  }
  std::shared_ptr<ModuleList<Block>> blocks;
};

std::vector<std::string> names_of(const NamedTensors& list) {
  std::vector<std::string> names;
  for (const auto& [name, t] : list) names.push_back(name);
  return names;
}

}  // namespace

TEST_CASE("module: dotted paths, deterministic order, tensor names") {
  Root root(1);
  std::vector<std::string> expected;
  for (std::string b : {"blocks.0.", "blocks.1."}) {
    // Own tensors first, then submodules in registration order.
    for (std::string n : {"scale", "proj.weight", "proj.bias", "inner.scale", "inner.proj.weight",
                          "inner.proj.bias"})
      expected.push_back(b + n);
  }
  NamedTensors params = root.named_parameters();
  CHECK(names_of(params) == expected);
  for (const auto& [name, t] : params) {
    CHECK(t.name() == name);
    CHECK(t.requires_grad());
    CHECK(t.is_leaf());
  }
  CHECK(root.num_parameters() == 2 * 2 * (2 + 6 + 2));
  CHECK(root.parameters().size() == expected.size());
  CHECK(root.parameter("blocks.1.inner.proj.weight")
            .is_same(root.blocks->operator[](1)->inner->proj->weight));

  auto gens = root.named_generators();
  REQUIRE(gens.size() == 4);
  CHECK(gens[0].first == "blocks.0.inner.drop.generator");
  CHECK(gens[1].first == "blocks.0.drop.generator");
}

TEST_CASE("module: same seed, same parameters, another seed, others") {
  Root a(7), b(7), c(8);
  auto pa = a.parameters(), pb = b.parameters(), pc = c.parameters();
  CHECK(max_abs_diff(pa[1], pb[1]) == 0.0);
  CHECK(max_abs_diff(pa[1], pc[1]) > 0.0);
}

TEST_CASE("module: Linear init is U(-1/sqrt(in), 1/sqrt(in))") {
  Generator gen(3);
  Linear lin(16, 64, gen);
  CHECK(lin.weight.shape() == Shape({64, 16}));
  CHECK(lin.bias.shape() == Shape({64}));
  double lo = 1, hi = -1;
  for (double w : lin.weight.to_vector()) lo = std::min(lo, w), hi = std::max(hi, w);
  CHECK(lo >= -0.25);
  CHECK(hi <= 0.25);
  CHECK(lo < -0.2);  // 1024 draws cover the interval
  CHECK(hi > 0.2);
  Linear no_bias(4, 2, gen, /*with_bias=*/false);
  CHECK_FALSE(no_bias.bias.defined());
  CHECK(no_bias.named_parameters().size() == 1);
}

TEST_CASE("module: registration errors name the path") {
  class Dup : public Module {
   public:
    Dup() {
      a = Tensor::zeros({1});
      b = Tensor::zeros({1});
      register_parameter("w", a);
      register_parameter("w", b);
    }
    Tensor a, b;
  };
  check_error([] { Dup d; }, {"register_parameter", "'w'", "already registered"});

  class Dotted : public Module {
   public:
    Dotted() {
      a = Tensor::zeros({1});
      register_parameter("a.b", a);
    }
    Tensor a;
  };
  check_error([] { Dotted d; }, {"register_parameter", "'a.b'"});
}

TEST_CASE("module: set_parameter replaces what forward reads") {
  Generator gen(0);
  Linear lin(3, 2, gen);
  Tensor x = Tensor::ones({1, 3});
  Tensor w = Tensor::zeros({2, 3});
  lin.set_parameter("weight", w);
  CHECK(lin.weight.is_same(w));
  CHECK(max_abs_diff(lin(x), lin.bias.reshape({1, 2})) == 0.0);

  check_error([&] { lin.set_parameter("weights", w); }, {"set_parameter", "'weights'"});
  check_error(
      [&] {
        lin.set_parameter("weight", Tensor::zeros({3, 2}));
      },
      {"set_parameter", "'weight'", "[3,2]", "[2,3]"});
  check_error(
      [&] {
        lin.set_parameter("weight", Tensor::zeros({2, 3}, DType::f64));
      },
      {"set_parameter", "f64", "f32"});
  check_error([&] { lin.parameter("nope.weight"); }, {"'nope.weight'"});
}

TEST_CASE("module: train/eval is recursive") {
  Root root(0);
  CHECK(root.is_training());
  root.eval();
  CHECK_FALSE(root.is_training());
  CHECK_FALSE(root.blocks->operator[](0)->inner->drop->is_training());
  root.train();
  CHECK(root.blocks->operator[](1)->inner->drop->is_training());
}

TEST_CASE("module: dropout is active only in training mode") {
  Generator gen(5);
  Dropout drop(0.5, gen);
  Tensor x = Tensor::ones({4, 64});
  Tensor y = drop(x);
  int zeros = 0;
  for (double v : y.to_vector()) {
    CHECK((v == 0.0 || std::abs(v - 2.0) < 1e-6));
    zeros += v == 0.0;
  }
  CHECK(zeros > 64);
  CHECK(zeros < 192);
  CHECK(max_abs_diff(drop(x), y) > 0.0);  // the stream advances
  drop.eval();
  CHECK(drop(x).is_same(x));
  check_error([&] { Dropout bad(1.0, gen); }, {"Dropout", "p = 1"});
}

TEST_CASE("module: state_dict aliases, load_state_dict copies") {
  Root a(1), b(2);
  NamedTensors sa = a.state_dict();
  CHECK(names_of(sa) == names_of(a.named_parameters()));
  b.load_state_dict(sa);
  auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    CHECK(max_abs_diff(pa[i], pb[i]) == 0.0);
    CHECK_FALSE(pa[i].shares_storage(pb[i]));  // copied, not aliased
  }
  // Writing into a state-dict entry writes into the module.
  sa[0].second.fill_(3.0);
  CHECK(a.parameters()[0].to_vector()[0] == 3.0);
}

TEST_CASE("module: load_state_dict errors name the keys") {
  Root a(1), b(2);
  NamedTensors missing = a.state_dict();
  missing.erase(missing.begin() + 2);
  check_error([&] { b.load_state_dict(missing); },
              {"load_state_dict", "missing key 'blocks.0.proj.bias'"});

  NamedTensors unexpected = a.state_dict();
  unexpected.emplace_back("blocks.0.extra", Tensor::zeros({1}));
  check_error([&] { b.load_state_dict(unexpected); },
              {"load_state_dict", "unexpected key 'blocks.0.extra'"});

  NamedTensors shape = a.state_dict();
  shape[1].second = Tensor::zeros({3, 2});
  check_error([&] { b.load_state_dict(shape); },
              {"load_state_dict", "'blocks.0.proj.weight'", "[3,2]", "expected [2,3]"});

  NamedTensors dtype = a.state_dict();
  dtype[0].second = Tensor::zeros({2}, DType::f64);
  check_error([&] { b.load_state_dict(dtype); },
              {"load_state_dict", "'blocks.0.scale'", "f64", "expected f32"});

  // A failed load leaves the module as it was.
  Root fresh(2);
  auto pb = b.parameters(), pf = fresh.parameters();
  for (size_t i = 0; i < pb.size(); ++i) CHECK(max_abs_diff(pb[i], pf[i]) == 0.0);
}

TEST_CASE("module: to(f64) converts in place, keeping names and leaves") {
  Root root(4);
  std::vector<double> before = root.parameters()[1].to_vector();
  root.to(DType::f64);
  CHECK(root.dtype() == DType::f64);
  NamedTensors params = root.named_parameters();
  for (const auto& [name, t] : params) {
    CHECK(t.dtype() == DType::f64);
    CHECK(t.name() == name);
    CHECK(t.requires_grad());
    CHECK(t.is_leaf());
  }
  CHECK(root.blocks->operator[](0)->proj->weight.dtype() == DType::f64);  // the member slot
  std::vector<double> after = params[1].second.to_vector();
  for (size_t i = 0; i < before.size(); ++i) CHECK(after[i] == before[i]);
  root.to(DType::f32);
  CHECK(root.dtype() == DType::f32);
}

TEST_CASE("module: zero_grad drops every gradient") {
  Generator gen(0);
  Linear lin(3, 2, gen);
  Tensor y = sum(lin(Tensor::ones({4, 3})));
  y.backward();
  CHECK(lin.weight.grad().defined());
  lin.zero_grad();
  CHECK_FALSE(lin.weight.grad().defined());
  CHECK_FALSE(lin.bias.grad().defined());
}

TEST_CASE("module: unknown kinds list the valid ones") {
  check_error([] { make_norm("batchnorm", 4, 1e-5); },
              {"make_norm", "kind = 'batchnorm'", "layernorm, rmsnorm"});
  Generator gen(0);
  check_error([&] { FeedForward ff(4, 8, "tanh", 0.0, gen); },
              {"FeedForward", "activation = 'tanh'", "relu, gelu"});
  check_error([&] { make_positions("rotary", 8, 4, gen); },
              {"make_positions", "'rotary'", "sinusoidal, learned"});
}
