// Batches of classification sequences (layout in sequences.h).
#include "polyak/data/sequences.h"

#include <algorithm>
#include <numeric>

#include "polyak/core/error.h"

namespace polyak {

ClassBatch ClassBatch::to(Device device) const {
  return ClassBatch{tokens.to(device), labels.to(device), lengths};
}

ClassBatch gather_batch(const SequenceDataset& data, const std::vector<int64_t>& indices,
                        int64_t pad_to) {
  POLYAK_CHECK(!indices.empty(), "gather_batch: ", data.name(),
               ": no indices, expected at least one");
  const auto B = static_cast<int64_t>(indices.size());
  std::vector<Example> examples;
  examples.reserve(indices.size());
  int64_t N = std::max<int64_t>(pad_to, 1);
  for (int64_t index : indices) {
    POLYAK_CHECK(index >= 0 && index < data.size(), "gather_batch: ", data.name(), ": index ",
                 index, ", expected 0 ≤ index < ", data.size());
    Example e = data.example(index);
    const auto n = static_cast<int64_t>(e.tokens.size());
    POLYAK_CHECK(n >= 1 && n <= data.max_length(), "gather_batch: ", data.name(), ": example ",
                 index, " has ", n, " tokens, expected 1 to ", data.max_length());
    POLYAK_CHECK(e.label >= 0 && e.label < data.classes(), "gather_batch: ", data.name(),
                 ": example ", index, " has label ", e.label, ", expected 0 to ",
                 data.classes() - 1);
    for (int32_t t : e.tokens)
      POLYAK_CHECK(t >= 0 && t < data.vocab(), "gather_batch: ", data.name(), ": example ", index,
                   " holds token ", t, ", expected 0 to ", data.vocab() - 1);
    N = std::max(N, n);
    examples.push_back(std::move(e));
  }
  ClassBatch out;
  out.tokens = Tensor::zeros(Shape{B, N}, DType::i64);
  out.labels = Tensor::zeros(Shape{B}, DType::i64);
  out.lengths.resize(indices.size());
  int64_t* tokens = out.tokens.data<int64_t>();
  int64_t* labels = out.labels.data<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const Example& e = examples[static_cast<size_t>(b)];
    std::copy(e.tokens.begin(), e.tokens.end(), tokens + b * N);
    labels[b] = e.label;
    out.lengths[static_cast<size_t>(b)] = static_cast<int64_t>(e.tokens.size());
  }
  return out;
}

EpochSampler::EpochSampler(int64_t size, int64_t batch, uint64_t seed, bool drop_last)
    : size_(size), batch_(batch), seed_(seed), drop_last_(drop_last) {
  POLYAK_CHECK(size > 0, "EpochSampler: size = ", size, ", expected > 0");
  POLYAK_CHECK(batch > 0, "EpochSampler: batch = ", batch, ", expected > 0");
  POLYAK_CHECK(!drop_last || batch <= size, "EpochSampler: batch = ", batch,
               " is more than the dataset's ", size,
               " examples, expected at most that many (or a sampler that keeps the last batch)");
  shuffle();
}

int64_t EpochSampler::batches_per_epoch() const {
  return drop_last_ ? size_ / batch_ : (size_ + batch_ - 1) / batch_;
}

void EpochSampler::shuffle() {
  order_.resize(static_cast<size_t>(size_));
  std::iota(order_.begin(), order_.end(), int64_t{0});
  // Fisher–Yates from a generator of its own per epoch: epoch e's order depends on (seed, e)
  // alone, so seek() needs no replay.
  Generator gen(seed_ ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(epoch_ + 1)));
  for (int64_t i = size_ - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(gen.integer(static_cast<uint64_t>(i + 1)));
    std::swap(order_[static_cast<size_t>(i)], order_[static_cast<size_t>(j)]);
  }
}

std::vector<int64_t> EpochSampler::next() {
  if (position_ >= batches_per_epoch()) {
    ++epoch_;
    position_ = 0;
    shuffle();
  }
  const int64_t first = position_ * batch_;
  const int64_t last = std::min(size_, first + batch_);
  ++position_;
  return {order_.begin() + first, order_.begin() + last};
}

void EpochSampler::seek(int64_t epoch, int64_t position) {
  POLYAK_CHECK(epoch >= 0 && position >= 0 && position <= batches_per_epoch(),
               "EpochSampler::seek: (epoch ", epoch, ", position ", position,
               "), expected epoch ≥ 0 and 0 ≤ position ≤ ", batches_per_epoch());
  epoch_ = epoch;
  position_ = position;
  shuffle();
}

}  // namespace polyak
