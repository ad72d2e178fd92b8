// What `polyak bench` measures the machine with, compiled once per ISA (cmake/isa.cmake):
// the cores' f32 multiply-add throughput, and Eigen's GEMM as the reference polyak's own is
// held against.
//
// Eigen picks its vector width from the compiler's flags, so each compilation holds an Eigen
// built for its ISA. Its namespace is renamed per compilation (polyak_eigen_avx512, …):
// Eigen's templates would otherwise share their names across the three compilations and the
// library's own (baseline) Eigen code, and the linker could keep an AVX-512 copy for a
// baseline caller.
#include "polyak/core/cpu.h"
#define Eigen POLYAK_ISA_CONCAT(polyak_eigen_, POLYAK_KERNEL_ISA)

#include <Eigen/Core>
#include <chrono>
#include <cstdint>

#include "cli/probes.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace polyak::cli {
namespace POLYAK_ISA_NAMESPACE {
namespace {

#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kLanes = 16;
inline Vec splat(float x) {
  return _mm512_set1_ps(x);
}
inline Vec mul_add(Vec a, Vec b, Vec c) {
  return _mm512_fmadd_ps(a, b, c);
}
inline float first(Vec v) {
  return _mm512_cvtss_f32(v);
}
constexpr int kFlopsPerLane = 2;
#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
constexpr int kLanes = 8;
inline Vec splat(float x) {
  return _mm256_set1_ps(x);
}
inline Vec mul_add(Vec a, Vec b, Vec c) {
  return _mm256_fmadd_ps(a, b, c);
}
inline float first(Vec v) {
  return _mm256_cvtss_f32(v);
}
constexpr int kFlopsPerLane = 2;
#else
// No FMA: a multiply and an add, each its own instruction (one flop per lane each).
using Vec = __m128;
constexpr int kLanes = 4;
inline Vec splat(float x) {
  return _mm_set1_ps(x);
}
inline Vec mul_add(Vec a, Vec b, Vec c) {
  return _mm_add_ps(_mm_mul_ps(a, b), c);
}
inline float first(Vec v) {
  return _mm_cvtss_f32(v);
}
constexpr int kFlopsPerLane = 2;
#endif

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor>;
using Map = Eigen::Map<RowMajor>;

}  // namespace
}  // namespace POLYAK_ISA_NAMESPACE

double fma_peak_gflops(POLYAK_KERNEL_ISA_TAG, int threads, int64_t iters) {
  using namespace POLYAK_ISA_NAMESPACE;
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
  {
    // Twelve independent chains cover the multiply-add latency (4 cycles) on two ports.
    Vec acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = splat(1.0f + 1e-3f * static_cast<float>(i));
    const Vec mul = splat(0.999999f), add = splat(1e-6f);
    for (int64_t it = 0; it < iters; ++it)
#pragma GCC unroll 12
      for (int i = 0; i < 12; ++i) acc[i] = mul_add(acc[i], mul, add);
    for (int i = 0; i < 12; ++i) sink += first(acc[i]);
  }
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (sink == 42.0f) s += 1e-9;  // keeps the chains alive
  return static_cast<double>(threads) * static_cast<double>(iters) * 12 * kLanes * kFlopsPerLane /
         s / 1e9;
}

void eigen_sgemm(POLYAK_KERNEL_ISA_TAG, int threads, bool trans_a, bool trans_b, int64_t m,
                 int64_t n, int64_t k, const float* a, const float* b, float* c) {
  using namespace POLYAK_ISA_NAMESPACE;
  Eigen::setNbThreads(threads);
  const ConstMap A(a, trans_a ? k : m, trans_a ? m : k);
  const ConstMap B(b, trans_b ? n : k, trans_b ? k : n);
  Map C(c, m, n);
  if (!trans_a && !trans_b) C.noalias() = A * B;
  if (!trans_a && trans_b) C.noalias() = A * B.transpose();
  if (trans_a && !trans_b) C.noalias() = A.transpose() * B;
  if (trans_a && trans_b) C.noalias() = A.transpose() * B.transpose();
}

}  // namespace polyak::cli
