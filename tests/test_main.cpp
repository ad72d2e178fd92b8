// The doctest main of every suite. `--isa=NAME` runs the suite with the kernels compiled for
// NAME (as POLYAK_ISA=NAME does): CTest repeats the kernel suites once per ISA. On a CPU
// without NAME the suite is skipped (exit 77, CTest's SKIP_RETURN_CODE for those runs).
// A run whose --test-case filter matches no test case fails: CTest runs each case through
// such a filter, and a name it mangles would otherwise pass without running.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "polyak/core/cpu.h"

namespace {

// Counts the test cases that start.
struct CaseCounter final : doctest::IReporter {
  static inline int started = 0;
  explicit CaseCounter(const doctest::ContextOptions&) {}
  void test_case_start(const doctest::TestCaseData&) override { ++started; }
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
DOCTEST_REGISTER_LISTENER("case_counter", 1, CaseCounter);

bool has_case_filter(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    for (const char* flag : {"-tc=", "--test-case=", "-tc", "--test-case"})
      if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0) return true;
  return false;
}

}  // namespace

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
  const int status = context.run();
  if (status == 0 && !context.shouldExit() && has_case_filter(argc, argv) &&
      CaseCounter::started == 0) {
    std::fprintf(stderr, "no test case matches the --test-case filter: nothing ran\n");
    return 1;
  }
  return status;
}
