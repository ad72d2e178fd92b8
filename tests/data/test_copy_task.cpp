// The copy task: sequence layout, targets, mask, reproducibility, accuracies, bad options.
#include <set>

#include "fake_device.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::host_ids;
using polyak::testing::ids;

namespace {

// Checks every row of `b` against the layout of copy_task.h, word by word.
void check_structure(const CopyTask& task, const Batch& b, int64_t B) {
  const int64_t L = task.length();
  REQUIRE(b.tokens.shape() == Shape{B, L});
  REQUIRE(b.targets.shape() == Shape{B, L});
  REQUIRE(b.tokens.dtype() == DType::i64);
  REQUIRE(b.targets.dtype() == DType::i64);
  const Indices tokens = host_ids(b.tokens), targets = host_ids(b.targets);
  REQUIRE(b.mask.shape() == Shape{B, L});
  REQUIRE(b.mask.dtype() == DType::f32);
  REQUIRE(static_cast<int64_t>(b.word_lengths.size()) == B);
  std::vector<double> mask = b.mask.to_vector();
  for (int64_t r = 0; r < B; ++r) {
    CAPTURE(r);
    const int64_t n = b.word_lengths[static_cast<size_t>(r)];
    CHECK(n >= task.min_word());
    CHECK(n < task.max_word());
    auto tok = [&](int64_t t) { return tokens[r * L + t]; };
    for (int64_t t = 0; t < n; ++t) {
      CHECK(tok(t) >= 1);
      CHECK(tok(t) <= task.symbols());
      CHECK(tok(n + 1 + t) == tok(t));  // w 0 w
    }
    CHECK(tok(n) == 0);
    for (int64_t t = 2 * n + 1; t < L; ++t) CHECK(tok(t) == 0);  // padding
    for (int64_t t = 0; t + 1 < L; ++t) CHECK(targets[r * L + t] == tok(t + 1));
    CHECK(targets[r * L + L - 1] == 0);
    int64_t ones = 0;
    for (int64_t t = 0; t < L; ++t) {
      const double m = mask[static_cast<size_t>(r * L + t)];
      CHECK((m == 0.0 || m == 1.0));
      if (m == 1.0) {
        ++ones;
        CHECK(t >= n);
        CHECK(t <= 2 * n - 1);
        // A masked target is a token of the copied word, never the separator or padding.
        CHECK(targets[r * L + t] == tok(t - n));
      }
    }
    CHECK(ones == n);
  }
}

// Logits [B, L, V] whose argmax at every position is `pick(row, t)`.
Tensor logits_with_argmax(int64_t B, int64_t L, int64_t V,
                          const std::function<int32_t(int64_t, int64_t)>& pick) {
  std::vector<double> x(static_cast<size_t>(B * L * V), 0.0);
  for (int64_t r = 0; r < B; ++r) {
    for (int64_t t = 0; t < L; ++t) {
      for (int64_t k = 0; k < V; ++k) x[static_cast<size_t>((r * L + t) * V + k)] = -0.1 * k;
      x[static_cast<size_t>((r * L + t) * V + pick(r, t))] = 5.0;
    }
  }
  return Tensor::from(x, Shape{B, L, V}, DType::f32);
}

}  // namespace

TEST_CASE("CopyTask: defaults follow the reference protocol") {
  CopyTask task;
  CHECK(task.length() == 128);
  CHECK(task.min_word() == 32);
  CHECK(task.max_word() == 63);
  CHECK(task.symbols() == 10);
  CHECK(task.vocab() == 11);
  CopyTask small({.length = 20});
  CHECK(small.min_word() == 5);
  CHECK(small.max_word() == 9);
}

TEST_CASE("CopyTask: every sequence is w 0 w 0…, with shifted targets and an n-wide mask") {
  SUBCASE("default length") {
    CopyTask task({.seed = 3});
    for (int i = 0; i < 3; ++i) check_structure(task, task.batch(16), 16);
  }
  SUBCASE("short sequences, few symbols") {
    CopyTask task({.length = 9, .min_word = 1, .max_word = 5, .symbols = 2, .seed = 11});
    Batch b = task.batch(200);
    check_structure(task, b, 200);
    // Every word length in [1, 5) and both symbols occur.
    std::set<int> lengths(b.word_lengths.begin(), b.word_lengths.end());
    CHECK(lengths == std::set<int>{1, 2, 3, 4});
    const Indices tokens = host_ids(b.tokens);
    std::set<int32_t> symbols(tokens.values.begin(), tokens.values.end());
    CHECK(symbols == std::set<int32_t>{0, 1, 2});
  }
  SUBCASE("the longest word that fits exactly") {
    // L = 7: n = 3 gives 'w 0 w' of length 7, no padding; the last target is 0.
    CopyTask task({.length = 7, .min_word = 3, .max_word = 4, .seed = 5});
    Batch b = task.batch(4);
    check_structure(task, b, 4);
  }
}

