// Philox 4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011). Ten rounds of two 32×32→64-bit multiplies with a Weyl-sequence key schedule.
#include "polyak/core/rng.h"

#include <cmath>

#include "polyak/core/cpu.h"
#include "polyak/core/philox.h"

namespace polyak {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kPhiloxMul0) * c[0];
    uint64_t p1 = static_cast<uint64_t>(kPhiloxMul1) * c[2];
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kPhiloxWeyl0;
    k[1] += kPhiloxWeyl1;
  }
  return c;
}

std::array<uint32_t, 4> Generator::block(uint64_t b) const {
  return philox4x32({static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), 0u, 0u},
                    {static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32)});
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
