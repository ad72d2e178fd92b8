// softmax, log_softmax, layer_norm, rms_norm, embedding, dropout, cross_entropy:
// gradients (f64 gradcheck), values, bad input.
#include <cmath>
#include <vector>

#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

void check_close(const std::vector<double>& got, const std::vector<double>& want,
                 double tol = 1e-6) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= tol);
  }
}

}  // namespace

TEST_CASE("nn ops: gradcheck") {
  auto sm = [](int64_t axis) {
    return [axis](const std::vector<Tensor>& in) { return softmax(in[0], axis); };
  };
  auto lsm = [](int64_t axis) {
    return [axis](const std::vector<Tensor>& in) { return log_softmax(in[0], axis); };
  };
  const Indices ids(Shape{2, 3}, {1, 3, 1, 0, 1, 4});  // 1 repeats
  std::vector<GradcheckCase> cases = {
      {"softmax last axis", {{3, 5}}, sm(-1)},
      {"softmax middle axis", {{2, 4, 3}}, sm(1)},
      {"softmax first axis", {{4, 3}}, sm(0)},
      {"log_softmax last axis", {{3, 5}}, lsm(-1)},
      {"log_softmax middle axis", {{2, 4, 3}}, lsm(1)},
      {"layer_norm with gamma and beta",
       {{3, 6}, {6}, {6}},
       [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }},
      {"layer_norm 3-D x",
       {{2, 3, 5}, {5}, {5}},
       [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }},
      {"layer_norm without affine",
       {{3, 6}},
       [](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), Tensor()); }},
      {"layer_norm gamma only",
       {{3, 6}, {6}},
       [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor()); }},
      {"rms_norm with gamma",
       {{3, 6}, {6}},
       [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); }},
      {"rms_norm without gamma",
       {{2, 3, 5}},
       [](const std::vector<Tensor>& in) { return rms_norm(in[0], Tensor(), 1e-3); }},
      {"embedding with repeated ids",
       {{5, 3}},
       [ids](const std::vector<Tensor>& in) { return embedding(in[0], ids); }},
      {"dropout with a fixed seed",
       {{4, 5}},
       [](const std::vector<Tensor>& in) {
         Generator gen(7);  // rebuilt on every call: the same mask each time
         return dropout(in[0], 0.3, true, gen);
       }},
      {"relu_dropout with a fixed seed",
       {{4, 5}},
       [](const std::vector<Tensor>& in) {
         Generator gen(7);
         return relu_dropout(in[0], 0.3, true, gen);
       }},
      {"dropout_add with a fixed seed",
       {{4, 5}, {4, 5}},
       [](const std::vector<Tensor>& in) {
         Generator gen(7);
         return dropout_add(in[0], in[1], 0.3, true, gen);
       }},
      {"cross_entropy with ignore_index",
       {{4, 5}},
       [](const std::vector<Tensor>& in) {
         return cross_entropy(in[0], Indices(Shape{4}, {1, -100, 4, 1}));
       }},
      {"cross_entropy 3-D logits, ignore_index 2",
       {{2, 3, 5}},
       [](const std::vector<Tensor>& in) {
         return cross_entropy(in[0], Indices(Shape{2, 3}, {0, 2, 4, 1, 2, 3}), 2);
       }},
      {"cross_entropy with a mask (gradient to logits and mask)",
       {},
       [](const std::vector<Tensor>& in) {
         return cross_entropy(in[0], Indices(Shape{2, 3}, {0, 3, 4, 1, 0, 2}), in[1]);
       },
       [](Generator& gen) {
         return std::vector<Tensor>{
             Tensor::randn({2, 3, 5}, gen, DType::f64).requires_grad_(),
             Tensor::from({1.0, 0.5, 2.0, 0.25, 0.75, 1.5}, Shape{2, 3}, DType::f64)
                 .requires_grad_()};
       }},
      {"cross_entropy with a 0/1 mask over padding targets",
       {},
       [](const std::vector<Tensor>& in) {
         return cross_entropy(in[0], Indices(Shape{2, 3}, {0, 3, -1, 1, -1, 2}), in[1]);
       },
       [](Generator& gen) {
         return std::vector<Tensor>{Tensor::randn({2, 3, 5}, gen, DType::f64).requires_grad_(),
                                    Tensor::from({1, 1, 0, 1, 0, 1}, Shape{2, 3}, DType::f64)};
       }},
  };
  run_gradcheck_table(cases);
}

