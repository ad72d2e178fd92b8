// Shape ops: gradients, values (including the tiled transpose paths), bad input.
#include <utility>

#include "ops_helpers.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

TEST_CASE("shape ops: gradcheck") {
  std::vector<GradcheckCase> cases = {
      {"reshape",
       {{2, 6}},
       [](const std::vector<Tensor>& x) {
         return reshape(x[0], {3, -1});
       }},
      {"permute [2,0,1]",
       {{2, 3, 4}},
       [](const std::vector<Tensor>& x) {
         return permute(x[0], {2, 0, 1});
       }},
      {"permute [1,0,2]",
       {{2, 3, 4}},
       [](const std::vector<Tensor>& x) {
         return permute(x[0], {1, 0, 2});
       }},
      {"permute [0,2,1]",
       {{2, 3, 4}},
       [](const std::vector<Tensor>& x) {
         return permute(x[0], {0, 2, 1});
       }},
      {"permute [3,1,2,0]",
       {{2, 3, 4, 5}},
       [](const std::vector<Tensor>& x) {
         return permute(x[0], {3, 1, 2, 0});
       }},
      {"permute [0,2,1,3]",
       {{2, 3, 4, 5}},
       [](const std::vector<Tensor>& x) {
         return permute(x[0], {0, 2, 1, 3});
       }},
      {"permute negative axes",
       {{2, 3, 4}},
       [](const std::vector<Tensor>& x) {
         return permute(x[0], {-1, 0, -2});
       }},
      {"transpose 0,-1",
       {{2, 3, 4}},
       [](const std::vector<Tensor>& x) { return transpose(x[0], 0, -1); }},
      {"transpose -1,-2",
       {{2, 3, 4}},
       [](const std::vector<Tensor>& x) { return transpose(x[0], -1, -2); }},
      {"slice axis 0", {{4, 3}}, [](const std::vector<Tensor>& x) { return slice(x[0], 0, 1, 3); }},
      {"slice axis 1",
       {{2, 5, 3}},
       [](const std::vector<Tensor>& x) { return slice(x[0], 1, 2, 5); }},
      {"slice axis -1",
       {{2, 5, 3}},
       [](const std::vector<Tensor>& x) { return slice(x[0], -1, 0, 2); }},
      {"concat axis 0",
       {{1, 3}, {2, 3}, {3, 3}},
       [](const std::vector<Tensor>& x) {
         return concat({x[0], x[1], x[2]}, 0);
       }},
      {"concat axis 1",
       {{2, 1, 3}, {2, 4, 3}},
       [](const std::vector<Tensor>& x) {
         return concat({x[0], x[1]}, 1);
       }},
      {"concat axis -1",
       {{2, 3, 1}, {2, 3, 2}, {2, 3, 3}},
       [](const std::vector<Tensor>& x) {
         return concat({x[0], x[1], x[2]}, -1);
       }},
      {"concat one input twice",
       {{2, 3}},
       [](const std::vector<Tensor>& x) {
         return concat({x[0], x[0]}, 1);
       }},
      {"split axis 1",
       {{2, 4, 3}},
       [](const std::vector<Tensor>& x) {
         std::vector<Tensor> p = split(x[0], 1, {1, 2, 1});
         return concat({mul(p[0], 2.0), p[2], square(p[1])}, 1);
       }},
      {"split axis 0",
       {{5, 2}},
       [](const std::vector<Tensor>& x) {
         std::vector<Tensor> p = split(x[0], 0, {2, 3});
         return concat({exp(p[1]), p[0]}, 0);
       }},
      {"split last axis (qkv)",
       {{2, 3, 6}},
       [](const std::vector<Tensor>& x) {
         std::vector<Tensor> p = split(x[0], -1, {2, 2, 2});
         return add(mul(p[0], p[1]), p[2]);
       }},
      {"split_heads",
       {{2, 3, 8}},
       [](const std::vector<Tensor>& x) { return split_heads(x[0], 2); }},
      {"merge_heads",
       {{2, 2, 3, 4}},
       [](const std::vector<Tensor>& x) { return merge_heads(x[0]); }},
  };
  run_gradcheck_table(cases);
}

