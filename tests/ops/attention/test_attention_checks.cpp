// Table-driven gradcheck of every attention op, and the errors bad input raises.
#include <functional>
#include <string>
#include <vector>

#include "helpers.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

// q, k positive (denominators away from 0), v normal.
std::function<std::vector<Tensor>(Generator&)> positive_qk(Shape q, Shape k, Shape v) {
  return [q, k, v](Generator& gen) {
    return std::vector<Tensor>{positive_leaf(q, gen), positive_leaf(k, gen), normal_leaf(v, gen)};
  };
}

}  // namespace

TEST_CASE("attention ops pass gradcheck (f64, random cotangent)") {
  const Shape q{2, 2, 5, 3}, v{2, 2, 5, 4};
  const Shape qn{1, 2, 4, 3}, km{1, 2, 6, 3}, vm{1, 2, 6, 2};  // N = 4 queries, M = 6 keys
  std::vector<GradcheckCase> cases = {
      {"elu_feature_map",
       {Shape{2, 3, 7}},
       [](const std::vector<Tensor>& x) { return elu_feature_map(x[0]); }},
      {"elu_feature_map_heads, D = 4",
       {Shape{2, 3, 12}},
       [](const std::vector<Tensor>& x) { return elu_feature_map_heads(x[0], 3); }},
      {"elu_feature_map_heads, D = 16",
       {Shape{1, 2, 32}},
       [](const std::vector<Tensor>& x) { return elu_feature_map_heads(x[0], 2); }},
      {"causal_linear_attention",
       {q, q, v},
       [](const std::vector<Tensor>& x) { return causal_linear_attention(x[0], x[1], x[2]); },
       positive_qk(q, q, v)},
      {"causal_dot_product",
       {q, q, v},
       [](const std::vector<Tensor>& x) { return causal_dot_product(x[0], x[1], x[2]); }},
      {"linear_attention",
       {qn, km, vm},
       [](const std::vector<Tensor>& x) { return linear_attention(x[0], x[1], x[2]); },
       positive_qk(qn, km, vm)},
      {"causal_linear_attention of elu_feature_map",
       {q, q, v},
       [](const std::vector<Tensor>& x) {
         return causal_linear_attention(elu_feature_map(x[0]), elu_feature_map(x[1]), x[2]);
       }},
      {"linear_attention of elu_feature_map",
       {qn, km, vm},
       [](const std::vector<Tensor>& x) {
         return linear_attention(elu_feature_map(x[0]), elu_feature_map(x[1]), x[2]);
       }},
      {"softmax_attention causal",
       {q, q, v},
       [](const std::vector<Tensor>& x) { return softmax_attention(x[0], x[1], x[2], true); }},
      {"softmax_attention",
       {qn, km, vm},
       [](const std::vector<Tensor>& x) { return softmax_attention(x[0], x[1], x[2], false); }},
      {"causal_linear_attention Dv=16",
       {Shape{1, 2, 4, 3}, Shape{1, 2, 4, 3}, Shape{1, 2, 4, 16}},
       [](const std::vector<Tensor>& x) { return causal_linear_attention(x[0], x[1], x[2]); },
       positive_qk({1, 2, 4, 3}, {1, 2, 4, 3}, {1, 2, 4, 16})},
      {"causal_dot_product Dv=16",
       {Shape{1, 2, 4, 3}, Shape{1, 2, 4, 3}, Shape{1, 2, 4, 16}},
       [](const std::vector<Tensor>& x) { return causal_dot_product(x[0], x[1], x[2]); }},
      {"softmax_attention causal N=70 (two row blocks)",
       {Shape{1, 1, 70, 2}, Shape{1, 1, 70, 2}, Shape{1, 1, 70, 2}},
       [](const std::vector<Tensor>& x) { return softmax_attention(x[0], x[1], x[2], true); }},
      {"softmax_attention N=70, M=9",
       {Shape{1, 1, 70, 2}, Shape{1, 1, 9, 2}, Shape{1, 1, 9, 3}},
       [](const std::vector<Tensor>& x) { return softmax_attention(x[0], x[1], x[2], false); }},
      {"causal_linear_attention N=1",
       {Shape{1, 1, 1, 3}, Shape{1, 1, 1, 3}, Shape{1, 1, 1, 2}},
       [](const std::vector<Tensor>& x) { return causal_linear_attention(x[0], x[1], x[2]); },
       positive_qk({1, 1, 1, 3}, {1, 1, 1, 3}, {1, 1, 1, 2})},
  };
  run_gradcheck_table(cases);
}

