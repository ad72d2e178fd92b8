// core/cpu.h: the ISAs the CPU supports, the one in use, POLYAK_ISA's checks, cache sizes.
#include <cstdlib>
#include <cstring>
#include <string>

#include "testing.h"

using namespace polyak;

TEST_CASE("cpu: supported ISAs start at baseline and the active one is among them") {
  const std::vector<Isa> isas = supported_isas();
  REQUIRE(!isas.empty());
  CHECK(isas.front() == Isa::baseline);
  for (size_t i = 1; i < isas.size(); ++i) CHECK(isas[i - 1] < isas[i]);
  const char* forced = std::getenv("POLYAK_ISA");
  if (forced && *forced)
    CHECK(std::string(isa_name(active_isa())) == forced);  // a CTest ISA repeat
  else
    CHECK(active_isa() == isas.back());
  int calls = 0;
  with_active_isa([&](auto tag) {
    CHECK(decltype(tag)::value == active_isa());
    ++calls;
  });
  CHECK(calls == 1);
}

TEST_CASE("cpu: POLYAK_ISA picks a lower ISA, and names the fault for a wider or unknown one") {
  using detail::isa_from_env;
  CHECK(isa_from_env(nullptr, Isa::avx512, "") == Isa::avx512);
  CHECK(isa_from_env("", Isa::avx2, "") == Isa::avx2);
  CHECK(isa_from_env("baseline", Isa::avx512, "") == Isa::baseline);
  CHECK(isa_from_env("avx2", Isa::avx512, "") == Isa::avx2);
  CHECK(isa_from_env("avx512", Isa::avx512, "") == Isa::avx512);
  CHECK_THROWS_WITH_AS(isa_from_env("avx512", Isa::avx2, "AMD EPYC 7B13"),
                       "POLYAK_ISA: 'avx512' is not supported by this CPU (AMD EPYC 7B13); it "
                       "supports baseline, avx2: unset POLYAK_ISA or choose one of those",
                       Error);
  CHECK_THROWS_WITH_AS(isa_from_env("avx2", Isa::baseline, ""),
                       "POLYAK_ISA: 'avx2' is not supported by this CPU; it supports baseline: "
                       "unset POLYAK_ISA or choose one of those",
                       Error);
  CHECK_THROWS_WITH_AS(isa_from_env("AVX-512", Isa::avx512, ""),
                       "POLYAK_ISA: unknown value 'AVX-512', expected baseline, avx2 or avx512 "
                       "(this CPU supports baseline, avx2, avx512)",
                       Error);
}

TEST_CASE("cpu: cache sizes are plausible where the system reports them") {
  const CacheSizes c = cache_sizes();
  CHECK(c.l1d >= 0);
  CHECK(c.l2 >= 0);
  CHECK(c.l3 >= 0);
  if (c.l1d > 0) CHECK(c.l1d >= 8 << 10);
  if (c.l1d > 0 && c.l2 > 0) CHECK(c.l2 >= c.l1d);
  CHECK(std::strlen(isa_name(Isa::avx512)) > 0);
}
