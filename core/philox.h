// Philox 4x32-10 constants and the block-filling kernel, compiled once per ISA
// (core/philox_isa.cpp; internal to core/).
#pragma once

#include <cstdint>

#include "polyak/core/cpu.h"

namespace polyak {

constexpr uint32_t kPhiloxMul0 = 0xD2511F53u, kPhiloxMul1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxWeyl0 = 0x9E3779B9u, kPhiloxWeyl1 = 0xBB67AE85u;

// out[4·(b − first) + j] = word j of Philox block b under key `seed`, b in [first, first +
// count): what Generator::fill_blocks returns.
#define POLYAK_PHILOX_FILL(isa) \
  void philox_fill(IsaTag<Isa::isa>, uint64_t seed, uint64_t first, int64_t count, uint32_t* out);
POLYAK_FOR_EACH_ISA(POLYAK_PHILOX_FILL)
#undef POLYAK_PHILOX_FILL

}  // namespace polyak
