// Classification data as token sequences (docs/math.md §10; the LRA-style tasks): a dataset
// is a fixed, indexed list of examples — tokens in [0, vocab) of length 1 … max_length and a
// class label in [0, classes) — that a training loop reads in shuffled batches.
//
// Legend: B batch, N the longest example of a batch (≤ max_length).
//
//   example(i)            tokens t_0 … t_{n−1}, label y
//   gather_batch(…, idx)  tokens [B, N] (i64, each row padded with 0 after its n tokens),
//                         labels [B] (i64), lengths (n of each row, on the host)
//
// Padding is described by the lengths alone (rows are padded on the right), so a pad token
// needs no reserved value: an encoder masks positions ≥ n, whatever token they hold.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "polyak/core/rng.h"
#include "polyak/core/tensor.h"

namespace polyak {

struct Example {
  std::vector<int32_t> tokens;  // 1 ≤ size ≤ max_length, each in [0, vocab)
  int32_t label = 0;            // in [0, classes)
};

// One split (train, validation or test) of a task. example() is const and safe to call
// from several threads at once (a prefetch thread reads while the trainer evaluates).
class SequenceDataset {
 public:
  virtual ~SequenceDataset() = default;
  virtual std::string name() const = 0;  // for messages: "listops/train", "fashion-mnist/test"
  virtual int64_t size() const = 0;
  virtual int64_t max_length() const = 0;
  virtual int64_t vocab() const = 0;
  virtual int64_t classes() const = 0;
  // Example `index` ∈ [0, size()); the same index always gives the same example.
  virtual Example example(int64_t index) const = 0;
};

struct ClassBatch {
  Tensor tokens;                 // i64 [B, N]
  Tensor labels;                 // i64 [B]
  std::vector<int64_t> lengths;  // n of each row, 1 ≤ n ≤ N

  // The batch with its tensors on `device` (the lengths stay on the host).
  ClassBatch to(Device device) const;
};

// The examples `indices` of `data` as one batch padded to the longest of them (or to
// `pad_to` when it is larger). Checks every example against the dataset's limits and throws
// polyak::Error naming the dataset, the index and the fault.
ClassBatch gather_batch(const SequenceDataset& data, const std::vector<int64_t>& indices,
                        int64_t pad_to = 0);

// Shuffled passes over [0, size): each epoch is a permutation drawn from Generator(seed)
// at that epoch, cut into batches of `batch` (the last, shorter batch of an epoch is
// dropped when drop_last, kept otherwise). The position (epoch, batch within it) is all a
// resumed run needs to continue the same sequence.
class EpochSampler {
 public:
  EpochSampler(int64_t size, int64_t batch, uint64_t seed, bool drop_last = true);

  std::vector<int64_t> next();
  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }  // batches taken in this epoch
  int64_t batches_per_epoch() const;
  // Jumps to (epoch, position): the state of a run that took those batches.
  void seek(int64_t epoch, int64_t position);

 private:
  void shuffle();

  int64_t size_, batch_;
  uint64_t seed_;
  bool drop_last_;
  int64_t epoch_ = 0, position_ = 0;
  std::vector<int64_t> order_;
};

}  // namespace polyak
