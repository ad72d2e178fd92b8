// The copy task: batch generation and the two accuracies (layout in copy_task.h).
#include "polyak/data/copy_task.h"

#include <algorithm>

#include "polyak/core/error.h"

namespace polyak {

CopyTask::CopyTask() : CopyTask(Options{}) {}

CopyTask::CopyTask(const Options& options)
    : length_(options.length),
      min_word_(options.min_word.value_or(options.length / 4)),
      max_word_(options.max_word.value_or((options.length - 1) / 2)),
      symbols_(options.symbols),
      gen_(options.seed) {
  POLYAK_CHECK(length_ >= 4, "CopyTask: length = ", length_, ", expected >= 4");
  POLYAK_CHECK(symbols_ >= 1, "CopyTask: symbols = ", symbols_, ", expected >= 1");
  POLYAK_CHECK(min_word_ >= 1, "CopyTask: min_word = ", min_word_,
               options.min_word ? "" : " (default length/4)", ", expected >= 1");
  POLYAK_CHECK(max_word_ > min_word_, "CopyTask: max_word = ", max_word_,
               options.max_word ? "" : " (default (length-1)/2)",
               ", expected > min_word = ", min_word_,
               " (max_word is exclusive: word lengths are drawn from [min_word, max_word))");
  POLYAK_CHECK(2 * (max_word_ - 1) + 1 <= length_, "CopyTask: max_word = ", max_word_,
               ", expected 2*(max_word-1)+1 <= length = ", length_,
               " (the longest word w must fit as 'w 0 w')");
}

Batch CopyTask::batch(int64_t batch_size) {
  POLYAK_CHECK(batch_size > 0, "CopyTask::batch: batch_size = ", batch_size, ", expected > 0");
  const int64_t B = batch_size, L = length_;
  Batch out;
  out.tokens = Tensor::zeros(Shape{B, L}, DType::i64);
  out.targets = Tensor::zeros(Shape{B, L}, DType::i64);
  out.mask = Tensor::zeros(Shape{B, L}, DType::f32);
  out.word_lengths.resize(static_cast<size_t>(B));
  int64_t* tokens = out.tokens.data<int64_t>();
  int64_t* targets = out.targets.data<int64_t>();
  float* mask = out.mask.data<float>();
  std::vector<int32_t> seq(static_cast<size_t>(L));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = min_word_ + static_cast<int64_t>(
                                      gen_.integer(static_cast<uint64_t>(max_word_ - min_word_)));
    std::fill(seq.begin(), seq.end(), 0);
    for (int64_t i = 0; i < n; ++i) {
      const auto symbol = static_cast<int32_t>(1 + gen_.integer(static_cast<uint64_t>(symbols_)));
      seq[static_cast<size_t>(i)] = symbol;
      seq[static_cast<size_t>(n + 1 + i)] = symbol;
    }
    for (int64_t t = 0; t < L; ++t) {
      tokens[b * L + t] = seq[static_cast<size_t>(t)];
      targets[b * L + t] = t + 1 < L ? seq[static_cast<size_t>(t + 1)] : 0;
    }
    for (int64_t t = n; t < 2 * n; ++t) mask[b * L + t] = 1.0f;
    out.word_lengths[static_cast<size_t>(b)] = static_cast<int>(n);
  }
  return out;
}

Batch Batch::to(Device device) const {
  return Batch{tokens.to(device), targets.to(device), mask.defined() ? mask.to(device) : Tensor(),
               word_lengths, lengths};
}