TEST_CASE("attention ops reject bad input, naming the op and the argument") {
  using Op = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;
  struct Entry {
    std::string name;
    Op op;
    bool same_length;  // k and v must have q's N
  };
  const std::vector<Entry> ops = {
      {"causal_linear_attention",
       [](auto& q, auto& k, auto& v) { return causal_linear_attention(q, k, v); }, true},
      {"causal_dot_product", [](auto& q, auto& k, auto& v) { return causal_dot_product(q, k, v); },
       true},
      {"linear_attention", [](auto& q, auto& k, auto& v) { return linear_attention(q, k, v); },
       false},
      {"softmax_attention",
       [](auto& q, auto& k, auto& v) { return softmax_attention(q, k, v, true); }, true},
      {"softmax_attention",
       [](auto& q, auto& k, auto& v) { return softmax_attention(q, k, v, false); }, false},
  };
  auto t = [](Shape s, DType dt = DType::f64) { return Tensor::zeros(s, dt); };
  const Tensor q = t({2, 4, 8, 6}), k = t({2, 4, 8, 6}), v = t({2, 4, 8, 5});
  for (const Entry& e : ops) {
    CAPTURE(e.name);
    CAPTURE(e.same_length);
    // Wrong rank, each argument.
    check_error(
        [&] {
          e.op(t({2, 4, 8}), k, v);
        },
        {e.name, "q has shape [2,4,8]", "rank 4", "[B,H,N,D]"});
    check_error([&] { e.op(q, t({4, 8, 6}), v); }, {e.name, "k has shape [4,8,6]", "rank 4"});
    check_error(
        [&] {
          e.op(q, k, t({2, 4, 8, 5, 1}));
        },
        {e.name, "v has shape [2,4,8,5,1]", "rank 4"});
    // Mismatched B, H, D between q and k.
    check_error(
        [&] {
          e.op(q, t({3, 4, 8, 6}), v);
        },
        {e.name, "k has shape [3,4,8,6]", "matching q [2,4,8,6]"});
    check_error(
        [&] {
          e.op(q, t({2, 1, 8, 6}), v);
        },
        {e.name, "k has shape [2,1,8,6]", "matching q [2,4,8,6]"});
    check_error(
        [&] {
          e.op(q, t({2, 4, 8, 7}), v);
        },
        {e.name, "k has shape [2,4,8,7]", "matching q [2,4,8,6]"});
    // Mismatched B, H between v and the rest.
    check_error(
        [&] {
          e.op(q, k, t({1, 4, 8, 5}));
        },
        {e.name, "v has shape [1,4,8,5]", "expected [B,"});
    check_error(
        [&] {
          e.op(q, k, t({2, 3, 8, 5}));
        },
        {e.name, "v has shape [2,3,8,5]", "expected [B,"});
    // Mismatched N.
    if (e.same_length) {
      check_error(
          [&] {
            e.op(q, t({2, 4, 9, 6}), t({2, 4, 9, 5}));
          },
          {e.name, "k has shape [2,4,9,6]", "matching q [2,4,8,6] in B,H,N,D"});
      check_error(
          [&] {
            e.op(q, k, t({2, 4, 9, 5}));
          },
          {e.name, "v has shape [2,4,9,5], expected [B,H,N,Dv] matching q [2,4,8,6] in B,H,N"});
    } else {
      CHECK(e.op(q, t({2, 4, 9, 6}), t({2, 4, 9, 5})).shape() == Shape({2, 4, 8, 5}));
      check_error(
          [&] {
            e.op(q, k, t({2, 4, 9, 5}));
          },
          {e.name, "v has shape [2,4,9,5], expected [B,H,M,Dv] matching k [2,4,8,6] in B,H,M"});
    }
    // f32 mixed with f64.
    check_error([&] { e.op(q, t({2, 4, 8, 6}, DType::f32), v); }, {e.name, "k is f32", "q is f64"});
    check_error([&] { e.op(q, k, t({2, 4, 8, 5}, DType::f32)); }, {e.name, "v is f32", "q is f64"});
    check_error([&] { e.op(t({2, 4, 8, 6}, DType::f32), k, v); }, {e.name, "k is f64", "q is f32"});
    // Undefined input.
    check_error([&] { e.op(q, Tensor(), v); }, {e.name, "k is undefined"});
  }
  check_error([&] { elu_feature_map(Tensor()); }, {"elu_feature_map", "x is undefined"});
  check_error([&] { elu_feature_map_heads(Tensor(), 2); },
              {"elu_feature_map_heads", "x is undefined"});
  check_error(
      [&] {
        elu_feature_map_heads(t({2, 3, 4, 5}), 2);
      },
      {"elu_feature_map_heads", "x has shape [2,3,4,5]", "[B, N, H·D]"});
  check_error(
      [&] {
        elu_feature_map_heads(t({2, 3, 10}), 4);
      },
      {"elu_feature_map_heads", "width 10 is not divisible by heads = 4"});
  check_error(
      [&] {
        elu_feature_map_heads(t({2, 3, 10}), 0);
      },
      {"elu_feature_map_heads: heads = 0, expected ≥ 1"});
  check_error([&] { causal_linear_attention(q, k, v, -1.0); },
              {"causal_linear_attention", "eps is -1"});
  check_error([&] { linear_attention(q, k, v, std::nan("")); }, {"linear_attention", "eps is"});
}
