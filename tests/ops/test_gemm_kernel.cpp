// sgemm (ops/gemm_kernel.h) against a naive double-precision product: every transpose
// combination, overwrite and accumulate, a bias, odd sizes around the tiles (14×32, 6×16,
// 4×8) and the cache blocks, and leading dimensions longer than the rows. CTest runs the
// suite once per ISA the CPU has (tests/CMakeLists.txt), so each compilation is checked.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "polyak/ops/gemm_kernel.h"
#include "testing.h"

using namespace polyak;

namespace {

struct Case {
  int64_t m, n, k;
  bool ta, tb, accumulate;
  int64_t pad = 0;  // extra elements at the end of every stored row (lda, ldb, ldc)
  bool bias = false;
};

std::string describe(const Case& c) {
  return "m " + std::to_string(c.m) + " n " + std::to_string(c.n) + " k " + std::to_string(c.k) +
         (c.ta ? " trans_a" : "") + (c.tb ? " trans_b" : "") + (c.accumulate ? " accumulate" : "") +
         (c.bias ? " bias" : "") + " pad " + std::to_string(c.pad);
}

// Runs sgemm on random operands and returns max |C − reference| / max |reference|; the
// padding of C beyond column n must come back untouched (reported as an error of 1).
double run_case(const Case& c, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  const int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  const int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  std::vector<float> a(static_cast<size_t>(a_rows * lda)), b(static_cast<size_t>(b_rows * ldb));
  std::vector<float> out(static_cast<size_t>(c.m * ldc)), bias(static_cast<size_t>(c.n));
  for (std::vector<float>* v : {&a, &b, &out, &bias})
    for (float& x : *v) x = normal(rng);
  const std::vector<float> before = out;

  sgemm(c.ta, c.tb, c.m, c.n, c.k, a.data(), lda, b.data(), ldb, out.data(), ldc, c.accumulate,
        c.bias ? bias.data() : nullptr);

  double err = 0, scale = 1e-30;
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t at = static_cast<size_t>(i * ldc + j);
      if (j >= c.n) {
        if (out[at] != before[at]) return 1.0;
        continue;
      }
      double want = c.accumulate ? before[at] : c.bias ? bias[static_cast<size_t>(j)] : 0.0;
      for (int64_t p = 0; p < c.k; ++p)
        want += double(c.ta ? a[static_cast<size_t>(p * lda + i)]
                            : a[static_cast<size_t>(i * lda + p)]) *
                double(c.tb ? b[static_cast<size_t>(j * ldb + p)]
                            : b[static_cast<size_t>(p * ldb + j)]);
      scale = std::max(scale, std::abs(want));
      err = std::max(err, std::abs(double(out[at]) - want));
    }
  return err / scale;
}

// Float rounding grows like sqrt(k) for random signs; relative to the largest entry.
double tolerance(int64_t k) {
  return 1e-5 * std::sqrt(double(std::max<int64_t>(k, 1)));
}

}  // namespace

TEST_CASE("sgemm: odd sizes, every transpose combination, overwrite and accumulate") {
  std::mt19937 rng(7);
  const std::vector<int64_t> sizes = {1, 5, 6, 7, 16, 17, 33, 100, 257, 300};
  for (int64_t m : sizes)
    for (int64_t n : sizes)
      for (int64_t k : {int64_t{1}, int64_t{7}, int64_t{257}})
        for (bool ta : {false, true})
          for (bool tb : {false, true})
            for (bool accumulate : {false, true}) {
              const Case c{m, n, k, ta, tb, accumulate, (m + n + k) % 3 == 0 ? 0 : 3};
              INFO(describe(c));
              CHECK(run_case(c, rng) <= tolerance(k));
            }
}

TEST_CASE("sgemm: depth past several KC blocks, columns past NC, rows past MC") {
  // Sizes against the blocking in ops/gemm_kernel.cpp: KC 256, MC 144, NC 4080.
  std::mt19937 rng(8);
  const std::vector<Case> cases = {
      {33, 17, 1000, false, false, false, 5},
      {33, 17, 1000, true, true, true, 5},
      {100, 300, 1000, true, false, false, 1},
      {100, 300, 1000, false, true, true, 0},
      {7, 4100, 33, false, false, false, 2},
      {7, 4100, 33, true, true, true, 2},
      {5, 4200, 300, false, true, false, 0},
      {1000, 5, 300, true, false, true, 3},
      {300, 257, 600, true, true, false, 16},
      {257, 1000, 7, false, false, true, 1},
      {1000, 100, 257, false, true, false, 0},
      {6, 16, 2000, true, false, false, 0},
      // Narrow C: the whole depth packed at once, and (4500·256 floats) too deep for that.
      {300, 200, 1000, false, false, true, 1},
      {20, 250, 4500, true, false, false, 0},
  };
  for (const Case& c : cases) {
    INFO(describe(c));
    CHECK(run_case(c, rng) <= tolerance(c.k));
  }
}

TEST_CASE("sgemm: past the blocks this CPU's caches give, on the ISA in use") {
  // The blocks come from the cache sizes at run time: cross each of them, and the tile,
  // by a ragged amount.
  const SgemmShape s = sgemm_shape();
  CHECK(s.kc > 0);
  CHECK(s.mc % s.mr == 0);
  CHECK(s.nc % s.nr == 0);
  std::mt19937 rng(11);
  const std::vector<Case> cases = {
      {s.mr + 1, s.nc + s.nr + 3, s.kc + 5, false, false, false, 1},
      {s.mr + 1, s.nc + s.nr + 3, s.kc + 5, true, true, true, 0},
      {s.mc + s.mr + 1, s.nr - 1, 2 * s.kc + 3, false, true, false, 2},
      {s.mc + s.mr + 1, s.nr - 1, 2 * s.kc + 3, true, false, true, 0},
      {2 * s.mc + 3, 2 * s.nr + 1, 3, false, false, true, 0},
  };
  for (const Case& c : cases) {
    CAPTURE(describe(c));
    CHECK(run_case(c, rng) <= tolerance(c.k));
  }
}

TEST_CASE("sgemm: the tile of each ISA's microkernel") {
  for (Isa isa : supported_isas()) {
    const SgemmShape s = with_isa(isa, [](auto tag) { return sgemm_shape(tag); });
    CAPTURE(isa_name(isa));
    const int64_t want_mr = isa == Isa::avx512 ? 14 : isa == Isa::avx2 ? 6 : 4;
    const int64_t want_nr = isa == Isa::avx512 ? 32 : isa == Isa::avx2 ? 16 : 8;
    CHECK(s.mr == want_mr);
    CHECK(s.nr == want_nr);
  }
}

TEST_CASE("sgemm: a bias starts every row, k = 0 leaves the bias, zeros, or C") {
  std::mt19937 rng(9);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t m : {1, 7, 150})
        for (int64_t n : {5, 16, 33})
          for (int64_t k : {0, 1, 300}) {
            for (bool bias : {false, true})
              for (bool accumulate : {false, true}) {
                Case c{m, n, k, ta, tb, accumulate, 2, bias};
                INFO(describe(c));
                CHECK(run_case(c, rng) <= tolerance(k));
              }
          }
}

TEST_CASE("sgemm: empty products write nothing") {
  float c = 42.0f;
  const float a = 1.0f, b = 1.0f;
  sgemm(false, false, 0, 1, 1, &a, 1, &b, 1, &c, 1, false);
  sgemm(false, false, 1, 0, 1, &a, 1, &b, 1, &c, 1, false);
  CHECK(c == 42.0f);
}
