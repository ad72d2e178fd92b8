// Classification sequences: gather_batch's padding and checks, EpochSampler's epochs,
// resumption and batch counts.
#include <algorithm>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "fake_device.h"
#include "polyak/data/sequences.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::host_ids;

namespace {

// A dataset of listed examples with stated limits; its examples may break them on purpose.
class ListDataset : public SequenceDataset {
 public:
  ListDataset(std::vector<Example> examples, int64_t max_length, int64_t vocab, int64_t classes)
      : examples_(std::move(examples)), max_length_(max_length), vocab_(vocab), classes_(classes) {}
  std::string name() const override { return "list/test"; }
  int64_t size() const override { return static_cast<int64_t>(examples_.size()); }
  int64_t max_length() const override { return max_length_; }
  int64_t vocab() const override { return vocab_; }
  int64_t classes() const override { return classes_; }
  Example example(int64_t index) const override { return examples_[static_cast<size_t>(index)]; }

 private:
  std::vector<Example> examples_;
  int64_t max_length_, vocab_, classes_;
};

ListDataset small_dataset() {
  return ListDataset({{{1, 2, 3}, 0}, {{4}, 2}, {{4, 3, 2, 1, 0}, 1}, {{2, 2}, 2}}, 6, 5, 3);
}

std::vector<int64_t> sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

}  // namespace

TEST_CASE("gather_batch pads every row to the longest and records the lengths") {
  const ListDataset data = small_dataset();
  const ClassBatch b = gather_batch(data, {2, 0, 1});
  CHECK(b.tokens.shape() == Shape{3, 5});
  CHECK(b.tokens.dtype() == DType::i64);
  CHECK(host_ids(b.tokens).values == std::vector<int32_t>{4, 3, 2, 1, 0,  //
                                                          1, 2, 3, 0, 0,  //
                                                          4, 0, 0, 0, 0});
  CHECK(b.labels.shape() == Shape{3});
  CHECK(b.labels.dtype() == DType::i64);
  CHECK(host_ids(b.labels).values == std::vector<int32_t>{1, 0, 2});
  CHECK(b.lengths == std::vector<int64_t>{5, 3, 1});

  SUBCASE("pad_to longer than the longest pads to pad_to, shorter is ignored") {
    const ClassBatch wide = gather_batch(data, {1, 3}, 4);
    CHECK(wide.tokens.shape() == Shape{2, 4});
    CHECK(host_ids(wide.tokens).values == std::vector<int32_t>{4, 0, 0, 0, 2, 2, 0, 0});
    CHECK(wide.lengths == std::vector<int64_t>{1, 2});
    CHECK(gather_batch(data, {2}, 3).tokens.shape() == Shape{1, 5});
  }
  SUBCASE("an index may repeat") {
    const ClassBatch twice = gather_batch(data, {3, 3});
    CHECK(host_ids(twice.tokens).values == std::vector<int32_t>{2, 2, 2, 2});
  }
  SUBCASE("to(device) moves the tensors and keeps the lengths") {
    const Device dev = polyak::testing::fake_device();
    const ClassBatch moved = b.to(dev);
    CHECK(moved.tokens.device() == dev);
    CHECK(moved.labels.device() == dev);
    CHECK(moved.lengths == b.lengths);
    CHECK(host_ids(moved.tokens.cpu()).values == host_ids(b.tokens).values);
  }
}

TEST_CASE("gather_batch: bad indices and examples that break the dataset's limits throw") {
  const ListDataset data = small_dataset();
  check_error([&] { gather_batch(data, {}); }, {"gather_batch", "list/test", "no indices"});
  check_error([&] { gather_batch(data, {0, 4}); }, {"gather_batch", "list/test", "index 4", "< 4"});
  check_error([&] { gather_batch(data, {-1}); }, {"gather_batch", "index -1"});

  const ListDataset bad({{{1, 2}, 0},        // fine
                         {{}, 0},            // no tokens
                         {{1, 2, 3, 4}, 0},  // longer than max_length 3
                         {{1, 7}, 0},        // token 7, vocab 5
                         {{1}, 3},           // label 3, classes 3
                         {{-1}, 0},          // a negative token
                         {{1}, -2}},         // a negative label
                        3, 5, 3);
  CHECK(gather_batch(bad, {0}).lengths == std::vector<int64_t>{2});
  check_error(
      [&] {
        gather_batch(bad, {0, 1});
      },
      {"gather_batch", "example 1", "has 0 tokens", "expected 1 to 3"});
  check_error([&] { gather_batch(bad, {2}); }, {"example 2", "has 4 tokens", "1 to 3"});
  check_error([&] { gather_batch(bad, {3}); }, {"example 3", "holds token 7", "0 to 4"});
  check_error([&] { gather_batch(bad, {4}); }, {"example 4", "has label 3", "0 to 2"});
  check_error([&] { gather_batch(bad, {5}); }, {"example 5", "holds token -1"});
  check_error([&] { gather_batch(bad, {6}); }, {"example 6", "has label -2"});
}