namespace {

// Checks batch against predictions of shape [B, L] (or logits [B, L, V] with `vocab_axis`).
void check_batch(const char* fn, const char* arg, const Tensor& t, const Batch& batch,
                 bool vocab_axis) {
  check_defined(fn, arg, t);
  check_defined(fn, "batch.tokens", batch.tokens);
  check_defined(fn, "batch.targets", batch.targets);
  const Shape& ts = batch.tokens.shape();
  POLYAK_CHECK(ts.rank() == 2, fn, ": batch.tokens has shape ", ts, ", expected [B, L]");
  const int64_t B = ts[0], L = ts[1];
  const bool fits = vocab_axis ? t.dim() == 3 && t.size(0) == B && t.size(1) == L && t.size(2) >= 1
                               : t.shape() == ts;
  POLYAK_CHECK(fits, fn, ": ", arg, " has shape ", t.shape(), ", expected ",
               vocab_axis ? "[B, L, V] with V >= 1" : "[B, L]", " matching batch.tokens ", ts);
  POLYAK_CHECK(batch.targets.shape() == ts, fn, ": batch.targets has shape ", batch.targets.shape(),
               ", expected ", ts, " as batch.tokens");
  POLYAK_CHECK(static_cast<int64_t>(batch.word_lengths.size()) == B, fn,
               ": batch.word_lengths has ", batch.word_lengths.size(),
               " entries, expected B = ", B);
  POLYAK_CHECK(B >= 1, fn, ": the batch is empty, expected B >= 1");
}

// Correct predictions over t ∈ [n − lead, 2n − 1] of every row, divided by their count.
// lead = 0: the copied word; lead = 1: the reference code's window. With `whole`, the share
// of rows whose window is right at every position instead.
double windowed_accuracy(const char* fn, const Indices& predicted, const Batch& batch, int64_t lead,
                         bool whole = false) {
  const int64_t B = batch.tokens.size(0), L = batch.tokens.size(1);
  const Indices targets = to_indices(fn, "batch.targets", batch.targets.cpu());
  int64_t correct = 0, total = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = batch.word_lengths[static_cast<size_t>(b)];
    POLYAK_CHECK(n >= 1 && 2 * n + 1 <= L, fn, ": batch.word_lengths[", b, "] = ", n,
                 ", expected 1 <= n and 2n+1 <= L = ", L);
    int64_t row = 0;
    for (int64_t t = n - lead; t < 2 * n; ++t) row += predicted[b * L + t] == targets[b * L + t];
    correct += whole ? (row == n + lead ? 1 : 0) : row;
    total += whole ? 1 : n + lead;
  }
  return static_cast<double>(correct) / static_cast<double>(total);
}

// The first maximum over the vocabulary of each position of logits [B, L, V].
Indices argmax_rows(const Tensor& logits) {
  const Tensor host = logits.cpu();
  const int64_t rows = logits.size(0) * logits.size(1), V = logits.size(2);
  Indices out{Shape{logits.size(0), logits.size(1)},
              std::vector<int32_t>(static_cast<size_t>(rows))};
  dispatch(host.dtype(), [&]<class T>() {
    const T* x = host.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = x + r * V;
      int64_t best = 0;
      for (int64_t k = 1; k < V; ++k)
        if (row[k] > row[best]) best = k;
      out.values[static_cast<size_t>(r)] = static_cast<int32_t>(best);
    }
  });
  return out;
}

double logits_accuracy(const char* fn, const Tensor& logits, const Batch& batch, int64_t lead) {
  check_batch(fn, "logits", logits, batch, true);
  return windowed_accuracy(fn, argmax_rows(logits), batch, lead);
}

double predictions_accuracy(const char* fn, const Tensor& predictions, const Batch& batch,
                            int64_t lead, bool whole = false) {
  check_batch(fn, "predictions", predictions, batch, false);
  return windowed_accuracy(fn, to_indices(fn, "predictions", predictions.cpu()), batch, lead,
                           whole);
}

}  // namespace

double copy_accuracy(const Tensor& logits, const Batch& batch) {
  return logits_accuracy("copy_accuracy", logits, batch, 0);
}

double reference_accuracy(const Tensor& logits, const Batch& batch) {
  return logits_accuracy("reference_accuracy", logits, batch, 1);
}

double copy_accuracy_of(const Tensor& predictions, const Batch& batch) {
  return predictions_accuracy("copy_accuracy_of", predictions, batch, 0);
}

double reference_accuracy_of(const Tensor& predictions, const Batch& batch) {
  return predictions_accuracy("reference_accuracy_of", predictions, batch, 1);
}

double copied_words_of(const Tensor& predictions, const Batch& batch) {
  return predictions_accuracy("copied_words_of", predictions, batch, 0, /*whole=*/true);
}

}  // namespace polyak
