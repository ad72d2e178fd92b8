// The prefetch thread: order, exceptions, shutdown in every state, throughput counters.
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "polyak/data/copy_task.h"
#include "polyak/data/prefetch.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::host_ids;

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Polls `done` for up to 10 s; false if it never held.
template <class F>
bool eventually(F done) {
  const auto start = Clock::now();
  while (!done()) {
    if (seconds_since(start) > 10) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST_CASE("Prefetcher delivers exactly the sequence produce() gives inline") {
  for (int64_t depth : {1, 3, 16}) {
    CAPTURE(depth);
    Generator inline_gen(21), worker_gen(21);
    std::vector<uint64_t> expected;
    for (int i = 0; i < 500; ++i) expected.push_back(inline_gen.integer(1000000));
    Prefetcher<uint64_t> prefetch([&worker_gen] { return worker_gen.integer(1000000); }, depth);
    std::vector<uint64_t> got;
    for (int i = 0; i < 500; ++i) got.push_back(prefetch.next());
    CHECK(got == expected);
    CHECK(prefetch.depth() == depth);
  }
  // Whole batches, as a training loop uses it.
  CopyTask inline_task({.length = 16, .seed = 8}), worker_task({.length = 16, .seed = 8});
  Prefetcher<Batch> batches([&worker_task] { return worker_task.batch(4); }, 2);
  for (int step = 0; step < 20; ++step) {
    CAPTURE(step);
    const Batch want = inline_task.batch(4), got = batches.next();
    CHECK(host_ids(got.tokens).values == host_ids(want.tokens).values);
    CHECK(got.word_lengths == want.word_lengths);
  }
}

TEST_CASE("Prefetcher rethrows produce()'s exception after the items made before it") {
  SUBCASE("polyak::Error") {
    int calls = 0;
    Prefetcher<int> prefetch(
        [&calls] {
          const int i = calls++;
          if (i == 5) fail("produce: item ", i, " is broken");
          return i * 10;
        },
        3);
    for (int i = 0; i < 5; ++i) CHECK(prefetch.next() == i * 10);
    check_error([&] { prefetch.next(); }, {"produce: item 5 is broken"});
    // Production has ended: every later call says the same.
    check_error([&] { prefetch.next(); }, {"produce: item 5 is broken"});
    CHECK(calls == 6);
    CHECK(prefetch.stats().produced == 5);
    CHECK(prefetch.stats().consumed == 5);
  }
  SUBCASE("another exception type keeps its type") {
    Prefetcher<int> prefetch([]() -> int { throw std::out_of_range("no more data"); }, 1);
    CHECK_THROWS_WITH_AS(prefetch.next(), "no more data", std::out_of_range);
  }
}

TEST_CASE("Prefetcher shuts down cleanly in every state") {
  SUBCASE("the worker blocked on a full queue, next() never called") {
    std::atomic<int> calls = 0;
    auto prefetch = std::make_unique<Prefetcher<int>>([&calls] { return calls++; }, 2);
    REQUIRE(eventually([&] { return prefetch->stats().produced == 2; }));
    std::this_thread::sleep_for(30ms);
    CHECK(calls == 2);  // blocked: the queue holds `depth` items
    const auto start = Clock::now();
    prefetch.reset();
    CHECK(seconds_since(start) < 2.0);
    CHECK(calls == 2);
  }
  SUBCASE("immediately after construction, many times") {
    for (int i = 0; i < 200; ++i) {
      Prefetcher<std::vector<int>> prefetch([] { return std::vector<int>(100, 1); }, 1 + i % 4);
      if (i % 2) CHECK(prefetch.next().size() == 100);
    }
  }
  SUBCASE("during a slow produce(): the destructor waits for it, then stops") {
    std::atomic<int> started = 0;
    auto prefetch = std::make_unique<Prefetcher<int>>(
        [&started] {
          ++started;
          std::this_thread::sleep_for(200ms);
          return 1;
        },
        4);
    REQUIRE(eventually([&] { return started >= 1; }));
    prefetch.reset();
    CHECK(started == 1);  // no produce() call begins after the stop
  }
  SUBCASE("after produce() failed") {
    Prefetcher<int> prefetch([]() -> int { fail("broken source"); }, 2);
    REQUIRE(eventually([&] { return prefetch.stats().produce_seconds > 0; }));
  }
}

TEST_CASE("Prefetcher counts items and the time spent producing and waiting") {
  SUBCASE("a slow producer: the consumer waits") {
    Prefetcher<int> prefetch(
        [] {
          std::this_thread::sleep_for(5ms);
          return 1;
        },
        2);
    for (int i = 0; i < 20; ++i) prefetch.next();
    const PrefetchStats s = prefetch.stats();
    CHECK(s.consumed == 20);
    CHECK(s.produced >= 20);
    CHECK(s.produced <= 22);          // at most depth ahead
    CHECK(s.produce_seconds >= 0.1);  // 20 × 5 ms at least
    CHECK(s.wait_seconds > 0.05);     // nothing else to do than wait for ~0.1 s of production
    CHECK(s.items_per_second() > 0);
    CHECK(s.items_per_second() <= 200.0);  // 5 ms an item at best
  }
  SUBCASE("a fast producer: the consumer barely waits") {
    Prefetcher<int> prefetch([] { return 1; }, 4);
    std::this_thread::sleep_for(20ms);
    for (int i = 0; i < 20; ++i) {
      prefetch.next();
      std::this_thread::sleep_for(50ms);  // a training step
    }
    const PrefetchStats s = prefetch.stats();
    CHECK(s.consumed == 20);
    CHECK(s.wait_seconds < 0.5);  // out of 1 s of steps (loose: the machine may be busy)
    CHECK(s.items_per_second() > 100.0);
  }
  CHECK(PrefetchStats{}.items_per_second() == 0.0);
}

TEST_CASE("Prefetcher: bad arguments throw") {
  check_error([] { Prefetcher<int>([] { return 1; }, 0); }, {"Prefetcher", "depth = 0", ">= 1"});
  check_error([] { Prefetcher<int>(std::function<int()>(), 2); },
              {"Prefetcher", "no produce function"});
}