TEST_CASE("softmax and log_softmax: values") {
  Tensor x = Tensor::from({1, 2, 3}, DType::f64);
  check_close(softmax(x).to_vector(), {0.0900305731703805, 0.2447284710547976, 0.6652409557748219});
  check_close(log_softmax(x).to_vector(),
              {-2.4076059644443806, -1.4076059644443806, -0.4076059644443806});
  // Large logits do not overflow.
  Tensor big = Tensor::from({1000, 1001, 1002});
  check_close(softmax(big).to_vector(),
              {0.0900305731703805, 0.2447284710547976, 0.6652409557748219}, 1e-6);
  // A middle axis: x [1, 3, 2], softmax over the 3.
  Tensor m = Tensor::from({1, 5, 2, 5, 3, 5}, Shape{1, 3, 2}, DType::f64);
  check_close(softmax(m, 1).to_vector(), {0.0900305731703805, 1.0 / 3, 0.2447284710547976, 1.0 / 3,
                                          0.6652409557748219, 1.0 / 3});
  check_close(log_softmax(m, -2).to_vector(),
              {-2.4076059644443806, -std::log(3.0), -1.4076059644443806, -std::log(3.0),
               -0.4076059644443806, -std::log(3.0)});
}

TEST_CASE("layer_norm and rms_norm: values") {
  Tensor x = Tensor::from({1, 2, 3, 4}, Shape{1, 4}, DType::f64);
  const double r = 1 / std::sqrt(1.25 + 1e-5);
  check_close(layer_norm(x, Tensor(), Tensor()).to_vector(),
              {-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r});
  Tensor gamma = Tensor::from({1, 2, 1, 1}, DType::f64),
         beta = Tensor::from({0, 0, 1, 0}, DType::f64);
  check_close(layer_norm(x, gamma, beta).to_vector(), {-1.5 * r, -1.0 * r, 0.5 * r + 1, 1.5 * r});
  Tensor y = Tensor::from({3, 4}, DType::f64);
  check_close(rms_norm(y, Tensor()).to_vector(), {3 / std::sqrt(12.5), 4 / std::sqrt(12.5)});
  check_close(rms_norm(y, Tensor::from({2, -1}, DType::f64)).to_vector(),
              {6 / std::sqrt(12.5), -4 / std::sqrt(12.5)});
  // f32 rows of a realistic width agree with f64.
  Generator gen(3);
  Tensor z = Tensor::randn({7, 256}, gen);
  Tensor g = Tensor::randn({256}, gen), b = Tensor::randn({256}, gen);
  CHECK(max_abs_diff(layer_norm(z, g, b).to(DType::f64),
                     layer_norm(z.to(DType::f64), g.to(DType::f64), b.to(DType::f64))) < 1e-5);
}

TEST_CASE("embedding: lookup and scatter-add") {
  Tensor w = Tensor::from({0, 1, 2, 3, 4, 5}, Shape{3, 2}, DType::f64).requires_grad_();
  Tensor y = embedding(w, Indices(Shape{2, 2}, {2, 0, 2, 1}));
  CHECK(y.shape() == Shape{2, 2, 2});
  CHECK(y.to_vector() == std::vector<double>{4, 5, 0, 1, 4, 5, 2, 3});
  y.backward(Tensor::from({1, 2, 3, 4, 5, 6, 7, 8}, Shape{2, 2, 2}, DType::f64));
  CHECK(w.grad().to_vector() == std::vector<double>{3, 4, 7, 8, 1 + 5, 2 + 6});
}

