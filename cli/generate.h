// `polyak generate`: RNN-mode generation from a checkpoint, either after a given prompt or
// on copy-task words of the checkpoint's test split (prompt "w 0", greedy, len(w) tokens).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cli/options.h"

namespace polyak::cli {

struct CopyExample {
  std::vector<int32_t> word;    // w
  std::vector<int32_t> output;  // what the model generated after "w 0"
};

struct GenerateReport {
  std::string kind;  // the checkpoint's model kind ("" when it is none of model_kinds())
  std::string task;  // the task it was trained on (metadata train.task; "copy" without it)
  int64_t vocab = 0;
  std::vector<int32_t> tokens;  // --prompt: the generated tokens

  // Timing. Each call to generate() feeds its prompt (the first generated token comes out
  // of the prompt's last step), then takes one step per further token: prompt_seconds runs
  // from the call to its first token, generate_seconds from there to its last token.
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t timed_tokens =
      0;  // generated tokens after each call's first: what generate_seconds timed
  double prompt_seconds = 0;
  double generate_seconds = 0;
  double prompt_tokens_per_s() const;
  double generated_tokens_per_s() const;  // 0 when no token after the first was generated

  // --copy: K words, each prompted with "w 0" and greedily continued for len(w) tokens.
  int64_t words = 0;
  int64_t words_exact = 0;  // reproduced exactly
  int64_t word_tokens = 0;  // Σ len(w)
  int64_t word_tokens_right = 0;
  std::vector<CopyExample> examples;  // the first few words, to show

  // --images: N samples of a pixel model, drawn together pixel by pixel, as a PNG grid.
  int64_t images = 0;
  double image_seconds = 0;
  std::string png;
  int64_t state_bytes = 0;  // the recurrent state of one image at its first step
};

// The bytes of `model`'s recurrent state for one sequence at its start: what an RNN-mode step
// keeps (constant for the linear kinds; softmax's cache grows from it).
int64_t state_bytes(const TransformerLM& model);

// Loads options.checkpoint and generates. A missing or corrupt checkpoint is load_model's
// polyak::Error; a non-causal model, a prompt or stop token outside the vocabulary, or (for
// --copy) a checkpoint without the copy task's metadata is a polyak::Error naming the path.
GenerateReport run_generate(const GenerateCommand& options);

}  // namespace polyak::cli