TEST_CASE("CopyTask: the same seed gives the same batches, other seeds differ") {
  CopyTask a({.seed = 42}), b({.seed = 42}), c({.seed = 43});
  Batch a1 = a.batch(8), a2 = a.batch(8);
  Batch b1 = b.batch(8), b2 = b.batch(8);
  Batch c1 = c.batch(8);
  CHECK(host_ids(a1.tokens).values == host_ids(b1.tokens).values);
  CHECK(host_ids(a2.tokens).values == host_ids(b2.tokens).values);
  CHECK(a1.word_lengths == b1.word_lengths);
  CHECK(a1.mask.to_vector() == b1.mask.to_vector());
  CHECK(host_ids(a1.tokens).values != host_ids(a2.tokens).values);  // the stream advances
  CHECK(host_ids(a1.tokens).values != host_ids(c1.tokens).values);  // another seed, another stream

  // Resuming from a saved generator position reproduces the next batch.
  CopyTask d({.seed = 42});
  d.batch(8);
  const uint64_t offset = d.generator().offset();
  Batch d2 = d.batch(8);
  CopyTask e({.seed = 42});
  e.generator().set_offset(offset);
  CHECK(host_ids(e.batch(8).tokens).values == host_ids(d2.tokens).values);
}

TEST_CASE("Batch::to moves the tensors and keeps the word lengths") {
  CopyTask task({.length = 12, .min_word = 2, .max_word = 5, .seed = 4});
  const Batch b = task.batch(3);
  const Device dev = polyak::testing::fake_device();
  const Batch moved = b.to(dev);
  for (const Tensor* t : {&moved.tokens, &moved.targets, &moved.mask}) CHECK(t->device() == dev);
  CHECK(moved.word_lengths == b.word_lengths);
  CHECK(host_ids(moved.tokens).values == host_ids(b.tokens).values);
  CHECK(moved.targets.cpu().to_vector() == b.targets.to_vector());
  CHECK(moved.mask.cpu().to_vector() == b.mask.to_vector());
  CHECK(moved.tokens.dtype() == DType::i64);
}

TEST_CASE("CopyTask: word lengths and symbols are spread over their ranges") {
  CopyTask task({.seed = 9});
  Batch b = task.batch(2000);
  std::vector<int> length_count(64, 0);
  for (int n : b.word_lengths) ++length_count[static_cast<size_t>(n)];
  for (int n = 32; n < 63; ++n) {
    CAPTURE(n);
    CHECK(length_count[static_cast<size_t>(n)] > 20);  // expected 2000/31 ≈ 65
  }
  std::vector<int> symbol_count(11, 0);
  for (int32_t v : host_ids(b.tokens).values) ++symbol_count[static_cast<size_t>(v)];
  int64_t symbols = 0;
  for (int s = 1; s <= 10; ++s) symbols += symbol_count[static_cast<size_t>(s)];
  for (int s = 1; s <= 10; ++s) {
    CAPTURE(s);
    const double share =
        static_cast<double>(symbol_count[static_cast<size_t>(s)]) / static_cast<double>(symbols);
    CHECK(share == doctest::Approx(0.1).epsilon(0.1));
  }
}

TEST_CASE("copy_accuracy and reference_accuracy on hand-built logits") {
  CopyTask task({.length = 12, .min_word = 2, .max_word = 5, .seed = 1});
  Batch b = task.batch(6);
  const int64_t B = 6, L = 12, V = task.vocab();
  int64_t total_n = 0;
  for (int n : b.word_lengths) total_n += n;
  const Indices targets = host_ids(b.targets);

  SUBCASE("perfect predictions everywhere") {
    Tensor logits =
        logits_with_argmax(B, L, V, [&](int64_t r, int64_t t) { return targets[r * L + t]; });
    CHECK(copy_accuracy(logits, b) == 1.0);
    CHECK(reference_accuracy(logits, b) == 1.0);
  }
  SUBCASE("right on the copied word, wrong on the separator") {
    // The usual state of a trained model: the separator cannot be foreseen.
    Tensor logits = logits_with_argmax(B, L, V, [&](int64_t r, int64_t t) {
      const int64_t n = b.word_lengths[static_cast<size_t>(r)];
      return t == n - 1 ? 1 : targets[r * L + t];
    });
    CHECK(copy_accuracy(logits, b) == 1.0);
    CHECK(reference_accuracy(logits, b) ==
          doctest::Approx(static_cast<double>(total_n) / static_cast<double>(total_n + B)));
  }
  SUBCASE("the first copied token of each row wrong") {
    Tensor logits = logits_with_argmax(B, L, V, [&](int64_t r, int64_t t) {
      const int64_t n = b.word_lengths[static_cast<size_t>(r)];
      const int32_t target = targets[r * L + t];
      return t == n ? (target % 10) + 1 : target;  // another symbol
    });
    CHECK(copy_accuracy(logits, b) ==
          doctest::Approx(static_cast<double>(total_n - B) / static_cast<double>(total_n)));
    CHECK(reference_accuracy(logits, b) ==
          doctest::Approx(static_cast<double>(total_n) / static_cast<double>(total_n + B)));
  }
  SUBCASE("wrong outside the windows does not count; f64 logits") {
    Tensor logits = logits_with_argmax(B, L, V, [&](int64_t r, int64_t t) {
      const int64_t n = b.word_lengths[static_cast<size_t>(r)];
      return t >= n - 1 && t < 2 * n ? targets[r * L + t] : 7;
    });
    CHECK(copy_accuracy(logits.to(DType::f64), b) == 1.0);
    CHECK(reference_accuracy(logits, b) == 1.0);
  }
  SUBCASE("a single hand-written row") {
    // n = 2, w = (3, 5): tokens 3 5 0 3 5 0 …, targets 5 0 3 5 0 …; the word window is
    // t ∈ {2, 3} (targets 3, 5), the reference window adds t = 1 (target 0).
    Batch one;
    one.tokens = ids(Shape{1, 6}, {3, 5, 0, 3, 5, 0});
    one.targets = ids(Shape{1, 6}, {5, 0, 3, 5, 0, 0});
    one.mask = Tensor::from(std::vector<double>{0, 0, 1, 1, 0, 0}, Shape{1, 6});
    one.word_lengths = {2};
    //          t:      0  1  2  3  4  5
    const int32_t pred[] = {5, 4, 3, 9, 0, 0};  // right at t = 2, wrong at t = 1 and t = 3
    Tensor logits = logits_with_argmax(1, 6, 11, [&](int64_t, int64_t t) { return pred[t]; });
    CHECK(copy_accuracy(logits, one) == 0.5);
    CHECK(reference_accuracy(logits, one) == doctest::Approx(1.0 / 3.0));
  }
}