TEST_CASE("dropout: keeps the expected fraction, scales, and is reproducible") {
  const int64_t n = 100003;
  const double p = 0.25;
  Tensor x = Tensor::ones({n}).requires_grad_();
  Generator gen(3);
  Tensor y = dropout(x, p, true, gen);
  CHECK(gen.offset() == static_cast<uint64_t>((n + 7) / 8));  // eight draws per block
  std::vector<double> v = y.to_vector();
  int64_t zeros = 0;
  bool scaled = true;
  for (double e : v) {
    if (e == 0)
      ++zeros;
    else
      scaled = scaled && std::abs(e - 1 / (1 - p)) < 1e-6;
  }
  CHECK(scaled);
  CHECK(std::abs(static_cast<double>(zeros) / n - p) < 0.01);

  // Element i keeps when the uniform (h + 1)/2¹⁶ exceeds p, h being half i % 2 (the low
  // half first) of word (i / 2) % 4 of block i / 8.
  const Generator stream(3);
  bool rule = true;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t word =
        stream.block(static_cast<uint64_t>(i / 8))[static_cast<size_t>((i / 2) % 4)];
    const uint32_t h = i % 2 == 0 ? word & 0xFFFFu : word >> 16;
    const double u = (h + 1.0) / 65536.0;
    rule = rule && ((u > p) == (v[static_cast<size_t>(i)] != 0));
  }
  CHECK(rule);

  // Same seed, same mask; the advanced generator draws a different one.
  Generator again(3);
  CHECK(dropout(x, p, true, again).to_vector() == v);
  CHECK(dropout(x, p, true, gen).to_vector() != v);

  // The backward applies the same mask and scale.
  y.backward(Tensor::ones({n}));
  CHECK(x.grad().to_vector() == v);

  // Identity when not training, or with p = 0.
  Generator unused(3);
  CHECK(dropout(x, p, false, unused).is_same(x));
  CHECK(dropout(x, 0.0, true, unused).is_same(x));
  CHECK(unused.offset() == 0);
}

TEST_CASE("relu_dropout: the values and gradients of dropout(relu(x)), the same draws") {
  for (DType dtype : {DType::f32, DType::f64}) {
    INFO("dtype " << dtype);
    Generator data(11);
    const Tensor x0 = Tensor::randn({37, 29}, data, dtype);  // ragged: not a whole block
    const Tensor cot = Tensor::randn({37, 29}, data, dtype);
    Tensor xa = x0.clone().requires_grad_(), xb = x0.clone().requires_grad_();
    Generator ga(5), gb(5);
    Tensor fused = relu_dropout(xa, 0.4, true, ga);
    Tensor reference = dropout(relu(xb), 0.4, true, gb);
    CHECK(ga.offset() == gb.offset());
    CHECK(fused.to_vector() == reference.to_vector());
    fused.backward(cot);
    reference.backward(cot);
    CHECK(xa.grad().to_vector() == xb.grad().to_vector());
    // Some elements are dropped, some negative, some kept: the rule is exercised.
    int64_t kept = 0;
    for (double v : fused.to_vector()) kept += v > 0;
    CHECK(kept > 200);
    CHECK(kept < 37 * 29 / 2);
  }
  // Not training, or p = 0: relu, and no draw.
  Generator unused(3);
  Tensor x = Tensor::from({-1.0, 2.0, -3.0, 4.0}, DType::f64);
  CHECK(relu_dropout(x, 0.5, false, unused).to_vector() == std::vector<double>{0, 2, 0, 4});
  CHECK(relu_dropout(x, 0.0, true, unused).to_vector() == std::vector<double>{0, 2, 0, 4});
  CHECK(unused.offset() == 0);
  CHECK_THROWS_WITH_AS(relu_dropout(x, 1.0, true, unused),
                       "relu_dropout: p is 1, expected p in [0, 1)", Error);
}

