// Philox 4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011). Ten rounds of two 32×32→64-bit multiplies with a Weyl-sequence key schedule.
#include "polyak/core/rng.h"

#include <cmath>

#include "polyak/core/cpu.h"
#include "polyak/core/philox.h"

namespace polyak {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  philox_rounds(c.data(), k[0], k[1]);
  return c;
}

std::array<uint32_t, 4> Generator::block(uint64_t b) const {
  std::array<uint32_t, 4> w;
  philox_block(seed_, b, w.data());
  return w;
}

void Generator::fill_blocks(uint64_t first, int64_t count, uint32_t* out) const {
  with_active_isa([&](auto isa) { philox_fill(isa, seed_, first, count, out); });
}

double Generator::uniform() {
  return uint_to_unit(block(advance(1))[0]) - 1.0 / 4294967296.0;
}

double Generator::normal() {
  auto w = block(advance(1));
  double u1 = uint_to_unit(w[0]), u2 = uint_to_unit(w[1]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

uint64_t Generator::integer(uint64_t n) {
  auto w = block(advance(1));
  uint64_t x = (static_cast<uint64_t>(w[0]) << 32) | w[1];
  return n == 0 ? 0 : x % n;
}

}  // namespace polyak