TEST_CASE("CopyTask and the accuracies: bad options and arguments throw") {
  check_error([] { CopyTask({.length = 3}); }, {"CopyTask", "length", "3", ">= 4"});
  check_error([] { CopyTask({.symbols = 0}); }, {"CopyTask", "symbols", "0", ">= 1"});
  check_error([] { CopyTask({.min_word = 0}); }, {"CopyTask", "min_word", "0"});
  check_error([] { CopyTask({.min_word = 40, .max_word = 30}); },
              {"CopyTask", "max_word", "30", "min_word = 40"});
  check_error([] { CopyTask({.min_word = 10, .max_word = 10}); }, {"CopyTask", "max_word", "10"});
  check_error([] { CopyTask({.length = 16, .min_word = 4, .max_word = 10}); },
              {"CopyTask", "max_word", "10", "length = 16", "w 0 w"});
  check_error([] { CopyTask({.length = 4}); }, {"CopyTask", "max_word", "1", "default"});
  CopyTask task({.length = 16});
  check_error([&] { task.batch(0); }, {"CopyTask::batch", "batch_size", "0"});
  check_error([&] { task.batch(-3); }, {"CopyTask::batch", "batch_size", "-3"});

  Batch b = task.batch(2);
  check_error(
      [&] {
        copy_accuracy(Tensor::zeros(Shape{2, 15, 11}), b);
      },
      {"copy_accuracy", "logits", "[2,15,11]", "[B, L, V]"});
  check_error(
      [&] {
        reference_accuracy(Tensor::zeros(Shape{2, 16}), b);
      },
      {"reference_accuracy", "logits"});
  check_error([&] { copy_accuracy(Tensor(), b); }, {"copy_accuracy", "logits"});
}

TEST_CASE("copied_words_of counts the words copied whole, per row") {
  CopyTask task({.length = 12, .min_word = 2, .max_word = 5, .seed = 3});
  const Batch b = task.batch(5);
  const int64_t B = 5, L = 12;
  const Indices targets = host_ids(b.targets);
  std::vector<int64_t> pred(static_cast<size_t>(B * L));
  for (int64_t i = 0; i < B * L; ++i) pred[static_cast<size_t>(i)] = targets[i];
  CHECK(copied_words_of(ids(Shape{B, L}, pred), b) == 1.0);
  // One wrong token in row 0's word, two in row 3's, one on row 1's separator (outside the
  // word): three of five words stay whole, while per token far fewer are lost.
  auto wrong = [&](int64_t r, int64_t t) {
    pred[static_cast<size_t>(r * L + t)] = (targets[r * L + t] % 9) + 1;
  };
  const int64_t n0 = b.word_lengths[0], n1 = b.word_lengths[1], n3 = b.word_lengths[3];
  wrong(0, n0);
  wrong(3, n3);
  wrong(3, 2 * n3 - 1);
  wrong(1, n1 - 1);
  const Tensor predicted = ids(Shape{B, L}, pred);
  CHECK(copied_words_of(predicted, b) == doctest::Approx(3.0 / 5.0));
  int64_t total_n = 0;
  for (int n : b.word_lengths) total_n += n;
  CHECK(copy_accuracy_of(predicted, b) ==
        doctest::Approx(static_cast<double>(total_n - 3) / static_cast<double>(total_n)));
  CHECK_THROWS_WITH_AS(
      copied_words_of(ids(Shape{B, L - 1}, std::vector<int64_t>(static_cast<size_t>(B * (L - 1)))),
                      b),
      doctest::Contains("copied_words_of: predictions"), Error);
}
