// The CPU polyak runs on: which instruction sets its kernels may use, and its caches.
//
// The library is compiled for plain x86-64. The hot kernels are compiled once more per
// instruction set (cmake/isa.cmake) and chosen once, at their first call, from cpuid:
//
//   baseline  x86-64 (SSE2): every 64-bit x86 CPU
//   avx2      x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE (Haswell, Zen and later)
//   avx512    x86-64-v4: AVX-512 F, BW, CD, DQ, VL (Skylake-SP, Ice Lake, Sapphire
//             Rapids, Zen 4 and later)
//
// The environment variable POLYAK_ISA (baseline | avx2 | avx512) forces a lower path, for
// testing and comparison; naming one the CPU lacks, or an unknown name, is an Error.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace polyak {

enum class Isa : int { baseline = 0, avx2 = 1, avx512 = 2 };

// "baseline", "avx2", "avx512".
const char* isa_name(Isa isa);

// Every ISA this CPU and its operating system can run, narrowest first.
std::vector<Isa> supported_isas();

// The ISA the kernels use: POLYAK_ISA if set, else the widest supported. Read once; throws
// polyak::Error (naming POLYAK_ISA and what the CPU supports) for a bad POLYAK_ISA.
Isa active_isa();

// The CPU's brand string, e.g. "AMD EPYC 7B13" (empty where cpuid has none).
std::string cpu_model();

// Data cache sizes in bytes: L1 and L2 of one core, L3 in all; a size the system does not
// report is 0.
struct CacheSizes {
  int64_t l1d = 0, l2 = 0, l3 = 0;
};
CacheSizes cache_sizes();

namespace detail {
// The ISA that POLYAK_ISA = `value` asks for on a CPU whose widest is `widest` (named `cpu`
// in messages): `widest` when value is null or empty; an Error for an unknown name or one
// wider than `widest`.
Isa isa_from_env(const char* value, Isa widest, const std::string& cpu);
}  // namespace detail

// A tag per ISA, so that one kernel's three compilations are three overloads.
template <Isa kIsa>
struct IsaTag {
  static constexpr Isa value = kIsa;
};

// f(IsaTag<isa>{}): calls the overload compiled for `isa` (one the CPU supports).
template <class F>
decltype(auto) with_isa(Isa isa, F&& f) {
  switch (isa) {
    case Isa::avx512:
      return f(IsaTag<Isa::avx512>{});
    case Isa::avx2:
      return f(IsaTag<Isa::avx2>{});
    case Isa::baseline:
      break;
  }
  return f(IsaTag<Isa::baseline>{});
}

// f(IsaTag<active_isa()>{}): calls the overload compiled for the ISA in use.
template <class F>
decltype(auto) with_active_isa(F&& f) {
  return with_isa(active_isa(), std::forward<F>(f));
}

}  // namespace polyak

// In a kernel source (compiled once per ISA), POLYAK_KERNEL_ISA names the ISA this
// compilation is for; everything the kernel defines lives in the namespace
// POLYAK_ISA_NAMESPACE (isa_avx2, …), so that inline helpers compiled for a wider ISA can
// never stand in for the baseline ones at link time. Other sources are baseline.
#ifndef POLYAK_KERNEL_ISA
#define POLYAK_KERNEL_ISA baseline
#endif
#define POLYAK_ISA_CONCAT_(a, b) a##b
#define POLYAK_ISA_CONCAT(a, b) POLYAK_ISA_CONCAT_(a, b)
#define POLYAK_ISA_NAMESPACE POLYAK_ISA_CONCAT(isa_, POLYAK_KERNEL_ISA)
#define POLYAK_KERNEL_ISA_TAG ::polyak::IsaTag<::polyak::Isa::POLYAK_KERNEL_ISA>
// M(baseline) M(avx2) M(avx512): declares a kernel's three overloads in its header.
#define POLYAK_FOR_EACH_ISA(M) M(baseline) M(avx2) M(avx512)
