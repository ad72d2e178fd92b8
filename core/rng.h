// Counter-based random numbers (Philox 4x32-10, Salmon et al. 2011).
//
// A Generator is a (seed, offset) pair: the n-th 32-bit draw of a stream is a pure
// function of (seed, n), so CPU and GPU kernels produce the same stream and any element
// can be generated independently (parallel dropout masks, reproducible init).
#pragma once

#include <array>
#include <cstdint>

namespace polyak {

// One Philox4x32-10 block: four 32-bit words for (counter, key).
std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  // Offset of the next unused block of four 32-bit words.
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }
  // Reserves `blocks` blocks and returns the offset of the first.
  uint64_t advance(uint64_t blocks) {
    uint64_t first = offset_;
    offset_ += blocks;
    return first;
  }
  // Four uniform 32-bit words of block `block`.
  std::array<uint32_t, 4> block(uint64_t block) const;
  // The words of blocks [first, first + count) into out[0 .. 4·count), word j of block b at
  // out[4·(b − first) + j]: the same values as block(), 16 or 8 blocks at a time with
  // AVX-512 or AVX2 (core/philox_isa.cpp).
  void fill_blocks(uint64_t first, int64_t count, uint32_t* out) const;
  // Convenience draws that advance the generator by one block.
  double uniform();              // [0, 1)
  double normal();               // standard normal
  uint64_t integer(uint64_t n);  // uniform in [0, n)

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// Uniform (0, 1] float from a 32-bit word (never 0, safe for log).
inline double uint_to_unit(uint32_t x) {
  return (static_cast<double>(x) + 1.0) * (1.0 / 4294967296.0);
}

}  // namespace polyak