TEST_CASE("shape ops: forward values") {
  Tensor x = Tensor::arange(24, DType::f64).reshape({2, 3, 4});
  Tensor p = permute(x, {2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  // p[d, a, b] = x[a, b, d] = 12a + 4b + d
  std::vector<double> expect;
  for (int d = 0; d < 4; ++d)
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 3; ++b) expect.push_back(12 * a + 4 * b + d);
  check_values(p, expect);

  Tensor m = Tensor::from({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64);
  check_values(transpose(m, 0, 1), {1, 4, 2, 5, 3, 6});
  check_values(slice(m, 1, 1, 3), {2, 3, 5, 6});
  check_values(slice(m, 0, 1, 2), {4, 5, 6});
  CHECK(slice(m, 1, 2, 2).shape() == Shape{2, 0});
  check_values(concat({m, Tensor::from({7, 8}, {2, 1}, DType::f64)}, 1), {1, 2, 3, 7, 4, 5, 6, 8});
  check_values(concat({m, Tensor::from({7, 8, 9}, {1, 3}, DType::f64)}, 0),
               {1, 2, 3, 4, 5, 6, 7, 8, 9});
  std::vector<Tensor> parts = split(m, 1, {1, 0, 2});
  REQUIRE(parts.size() == 3);
  check_values(parts[0], {1, 4});
  CHECK(parts[1].shape() == Shape{2, 0});
  check_values(parts[2], {2, 3, 5, 6});

  // split_heads: y[b,h,n,d] = x[b,n,h·D+d]
  Tensor t = Tensor::arange(8, DType::f64).reshape({1, 2, 4});
  Tensor heads = split_heads(t, 2);
  CHECK(heads.shape() == Shape{1, 2, 2, 2});
  check_values(heads, {0, 1, 4, 5, 2, 3, 6, 7});
  Tensor back = merge_heads(heads);
  CHECK(back.shape() == Shape{1, 2, 4});
  check_values(back, t.to_vector());

  // Axis-0 slices are views of the same storage; other axes copy.
  CHECK(slice(m, 0, 0, 1).shares_storage(m));
  CHECK_FALSE(slice(m, 1, 0, 1).shares_storage(m));
}

namespace {

// Reference permute by index arithmetic.
std::vector<double> naive_permute(const Tensor& x, const std::vector<int64_t>& dims) {
  const Shape& s = x.shape();
  const int64_t rank = s.rank();
  std::vector<int64_t> in_stride(static_cast<size_t>(rank), 1);
  for (int64_t a = rank - 2; a >= 0; --a) in_stride[a] = in_stride[a + 1] * s[a + 1];
  std::vector<double> v = x.to_vector(), out;
  std::vector<int64_t> out_shape;
  for (int64_t d : dims) out_shape.push_back(s[d]);
  for (int64_t i = 0; i < s.numel(); ++i) {
    int64_t rem = i, src = 0;
    for (int64_t j = rank - 1; j >= 0; --j) {
      src += (rem % out_shape[j]) * in_stride[dims[j]];
      rem /= out_shape[j];
    }
    out.push_back(v[static_cast<size_t>(src)]);
  }
  return out;
}

}  // namespace

TEST_CASE("shape ops: large permutes, slices and heads agree with a naive loop") {
  Generator gen(3);
  struct Case {
    Shape shape;
    std::vector<int64_t> dims;
  };
  const std::vector<Case> cases = {
      {{300, 257}, {1, 0}},              // one tiled 2-D transpose, threaded over strips
      {{48, 70, 33}, {0, 2, 1}},         // a batch of transposes
      {{8, 64, 4, 32}, {0, 2, 1, 3}},    // split-heads layout: contiguous rows
      {{6, 5, 40, 7}, {3, 1, 0, 2}},     // general
      {{1, 200, 1, 300}, {3, 2, 1, 0}},  // extent-1 axes dropped, then a transpose
  };
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : cases) {
      CAPTURE(c.shape);
      Tensor x = Tensor::randn(c.shape, gen, dt);
      Tensor y = permute(x, c.dims);
      std::vector<int64_t> out_dims;
      for (int64_t d : c.dims) out_dims.push_back(c.shape[d]);
      CHECK(max_abs_diff(y, Tensor::from(naive_permute(x, c.dims), Shape(out_dims), dt)) == 0);
    }
    // Head widths with their own copy loops (16, 32, 64) and one without (24).
    for (auto [heads, D] : {std::pair<int64_t, int64_t>{8, 32}, {15, 16}, {4, 64}, {10, 24}}) {
      INFO("heads " << heads << " x " << D);
      Tensor xh = Tensor::randn({4, 96, heads * D}, gen, dt);
      Tensor h = split_heads(xh, heads);
      CHECK(max_abs_diff(h, permute(xh.reshape({4, 96, heads, D}), {0, 2, 1, 3})) == 0);
      CHECK(max_abs_diff(merge_heads(h), xh) == 0);
    }
    Tensor x = Tensor::randn({4, 96, 256}, gen, dt);
    std::vector<Tensor> qkv = split(x, 2, {100, 100, 56});
    CHECK(max_abs_diff(concat(qkv, 2), x) == 0);
    CHECK(max_abs_diff(qkv[1], slice(x, -1, 100, 200)) == 0);
  }
}

