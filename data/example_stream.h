// The random stream of one generated example (ListOps, Pathfinder): every example draws from a
// Generator of its own, keyed by a hash of (seed, task, split) and its index, so that example
// i is the same whoever asks for it, in any order, from any thread.
#pragma once

#include <array>
#include <cstdint>

#include "polyak/core/rng.h"

namespace polyak::detail {

// The SplitMix64 finalizer: a bijective mix whose outputs for nearby inputs look unrelated.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Uniform 32-bit words of a Generator, 64 at a time (16 Philox blocks through fill_blocks):
// the draws of one example come from its own generator in a fixed order, so they are a pure
// function of the example's key.
class Words {
 public:
  explicit Words(Generator& gen) : gen_(gen) {}
  uint32_t next() {
    if (pos_ == buf_.size()) {
      gen_.fill_blocks(gen_.advance(16), 16, buf_.data());
      pos_ = 0;
    }
    return buf_[pos_++];
  }
  double uniform() { return next() * 0x1p-32; }  // [0, 1)
  // Uniform in [0, n) (the multiply-shift map; its bias, below n / 2³², does not matter here).
  int32_t below(int32_t n) {
    return static_cast<int32_t>((uint64_t{next()} * static_cast<uint64_t>(n)) >> 32);
  }

 private:
  Generator& gen_;
  std::array<uint32_t, 64> buf_{};
  size_t pos_ = 64;
};

}  // namespace polyak::detail
