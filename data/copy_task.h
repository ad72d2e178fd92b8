// The copy task (Katharopoulos et al. 2020; the momentum-transformer paper's first
// benchmark): a random word w, a separator, w again, padding — next-token prediction.
//
// Legend: B batch, L sequence length, V = symbols + 1 vocabulary, n word length.
//
//   position   0 … n−1   n   n+1 … 2n   2n+1 … L−1
//   sequence   w         0   w          0 … 0          (symbols 1..S, 0 separates and pads)
//   tokens[t]  = sequence[t]                           t = 0 … L−1
//   targets[t] = sequence[t+1] for t < L−1, targets[L−1] = 0
//   mask[t]    = 1 for t ∈ [n, 2n−1]: the positions whose target is the copied word
//                (tokens n+1 … 2n of the sequence), so exactly n ones per row.
//
// n is uniform in [min_word, max_word), by default [L/4, (L−1)/2) = [32, 63) for L = 128;
// each symbol is uniform in 1..S. docs/math.md §10.
//
// Batches come from a counter-based Generator seeded with `seed`: the same seed gives the
// same batches, and a task with another seed (e.g. seed + 1 for the test split) draws an
// independent stream. generator() exposes the position so a run can resume exactly.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "polyak/core/indices.h"
#include "polyak/core/rng.h"
#include "polyak/core/tensor.h"

namespace polyak {

// One training batch of any task (cli/tasks.h): the copy task's, byte-level text's and
// pixel sequences' (targets and mask per position), or a classification task's (targets
// [B], no mask, and `lengths` when the rows are right-padded).
struct Batch {
  Tensor tokens;                  // i64 [B, L] inputs
  Tensor targets;                 // i64 [B, L] next tokens (or [B] classes)
  Tensor mask;                    // f32 [B, L]: 1 where the loss and accuracy count (or none)
  std::vector<int> word_lengths;  // the copy task: n of each row (on the host)
  std::vector<int64_t> lengths;   // right padding: the real tokens of each row; empty: none

  // The batch with its tensors on `device` (the word lengths stay on the host).
  Batch to(Device device) const;
};

class CopyTask {
 public:
  struct Options {
    int64_t length = 128;                            // L ≥ 4
    std::optional<int64_t> min_word = std::nullopt;  // default L/4; ≥ 1
    std::optional<int64_t> max_word =
        std::nullopt;      // exclusive; default (L−1)/2; 2·(max_word−1)+1 ≤ L
    int64_t symbols = 10;  // S ≥ 1: tokens 1..S
    uint64_t seed = 0;
  };

  CopyTask();
  explicit CopyTask(const Options& options);

  // A fresh batch of `batch_size` (> 0) sequences; advances the generator.
  Batch batch(int64_t batch_size);

  int64_t length() const { return length_; }
  int64_t min_word() const { return min_word_; }
  int64_t max_word() const { return max_word_; }  // exclusive
  int64_t symbols() const { return symbols_; }
  int64_t vocab() const { return symbols_ + 1; }  // V: symbols and the 0 token
  Generator& generator() { return gen_; }
  const Generator& generator() const { return gen_; }

 private:
  int64_t length_, min_word_, max_word_, symbols_;
  Generator gen_;
};

// Word accuracy (what polyak reports): the share of the copied tokens — the n positions
// t ∈ [n, 2n−1] of each row — whose argmax over `logits` [B, L, V] equals the target,
// pooled over the batch (Σ correct / Σ n).
double copy_accuracy(const Tensor& logits, const Batch& batch);

// The copy-task reference code's accuracy: the same, but over t ∈ [n−1, 2n−1], which also
// counts the prediction of the separator at t = n−1. That token cannot be known in advance
// (n is random), so this figure stays below 100%. Reported beside copy_accuracy, labelled.
double reference_accuracy(const Tensor& logits, const Batch& batch);

// copy_accuracy and reference_accuracy from predictions [B, L] (integer: the argmax of each
// position's logits, e.g. argmax(logits, 2) on a device), so that a training loop on a device reads
// back B·L ids when it logs rather than B·L·V logits on every step. Reads the predictions to the
// host.
double copy_accuracy_of(const Tensor& predictions, const Batch& batch);
double reference_accuracy_of(const Tensor& predictions, const Batch& batch);
// Per word: the share of rows whose whole copied word is right (every one of its n tokens),
// as `polyak generate --copy` counts; copy_accuracy_of is per token.
double copied_words_of(const Tensor& predictions, const Batch& batch);

}  // namespace polyak