TEST_CASE("shape ops: bad input") {
  Tensor x = Tensor::zeros({2, 3, 4}, DType::f64);
  check_error([&] { permute(x, {0, 1}); }, {"permute", "dims [0,1]", "expected 3"});
  check_error([&] { permute(x, {0, 1, 1}); }, {"permute", "dims [0,1,1]", "repeats axis 1"});
  check_error([&] { permute(x, {0, 1, 3}); }, {"permute", "dims [0,1,3]", "axis 3"});
  check_error([&] { transpose(x, 0, 3); }, {"transpose", "axis 3"});
  check_error([&] { slice(x, 1, -1, 2); }, {"slice", "begin = -1", "[2,3,4]"});
  check_error([&] { slice(x, 1, 0, 4); }, {"slice", "end = 4", "≤ 3"});
  check_error([&] { slice(x, 2, 3, 1); }, {"slice", "begin = 3", "end = 1"});
  check_error([&] { slice(x, 0, 0, 3); }, {"slice", "end = 3", "≤ 2"});
  check_error([&] { slice(x, 5, 0, 1); }, {"slice", "axis 5"});
  check_error([&] { concat({}, 0); }, {"concat", "xs", "empty"});
  check_error(
      [&] {
        concat({x, Tensor::zeros({2, 5, 5}, DType::f64)}, 1);
      },
      {"concat", "xs[1]", "[2,5,5]", "[2,3,4]"});
  check_error(
      [&] {
        concat({x, Tensor::zeros({2, 3}, DType::f64)}, 0);
      },
      {"concat", "xs[1]", "[2,3]"});
  check_error(
      [&] {
        concat({x, Tensor::zeros({2, 3, 4}, DType::f32)}, 0);
      },
      {"concat", "xs[1]", "f32", "f64"});
  check_error([&] { concat({x, x}, 3); }, {"concat", "axis 3"});
  check_error([&] { concat({x, Tensor()}, 0); }, {"concat", "xs[1]", "undefined"});
  check_error([&] { split(x, 1, {1, 1}); }, {"split", "sizes [1,1]", "sum to 2", "3"});
  check_error([&] { split(x, 1, {4, -1}); }, {"split", "sizes[1] = -1"});
  check_error([&] { split(x, 3, {1}); }, {"split", "axis 3"});
  check_error(
      [&] {
        split_heads(Tensor::zeros({2, 3, 10}), 4);
      },
      {"split_heads", "x", "[2,3,10]", "heads = 4", "divisible"});
  check_error([&] { split_heads(Tensor::zeros({2, 3, 8}), 0); }, {"split_heads", "heads = 0"});
  check_error(
      [&] {
        split_heads(Tensor::zeros({3, 8}), 2);
      },
      {"split_heads", "x", "rank 2", "[B, N, H·D]"});
  check_error([&] { merge_heads(x); }, {"merge_heads", "x", "rank 3", "[B, H, N, D]"});
  check_error([&] { reshape(x, {5, -1}); }, {"reshape", "[5,-1]"});
}