TEST_CASE("dropout_add: residual + dropout(x) in one pass, the same draws") {
  for (DType dtype : {DType::f32, DType::f64}) {
    INFO("dtype " << dtype);
    Generator data(13);
    const Tensor x0 = Tensor::randn({37, 29}, data, dtype);  // ragged: not a whole block
    const Tensor r0 = Tensor::randn({37, 29}, data, dtype);
    const Tensor cot = Tensor::randn({37, 29}, data, dtype);
    Tensor xa = x0.clone().requires_grad_(), ra = r0.clone().requires_grad_();
    Tensor xb = x0.clone().requires_grad_(), rb = r0.clone().requires_grad_();
    Generator ga(5), gb(5);
    Tensor fused = dropout_add(xa, ra, 0.4, true, ga);
    Tensor reference = rb + dropout(xb, 0.4, true, gb);
    CHECK(ga.offset() == gb.offset());
    CHECK(fused.grad_fn()->name() == "DropoutAddBackward");
    // The same draws; the sum may round once where the reference rounds twice (a fused
    // multiply-add), so the values agree to the last bit or so.
    const std::vector<double> fv = fused.to_vector(), refv = reference.to_vector();
    const double tol = dtype == DType::f32 ? 1e-6 : 1e-15;
    for (size_t i = 0; i < fv.size(); ++i)
      CHECK(std::abs(fv[i] - refv[i]) <= tol * (1 + std::abs(refv[i])));
    fused.backward(cot);
    reference.backward(cot);
    CHECK(xa.grad().to_vector() == xb.grad().to_vector());
    CHECK(ra.grad().to_vector() == cot.to_vector());
    // Dropped elements are the residual alone, and get no gradient through x.
    int64_t dropped = 0;
    const std::vector<double> rv = r0.to_vector(), dx = xa.grad().to_vector();
    for (size_t i = 0; i < fv.size(); ++i)
      if (dx[i] == 0.0) {
        ++dropped;
        CHECK(fv[i] == rv[i]);
      }
    CHECK(dropped > 37 * 29 / 4);
    CHECK(dropped < 37 * 29 * 6 / 10);
  }
  // Not training, or p = 0: residual + x, and no draw.
  Generator unused(3);
  Tensor x = Tensor::from({1.0, 2.0}, DType::f64), r = Tensor::from({10.0, 20.0}, DType::f64);
  CHECK(dropout_add(x, r, 0.5, false, unused).to_vector() == std::vector<double>{11, 22});
  CHECK(dropout_add(x, r, 0.0, true, unused).to_vector() == std::vector<double>{11, 22});
  CHECK(unused.offset() == 0);
  check_error([&] { dropout_add(x, r, 1.0, true, unused); },
              {"dropout_add: p is 1, expected p in [0, 1)"});
  check_error(
      [&] {
        dropout_add(x, Tensor::from({1.0, 2.0, 3.0}, DType::f64), 0.5, true, unused);
      },
      {"dropout_add: residual has shape [3], expected x's [2]"});
  check_error(
      [&] {
        dropout_add(x, Tensor::from({1.0, 2.0}), 0.5, true, unused);
      },
      {"dropout_add", "residual", "f32"});
  check_error([&] { dropout_add(Tensor(), r, 0.5, true, unused); }, {"dropout_add", "x"});
  CHECK(unused.offset() == 0);
}

TEST_CASE("cross_entropy: values") {
  Tensor logits = Tensor::from({1, 2, 3, 1, 2, 3}, Shape{2, 3}, DType::f64);
  const double nll2 = 0.4076059644443806, nll0 = 2.4076059644443806;
  Tensor loss = cross_entropy(logits, Indices(Shape{2}, {2, -100}));
  CHECK(loss.shape() == Shape{});
  CHECK(loss.item() == doctest::Approx(nll2).epsilon(1e-12));
  CHECK(cross_entropy(logits, Indices(Shape{2}, {2, 0})).item() ==
        doctest::Approx((nll2 + nll0) / 2).epsilon(1e-12));
  Tensor mask = Tensor::from({1, 3}, DType::f64);
  CHECK(cross_entropy(logits, Indices(Shape{2}, {2, 0}), mask).item() ==
        doctest::Approx((nll2 + 3 * nll0) / 4).epsilon(1e-12));
  // A masked-out row may hold a padding target.
  CHECK(
      cross_entropy(logits, Indices(Shape{2}, {2, -1}), Tensor::from({1, 0}, DType::f64)).item() ==
      doctest::Approx(nll2).epsilon(1e-12));
  // Everything ignored: loss 0 and a zero gradient, not NaN.
  Tensor l = logits.detach().requires_grad_();
  Tensor none = cross_entropy(l, Indices(Shape{2}, {-100, -100}));
  CHECK(none.item() == 0);
  none.backward();
  CHECK(l.grad().to_vector() == std::vector<double>(6, 0.0));
  // Backward: (softmax − onehot) / count.
  Tensor l2 = logits.detach().requires_grad_();
  cross_entropy(l2, Indices(Shape{2}, {2, -100})).backward();
  check_close(l2.grad().to_vector(),
              {0.0900305731703805, 0.2447284710547976, 0.6652409557748219 - 1, 0, 0, 0});
}

