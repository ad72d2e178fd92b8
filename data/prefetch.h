// Background prefetching: a worker thread produces items ahead of the consumer, so that
// loading and batching data overlap a training step instead of stalling it.
//
//   worker     produce() produce() produce() …    (one thread, in order; blocks while the
//                 ↓         ↓         ↓           queue holds `depth` items)
//   queue      [ item₀  item₁  … ]                  at most `depth` items
//                 ↓
//   consumer   next() → item₀, next() → item₁, …    (blocks while the queue is empty)
//
// produce() is called sequentially on one thread, so a producer that draws from a Generator
// yields exactly the sequence it would yield called inline: prefetching changes when items
// are made, never which. An exception thrown by produce() ends production; the items made
// before it are still delivered, and the next() that reaches it rethrows it (every later
// next() too). The destructor stops the worker and joins it, also while the worker waits on
// a full queue; it waits for a produce() call in progress to return.
//
// stats() reports the throughput, e.g. "data: X items/s produced, consumer waited Y s":
// a consumer that waits little is never stalled by its data.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "polyak/core/error.h"

namespace polyak {

struct PrefetchStats {
  int64_t produced = 0;        // items produce() has returned
  int64_t consumed = 0;        // items next() has returned
  double produce_seconds = 0;  // time spent inside produce()
  double wait_seconds = 0;     // time the consumer spent blocked in next()

  // The producer's rate while it works: produced / produce_seconds (0 before any item).
  double items_per_second() const {
    return produce_seconds > 0 ? static_cast<double>(produced) / produce_seconds : 0.0;
  }
};

template <class T>
class Prefetcher {
 public:
  // Starts the worker; it keeps up to `depth` (≥ 1) items ready.
  Prefetcher(std::function<T()> produce, int64_t depth = 2)
      : produce_(std::move(produce)), depth_(depth) {
    POLYAK_CHECK(depth >= 1, "Prefetcher: depth = ", depth, ", expected >= 1");
    POLYAK_CHECK(static_cast<bool>(produce_), "Prefetcher: no produce function");
    worker_ = std::thread([this] { run(); });
  }

  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    space_.notify_all();
    worker_.join();
  }

  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // The next item in production order; rethrows produce()'s exception once the items
  // made before it are taken.
  T next() {
    const auto start = Clock::now();
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return !queue_.empty() || error_; });
    stats_.wait_seconds += seconds_since(start);
    if (queue_.empty()) std::rethrow_exception(error_);
    T item = std::move(queue_.front());
    queue_.pop_front();
    ++stats_.consumed;
    lock.unlock();
    space_.notify_one();
    return item;
  }

  PrefetchStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  int64_t depth() const { return depth_; }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  void run() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        space_.wait(lock, [this] { return stop_ || static_cast<int64_t>(queue_.size()) < depth_; });
        if (stop_) return;
      }
      // produce() runs unlocked: the consumer takes ready items meanwhile.
      const auto start = Clock::now();
      try {
        T item = produce_();
        const double took = seconds_since(start);
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(item));
        ++stats_.produced;
        stats_.produce_seconds += took;
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = std::current_exception();
        stats_.produce_seconds += seconds_since(start);
        ready_.notify_all();
        return;
      }
      ready_.notify_one();
    }
  }

  std::function<T()> produce_;
  const int64_t depth_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;  // an item or the error is there
  std::condition_variable space_;  // the queue has room, or stop
  std::deque<T> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  PrefetchStats stats_;
  std::thread worker_;  // last: it starts once everything above exists
};

}  // namespace polyak
