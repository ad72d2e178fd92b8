// The counter-based generator (Philox 4x32-10) and the caching allocator.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <set>
#include <vector>

#include "testing.h"

using namespace polyak;

TEST_CASE("philox4x32: the Random123 known-answer vectors") {
  using W = std::array<uint32_t, 4>;
  CHECK(philox4x32({0, 0, 0, 0}, {0, 0}) == W{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(philox4x32({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        W{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(philox4x32({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        W{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("Generator: same seed same stream, other seeds other streams") {
  Generator a(123), b(123), c(124);
  for (int i = 0; i < 10; ++i) {
    const double ua = a.uniform(), ub = b.uniform(), uc = c.uniform();
    CHECK(ua == ub);
    CHECK(ua != uc);
    CHECK(ua >= 0.0);
    CHECK(ua < 1.0);
  }
  CHECK(a.offset() == 10);
  CHECK(Generator(5).block(3) != Generator(6).block(3));
}

TEST_CASE("Generator: offsets address the stream directly") {
  Generator g(77);
  CHECK(g.seed() == 77);
  CHECK(g.offset() == 0);
  CHECK(g.advance(3) == 0);
  CHECK(g.offset() == 3);
  CHECK(g.advance(2) == 3);
  CHECK(g.offset() == 5);
  // block(k) is a pure function of (seed, k): the generator's position does not matter.
  Generator fresh(77);
  CHECK(g.block(4) == fresh.block(4));
  CHECK(g.block(4) != g.block(5));
  // A generator moved to an offset continues exactly where another left off.
  Generator run(9);
  run.uniform();
  run.normal();
  const uint64_t saved = run.offset();
  const double next = run.uniform();
  const uint64_t k = run.integer(1000);
  Generator resumed(9);
  resumed.set_offset(saved);
  CHECK(resumed.uniform() == next);
  CHECK(resumed.integer(1000) == k);
  // Tensors drawn from one position are equal.
  Generator t1(1), t2(1);
  t1.set_offset(100);
  t2.set_offset(100);
  CHECK(Tensor::randn(Shape{7}, t1, DType::f64).to_vector() ==
        Tensor::randn(Shape{7}, t2, DType::f64).to_vector());
  CHECK(t1.offset() == t2.offset());
  CHECK(t1.offset() > 100);
}

TEST_CASE("Generator: integer stays in range and covers it, normal has moments 0 and 1") {
  Generator g(2024);
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t v = g.integer(7);
    CHECK(v < 7);
    seen.insert(v);
  }
  CHECK(seen.size() == 7);
  double s = 0, s2 = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double x = g.normal();
    s += x;
    s2 += x * x;
  }
  CHECK(std::abs(s / n) < 0.05);
  CHECK(std::abs(s2 / n - 1) < 0.05);
}

TEST_CASE("allocator: freed blocks are reused") {
  // Warm up: the first iteration may reach the system.
  for (int i = 0; i < 2; ++i) {
    Tensor a = Tensor::zeros(Shape{123, 45});
    Tensor b = Tensor::ones(Shape{123, 45}, DType::f64);
  }
  const AllocatorStats before = allocator_stats();
  for (int i = 0; i < 100; ++i) {
    Tensor a = Tensor::zeros(Shape{123, 45});
    Tensor b = Tensor::ones(Shape{123, 45}, DType::f64);
    CHECK(allocator_stats().allocated_bytes >= before.allocated_bytes + a.nbytes() + b.nbytes());
  }
  const AllocatorStats after = allocator_stats();
  CHECK(after.system_allocations == before.system_allocations);
  CHECK(after.allocated_bytes == before.allocated_bytes);
  CHECK(after.peak_allocated_bytes >= after.allocated_bytes);
  // empty_cache returns the cached blocks; the next allocation reaches the system again.
  empty_cache();
  CHECK(allocator_stats().cached_bytes == 0);
  { Tensor a = Tensor::zeros(Shape{123, 45}); }
  CHECK(allocator_stats().system_allocations == after.system_allocations + 1);
}

TEST_CASE("RNG: fill_blocks gives block() word for word, also across the 2^32 counter carry") {
  Generator gen(0x1234'5678'9abc'def0ull);
  for (uint64_t first : {uint64_t{0}, uint64_t{5}, (uint64_t{1} << 32) - 3}) {
    for (int64_t count : {int64_t{1}, int64_t{7}, int64_t{8}, int64_t{19}}) {
      std::vector<uint32_t> words(static_cast<size_t>(4 * count));
      gen.fill_blocks(first, count, words.data());
      for (int64_t b = 0; b < count; ++b) {
        auto w = gen.block(first + static_cast<uint64_t>(b));
        for (size_t j = 0; j < 4; ++j) CHECK(words[static_cast<size_t>(4 * b) + j] == w[j]);
      }
    }
  }
}

#if !defined(__SANITIZE_ADDRESS__)
// The address-space limit below cannot be combined with AddressSanitizer's shadow memory.
TEST_CASE("allocator: freeing after running out of memory neither throws nor aborts") {
  // A child process fills its address space with tensors and then small heap blocks, as a
  // model too big for the machine does while it is built, and frees the tensors while the
  // heap is still full: ~Storage must park or return each block without allocating.
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::vector<Tensor> tensors;
    std::vector<char*> small;
    tensors.reserve(1 << 16);
    small.reserve(1 << 22);
    rlimit limit{};
    getrlimit(RLIMIT_AS, &limit);
    std::ifstream status("/proc/self/statm");
    size_t pages = 0;
    status >> pages;
    limit.rlim_cur = pages * static_cast<size_t>(sysconf(_SC_PAGESIZE)) + (size_t{96} << 20);
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(3);
    bool failed = false;
    try {
      for (int64_t i = 0; tensors.size() < tensors.capacity(); ++i)
        tensors.push_back(Tensor::empty(Shape{(1 << 14) + 128 * (i % 64)}));
    } catch (const Error&) {
      failed = true;
    }
    try {
      while (small.size() < small.capacity()) small.push_back(new char[48]);
    } catch (const std::bad_alloc&) {
    }
    tensors.clear();  // every ~Storage runs with the heap full
    for (char* p : small) delete[] p;
    _exit(failed ? 0 : 4);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  INFO("child status " << status);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
#endif