TEST_CASE("nn ops: bad input") {
  Tensor x = Tensor::zeros({2, 6});
  check_error([&] { layer_norm(x, Tensor::ones({5}), Tensor()); },
              {"layer_norm", "gamma has shape [5]", "[C] = [6]"});
  check_error(
      [&] {
        layer_norm(x, Tensor::ones({6}), Tensor::ones({2, 6}));
      },
      {"layer_norm", "beta has shape [2,6]"});
  check_error([&] { layer_norm(x, Tensor::ones({6}, DType::f64), Tensor()); },
              {"layer_norm", "gamma", "f32", "f64"});
  check_error([&] { rms_norm(x, Tensor::ones({7})); }, {"rms_norm", "gamma has shape [7]"});
  check_error([&] { softmax(x, 2); }, {"softmax", "axis 2"});
  check_error([&] { log_softmax(x, -3); }, {"log_softmax", "axis -3"});

  Tensor w = Tensor::zeros({4, 3});
  check_error(
      [&] {
        embedding(w, Indices(Shape{3}, {0, 4, 1}));
      },
      {"embedding", "ids has value 4 at index 1", "[0, 4)"});
  check_error([&] { embedding(w, Indices(Shape{1}, {-1})); }, {"embedding", "ids has value -1"});
  check_error([&] { embedding(Tensor::zeros({4}), Indices(Shape{1}, {0})); },
              {"embedding", "weight", "rank 2"});

  Tensor logits = Tensor::zeros({2, 3, 5});
  check_error(
      [&] {
        cross_entropy(logits, Indices(Shape{3, 2}, {0, 0, 0, 0, 0, 0}));
      },
      {"cross_entropy", "targets has shape [3,2]", "expected [2,3]"});
  check_error(
      [&] {
        cross_entropy(logits, Indices(Shape{2, 3}, {0, 0, 7, 0, 0, 0}));
      },
      {"cross_entropy", "targets has value 7 at index 2", "[0, 5)"});
  check_error(
      [&] {
        cross_entropy(logits, Indices(Shape{2, 3}, {0, 0, -1, 0, 0, 0}));
      },
      {"cross_entropy", "targets has value -1"});
  check_error(
      [&] {
        cross_entropy(logits, Indices::filled(Shape{2, 3}, 0), Tensor::ones({3, 2}));
      },
      {"cross_entropy", "mask has shape [3,2]"});
  check_error(
      [&] {
        cross_entropy(logits, Indices::filled(Shape{2, 3}, 0),
                      Tensor::from({1, 1, -1, 1, 1, 1}, Shape{2, 3}, DType::f32));
      },
      {"cross_entropy", "mask has value -1"});
  check_error(
      [&] {
        cross_entropy(logits, Indices::filled(Shape{2, 3}, 0), Tensor::ones({2, 3}, DType::f64));
      },
      {"cross_entropy", "mask", "f32", "f64"});

  Generator gen(0);
  for (double p : {1.0, -0.1, 1.5, std::nan("")}) {
    INFO("p = " << p);
    check_error([&] { dropout(x, p, true, gen); }, {"dropout", "p is", "[0, 1)"});
  }
  check_error([] { Indices(Shape{2, 2}, {1, 2, 3}); }, {"Indices", "values has 3 entries", "4"});
}
