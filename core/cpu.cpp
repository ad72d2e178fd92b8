// CPU features from cpuid and xgetbv, the ISA the kernels use, and cache sizes.
#include "polyak/core/cpu.h"

#include <cpuid.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>

#include "polyak/core/error.h"

namespace polyak {
namespace {

struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned subleaf = 0) {
  Regs r;
  if (!__get_cpuid_count(leaf, subleaf, &r.a, &r.b, &r.c, &r.d)) r = Regs{};
  return r;
}

unsigned max_leaf(unsigned base) {
  return __get_cpuid_max(base, nullptr);
}

// The register state the operating system saves on a context switch (XCR0).
uint64_t xcr0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}

bool bit(unsigned reg, int n) {
  return (reg >> n) & 1u;
}

// Every feature a -march level lets the compiler use (GCC's x86-64-v2/v3/v4 definitions),
// and the OS's saving of the registers they need.
Isa detect_widest() {
  if (max_leaf(0) < 1) return Isa::baseline;
  const Regs l1 = cpuid(1);
  const Regs l7 = max_leaf(0) >= 7 ? cpuid(7, 0) : Regs{};
  const Regs e1 = max_leaf(0x80000000) >= 0x80000001 ? cpuid(0x80000001) : Regs{};
  const bool v2 = bit(l1.c, 0) && bit(l1.c, 9) && bit(l1.c, 13) && bit(l1.c, 19) && bit(l1.c, 20) &&
                  bit(l1.c, 23) && bit(e1.c, 0);  // SSE3 … POPCNT, LAHF
  const bool osxsave = bit(l1.c, 27);
  const uint64_t xcr = osxsave ? xcr0() : 0;
  const bool os_ymm = (xcr & 0x6) == 0x6;    // XMM and YMM state
  const bool os_zmm = (xcr & 0xE6) == 0xE6;  // and opmask, ZMM_Hi256, Hi16_ZMM
  const bool v3 =
      v2 && os_ymm && bit(l1.c, 28) && bit(l1.c, 12) && bit(l1.c, 29) &&  // AVX FMA F16C
      bit(l1.c, 22) && bit(l7.b, 3) && bit(l7.b, 5) && bit(l7.b, 8) &&    // MOVBE BMI1 AVX2 BMI2
      bit(e1.c, 5);                                                       // LZCNT
  const bool v4 = v3 && os_zmm && bit(l7.b, 16) && bit(l7.b, 17) && bit(l7.b, 28) &&  // F DQ CD
                  bit(l7.b, 30) && bit(l7.b, 31);                                     // BW VL
  return v4 ? Isa::avx512 : v3 ? Isa::avx2 : Isa::baseline;
}

Isa widest_isa() {
  static const Isa widest = detect_widest();
  return widest;
}

// "baseline, avx2": the ISAs up to `widest`.
std::string list_up_to(Isa widest) {
  std::string out;
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512})
    if (isa <= widest) out += (out.empty() ? "" : ", ") + std::string(isa_name(isa));
  return out;
}

Isa choose_isa() {
  return detail::isa_from_env(std::getenv("POLYAK_ISA"), widest_isa(), cpu_model());
}

int64_t sysconf_bytes(int name) {
  const long v = sysconf(name);
  return v > 0 ? v : 0;
}

}  // namespace

namespace detail {

Isa isa_from_env(const char* value, Isa widest, const std::string& cpu) {
  if (!value || !*value) return widest;
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512}) {
    if (std::strcmp(value, isa_name(isa)) != 0) continue;
    POLYAK_CHECK(isa <= widest, "POLYAK_ISA: '", value, "' is not supported by this CPU",
                 cpu.empty() ? "" : " (" + cpu + ")", "; it supports ", list_up_to(widest),
                 ": unset POLYAK_ISA or choose one of those");
    return isa;
  }
  fail("POLYAK_ISA: unknown value '", value, "', expected baseline, avx2 or avx512 (this CPU ",
       "supports ", list_up_to(widest), ")");
}

}  // namespace detail

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::baseline:
      break;
  }
  return "baseline";
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512})
    if (isa <= widest_isa()) out.push_back(isa);
  return out;
}

Isa active_isa() {
  static const Isa active = choose_isa();
  return active;
}

std::string cpu_model() {
  if (max_leaf(0x80000000) < 0x80000004) return "";
  std::array<char, 49> brand{};
  for (unsigned i = 0; i < 3; ++i) {
    const Regs r = cpuid(0x80000002 + i);
    std::memcpy(brand.data() + 16 * i, &r.a, 4);
    std::memcpy(brand.data() + 16 * i + 4, &r.b, 4);
    std::memcpy(brand.data() + 16 * i + 8, &r.c, 4);
    std::memcpy(brand.data() + 16 * i + 12, &r.d, 4);
  }
  std::string s(brand.data());
  const auto first = s.find_first_not_of(' ');
  const auto last = s.find_last_not_of(' ');
  return first == std::string::npos ? "" : s.substr(first, last - first + 1);
}

CacheSizes cache_sizes() {
  CacheSizes c;
  c.l1d = sysconf_bytes(_SC_LEVEL1_DCACHE_SIZE);
  c.l2 = sysconf_bytes(_SC_LEVEL2_CACHE_SIZE);
  c.l3 = sysconf_bytes(_SC_LEVEL3_CACHE_SIZE);
  return c;
}

}  // namespace polyak
