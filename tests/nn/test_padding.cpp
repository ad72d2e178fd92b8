// Padded batches: a non-causal attention on a right-padded batch computes, at every real
// position, what it computes on each row's real positions alone — outputs and gradients —
// for every kind with a non-causal form; a causal one ignores the lengths. For the
// feature-map kinds (linear, momentum, Performer) this checks their one batched call with
// masked keys against the definition; for the kinds whose padded form is that per-row loop
// (softmax, Linformer, TransNormer's, Mega) it checks how the rows are cut, padded and
// joined, forward and backward. Momentum's op is checked against eq. 14 with the true N in
// tests/ops/attention/test_momentum_attention.cpp.
#include <algorithm>

#include "helpers.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::has_form;
using polyak::testing::max_abs_diff;
using polyak::testing::use_test_sizes;

namespace {

constexpr int64_t kD = 8;

AttentionConfig padded_config(const std::string& kind, bool causal) {
  AttentionConfig c;
  c.kind = kind;
  c.d_model = kD;
  c.heads = 2;
  c.causal = causal;
  c.max_len = 8;
  use_test_sizes(c);
  // Blocks and chunks of 3, so that rows of 7, 5 and 2 real positions end in partial ones.
  if (c.params.schema()->find("block_size") != nullptr) c.params.set("block_size", int64_t{3});
  return c;
}

// y[b, 0:n] for each row, as one [Σn, d] tensor.
Tensor real_rows(const Tensor& y, const std::vector<int64_t>& lengths) {
  std::vector<Tensor> rows;
  for (size_t b = 0; b < lengths.size(); ++b) {
    const auto i = static_cast<int64_t>(b);
    rows.push_back(slice(slice(y, 0, i, i + 1), 1, 0, lengths[b]).reshape({lengths[b], kD}));
  }
  return concat(rows, 0);
}

// The gradients of every parameter and of x after backward(), flattened.
std::vector<double> gradients(const Module& m, const Tensor& x) {
  std::vector<double> out = x.grad().to_vector();
  for (const Tensor& p : m.parameters()) {
    if (!p.grad().defined()) continue;
    const std::vector<double> g = p.grad().to_vector();
    out.insert(out.end(), g.begin(), g.end());
  }
  return out;
}

}  // namespace

TEST_CASE("padding: a non-causal attention on a padded batch equals each row alone") {
  const std::vector<int64_t> lengths = {7, 2, 5};
  const int64_t B = 3, N = 7;
  for (const std::string& kind : attention_kinds()) {
    if (!has_form(kind, /*causal=*/false)) continue;
    CAPTURE(kind);
    Generator gen(5);
    auto attn = make_attention(padded_config(kind, false), gen);
    attn->to(DType::f64);
    attn->eval();  // Performer's features stay put across the forwards compared
    Generator xg(6);
    const Tensor x = Tensor::randn({B, N, kD}, xg, DType::f64).requires_grad_(true);
    // A cotangent on the real positions only: the padding's outputs are unspecified.
    const Tensor mask = padding_mask(lengths, B, N, DType::f64, Device::cpu()).reshape({B, N, 1});
    const Tensor cotangent = Tensor::randn({B, N, kD}, xg, DType::f64) * mask;

    attn->zero_grad();
    Tensor y = attn->forward(x, lengths);
    REQUIRE(y.shape() == Shape({B, N, kD}));
    y.backward(cotangent);
    const std::vector<double> padded_grads = gradients(*attn, x);
    const Tensor padded_real = real_rows(y, lengths);

    // Each row alone, on a fresh leaf holding the same values.
    attn->zero_grad();
    const Tensor x2 = x.detach().requires_grad_(true);
    std::vector<Tensor> outs;
    Tensor loss;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = lengths[static_cast<size_t>(b)];
      Tensor row = attn->forward(slice(slice(x2, 0, b, b + 1), 1, 0, n));
      outs.push_back(row.reshape({n, kD}));
      Tensor part = sum(row * slice(slice(cotangent, 0, b, b + 1), 1, 0, n));
      loss = loss.defined() ? loss + part : part;
    }
    loss.backward();
    CHECK(max_abs_diff(padded_real, concat(outs, 0)) <= 1e-12);
    const std::vector<double> alone_grads = gradients(*attn, x2);
    REQUIRE(alone_grads.size() == padded_grads.size());
    double worst = 0, scale = 0;
    for (size_t i = 0; i < alone_grads.size(); ++i) {
      worst = std::max(worst, std::abs(alone_grads[i] - padded_grads[i]));
      scale = std::max(scale, std::abs(alone_grads[i]));
    }
    CHECK(scale > 0);
    CHECK(worst <= 1e-12 * std::max(1.0, scale));

    // Full lengths are no padding at all; the same values as forward(x).
    CHECK(max_abs_diff(attn->forward(x, {N, N, N}), attn->forward(x)) == 0.0);
  }
}

TEST_CASE("padding: a causal attention ignores the lengths") {
  const std::vector<int64_t> lengths = {4, 6};
  for (const std::string& kind : attention_kinds()) {
    if (!has_form(kind, /*causal=*/true)) continue;
    CAPTURE(kind);
    Generator gen(7);
    auto attn = make_attention(padded_config(kind, true), gen);
    attn->to(DType::f64);
    attn->eval();
    Generator xg(8);
    const Tensor x = Tensor::randn({2, 6, kD}, xg, DType::f64);
    CHECK(max_abs_diff(attn->forward(x, lengths), attn->forward(x)) == 0.0);
  }
}

TEST_CASE("padding: lengths that do not fit the batch are errors") {
  Generator gen(9);
  auto attn = make_attention(padded_config("linear", false), gen);
  const Tensor x = Tensor::zeros({2, 5, kD});
  check_error([&] { attn->forward(x, {5}); },
              {"Attention::forward", "lengths has 1 entries", "B = 2"});
  check_error([&] { attn->forward(x, {5, 0}); }, {"lengths[1] = 0", "expected in [1, 5]"});
  check_error([&] { attn->forward(x, {6, 5}); }, {"lengths[0] = 6", "expected in [1, 5]"});
  check_error([&] { attn->forward_residual(x, x, {2}); },
              {"Attention::forward_residual", "lengths has 1 entries"});
}

TEST_CASE("padding: TransNormer's DiagAttention takes a partial last block when not causal") {
  // 7 positions in blocks of 3: blocks [0,3), [3,6) and [6,7), each softmax over itself.
  AttentionConfig c = padded_config("diag", false);
  Generator mg(11);
  auto attn = make_attention(c, mg);
  attn->to(DType::f64);
  Generator xg(12);
  const Tensor x = Tensor::randn({1, 7, kD}, xg, DType::f64);
  const Tensor y = attn->forward(x);
  // The first six positions do not depend on the seventh: blocks never mix.
  Tensor x6 = slice(x, 1, 0, 6);
  CHECK(max_abs_diff(slice(y, 1, 0, 6), attn->forward(x6)) <= 1e-12);
  // The last one is a block of its own: itself alone.
  CHECK(max_abs_diff(slice(y, 1, 6, 7), attn->forward(slice(x, 1, 6, 7))) <= 1e-12);
}
