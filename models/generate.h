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

// ---- pixel models (the pixel task: a start token, then 784 intensities) ----------------

struct ImageSampleOptions {
  int64_t images = 16;        // sampled together, one batch row each
  int64_t pixels = 784;       // positions per image (28 × 28)
  int64_t start_token = 256;  // the first input, before pixel 0
  uint64_t seed = 0;          // the sampling stream
};

// Samples `images` images pixel by pixel in RNN mode (model.step: constant memory per step for
// the linear kinds), each pixel drawn from the head's distribution — the discretized logistic
// mixture (sample_logistic_mixture) or the softmax over intensities 0..255 of a token head —
// and fed back in. Returns i64 [images, pixels] with values 0..255. Runs in eval mode
// (restoring the model's mode) without a graph. A model that is not causal, has a class head,
// or whose vocabulary lacks the start token is a polyak::Error.
Tensor sample_images(TransformerLM& model, const ImageSampleOptions& options);

}  // namespace polyak
