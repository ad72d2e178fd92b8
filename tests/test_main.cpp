// The doctest main of every suite. `--isa=NAME` runs the suite with the kernels compiled for
// NAME (as POLYAK_ISA=NAME does): CTest repeats the kernel suites once per ISA. On a CPU
// without NAME the suite is skipped (exit 77, CTest's SKIP_RETURN_CODE for those runs).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "polyak/core/cpu.h"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--isa=", 6) != 0) continue;
    const char* isa = argv[i] + 6;
    bool supported = false;
    for (polyak::Isa s : polyak::supported_isas())
      supported |= std::strcmp(isa, polyak::isa_name(s)) == 0;
    if (!supported) {
      std::printf("skipped: this CPU does not run the %s kernels\n", isa);
      return 77;
    }
    setenv("POLYAK_ISA", isa, 1);
  }
  doctest::Context context(argc, argv);
  return context.run();
}