TEST_CASE("EpochSampler: every epoch is a permutation, epochs differ, seeds differ") {
  EpochSampler sampler(12, 4, 7);
  CHECK(sampler.batches_per_epoch() == 3);
  std::vector<std::vector<int64_t>> epochs;
  for (int e = 0; e < 5; ++e) {
    CAPTURE(e);
    std::vector<int64_t> order;
    for (int k = 0; k < 3; ++k) {
      const std::vector<int64_t> batch = sampler.next();
      // The position moves on to the next epoch when its first batch is taken.
      CHECK(sampler.epoch() == e);
      CHECK(sampler.position() == k + 1);
      CHECK(batch.size() == 4);
      order.insert(order.end(), batch.begin(), batch.end());
    }
    CHECK(sorted(order) == iota(12));
    for (const auto& earlier : epochs) CHECK(order != earlier);
    epochs.push_back(order);
    CHECK(epochs.back() != iota(12));  // shuffled (1 in 12! to fail by chance)
  }
  EpochSampler same(12, 4, 7), other(12, 4, 8);
  std::vector<int64_t> a, c;
  for (int k = 0; k < 3; ++k) {
    const auto x = same.next(), y = other.next();
    a.insert(a.end(), x.begin(), x.end());
    c.insert(c.end(), y.begin(), y.end());
  }
  CHECK(a == epochs[0]);
  CHECK(c != epochs[0]);
}

TEST_CASE("EpochSampler: orders are spread evenly over the indices") {
  // The first index of 3000 epochs over 10 items: each index about 300 times.
  EpochSampler sampler(10, 10, 1);
  std::map<int64_t, int> first;
  for (int e = 0; e < 3000; ++e) ++first[sampler.next()[0]];
  REQUIRE(first.size() == 10);
  for (const auto& [index, count] : first) {
    CAPTURE(index);
    CHECK(count > 220);
    CHECK(count < 380);
  }
}

TEST_CASE("EpochSampler: seek continues exactly like a sampler that took those batches") {
  for (bool drop_last : {true, false}) {
    CAPTURE(drop_last);
    EpochSampler run(10, 3, 99, drop_last);
    const int64_t per_epoch = run.batches_per_epoch();
    for (int taken = 0; taken < 12; ++taken) {
      CAPTURE(taken);
      EpochSampler resumed(10, 3, 99, drop_last);
      resumed.seek(run.epoch(), run.position());
      EpochSampler ahead = run;  // the original continues from a copy
      for (int k = 0; k < 2 * per_epoch + 1; ++k) CHECK(resumed.next() == ahead.next());
      run.next();
    }
    // The end of an epoch (position == batches_per_epoch) goes on to the next epoch.
    EpochSampler end(10, 3, 99, drop_last), start(10, 3, 99, drop_last);
    end.seek(2, per_epoch);
    start.seek(3, 0);
    CHECK(end.next() == start.next());
    CHECK(end.epoch() == 3);
  }
}

TEST_CASE("EpochSampler: drop_last decides the short last batch") {
  EpochSampler drop(10, 3, 5, true), keep(10, 3, 5, false);
  CHECK(drop.batches_per_epoch() == 3);
  CHECK(keep.batches_per_epoch() == 4);
  std::vector<int64_t> kept, dropped;
  for (int k = 0; k < 4; ++k) {
    const std::vector<int64_t> batch = keep.next();
    CHECK(batch.size() == (k < 3 ? 3u : 1u));
    kept.insert(kept.end(), batch.begin(), batch.end());
  }
  CHECK(sorted(kept) == iota(10));
  for (int k = 0; k < 3; ++k) {
    const std::vector<int64_t> batch = drop.next();
    dropped.insert(dropped.end(), batch.begin(), batch.end());
  }
  CHECK(dropped.size() == 9);
  CHECK(std::set<int64_t>(dropped.begin(), dropped.end()).size() == 9);
  CHECK(dropped == std::vector<int64_t>(kept.begin(), kept.begin() + 9));  // one order
  CHECK(drop.next().size() == 3);                                          // the next epoch starts
  CHECK(drop.epoch() == 1);
  // Exact multiples agree, and a batch larger than the data is one short batch.
  CHECK(EpochSampler(12, 4, 0, false).batches_per_epoch() == 3);
  EpochSampler big(3, 8, 0, false);
  CHECK(big.batches_per_epoch() == 1);
  CHECK(sorted(big.next()) == iota(3));
}

TEST_CASE("EpochSampler: bad arguments throw") {
  check_error([] { EpochSampler(0, 2, 0); }, {"EpochSampler", "size = 0", "> 0"});
  check_error([] { EpochSampler(5, 0, 0); }, {"EpochSampler", "batch = 0", "> 0"});
  check_error([] { EpochSampler(5, 6, 0, true); }, {"EpochSampler", "batch = 6", "5 examples"});
  EpochSampler sampler(10, 3, 0);
  check_error([&] { sampler.seek(-1, 0); }, {"EpochSampler::seek", "epoch -1"});
  check_error([&] { sampler.seek(0, 4); }, {"EpochSampler::seek", "position 4", "3"});
  check_error([&] { sampler.seek(0, -1); }, {"EpochSampler::seek", "position -1"});
}
