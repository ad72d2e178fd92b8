// Philox 4x32-10 constants, the rounds of one block (for the host and for device kernels,
// cuda/kernels/random.h) and the block-filling kernel, compiled once per ISA
// (core/philox_isa.cpp; internal to core/ and the kernels).
#pragma once

#include <cstdint>

#include "polyak/core/cpu.h"
#include "polyak/core/hd.h"

namespace polyak {

constexpr uint32_t kPhiloxMul0 = 0xD2511F53u, kPhiloxMul1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxWeyl0 = 0x9E3779B9u, kPhiloxWeyl1 = 0xBB67AE85u;

// c = Philox4x32-10(c, key): the ten rounds on one counter, in place.
POLYAK_HD inline void philox_rounds(uint32_t c[4], uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxMul0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxMul1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t c1 = c[1], c3 = c[3];
    c[0] = hi1 ^ c1 ^ k0;
    c[1] = lo1;
    c[2] = hi0 ^ c3 ^ k1;
    c[3] = lo0;
    k0 += kPhiloxWeyl0;
    k1 += kPhiloxWeyl1;
  }
}

// w = the four words of block `block` of the stream of `seed`: Generator::block().
POLYAK_HD inline void philox_block(uint64_t seed, uint64_t block, uint32_t w[4]) {
  w[0] = static_cast<uint32_t>(block);
  w[1] = static_cast<uint32_t>(block >> 32);
  w[2] = 0u;
  w[3] = 0u;
  philox_rounds(w, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// out[4·(b − first) + j] = word j of Philox block b under key `seed`, b in [first, first +
// count): what Generator::fill_blocks returns.
#define POLYAK_PHILOX_FILL(isa) \
  void philox_fill(IsaTag<Isa::isa>, uint64_t seed, uint64_t first, int64_t count, uint32_t* out);
POLYAK_FOR_EACH_ISA(POLYAK_PHILOX_FILL)
#undef POLYAK_PHILOX_FILL

}  // namespace polyak
