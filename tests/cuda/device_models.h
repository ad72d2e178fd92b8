// The small models the whole-model device tests build: every kind at test sizes, and a token
// pattern to feed them.
#pragma once

#include <string>
#include <vector>

#include "../nn/helpers.h"
#include "polyak/models/transformer.h"
#include "polyak/nn/kinds.h"
#include "testing.h"

namespace polyak::testing {

// Two layers of width 16 over 9 symbols, learned positions up to 24; non-causal for the kinds
// without a causal form.
inline TransformerConfig device_model(const std::string& kind, double dropout = 0.1) {
  TransformerConfig c;
  c.vocab = 9;
  c.max_len = 24;
  c.d_model = 16;
  c.heads = 2;
  c.ff_dim = 24;
  c.layers = 2;
  c.dropout = dropout;
  c.positions = "learned";
  c.seed = 5;
  set_model_kind(c, kind);
  if (!attention_spec(c.attention).forms.causal) c.causal = false;
  use_test_sizes(c);
  return c;
}

// Token ids [B, N] in [0, V): a fixed pattern that `shift` moves.
inline Tensor token_pattern(int64_t B, int64_t N, int64_t V, int64_t shift) {
  std::vector<int64_t> t(static_cast<size_t>(B * N));
  for (int64_t i = 0; i < B * N; ++i) t[static_cast<size_t>(i)] = (i * 7 + i / 5 + shift) % V;
  return ids({B, N}, t);
}

}  // namespace polyak::testing
