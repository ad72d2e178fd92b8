// Token-by-token generation in RNN mode: constant memory per step for the linear kinds.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "polyak/models/transformer.h"

namespace polyak {

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  // 0: greedy (argmax); > 0: sample from softmax(logits / temperature).
  double temperature = 0.0;
  uint64_t seed = 0;        // the sampling stream
  int32_t stop_token = -1;  // stop after generating it (−1: never)
  // Sees each generated token as it is produced; returning false stops generation.
  std::function<bool(int32_t)> on_token = nullptr;
};

// Feeds `prompt` (≥ 1 token, each in [0, vocab)) through model.step one token at a time,
// then generates up to max_new_tokens tokens, each fed back in. Returns the generated
// tokens (without the prompt). Runs in eval mode (restoring the model's mode after) and
// records no graph. A non-causal model, an empty prompt or a token outside the vocabulary
// is a polyak::Error.
std::vector<int32_t> generate(TransformerLM& model, const std::vector<int32_t>& prompt,
                              const GenerateOptions& options);

}  // namespace polyak
