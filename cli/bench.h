// `polyak bench`: training-step time of a copy model, as a share of the machine's f32 GEMM
// peak measured in the same run.
#pragma once

#include <string>
#include <vector>

#include "polyak/core/cpu.h"

#include "cli/options.h"

namespace polyak::cli {

// One f32 product of the benchmark, C [m,n] = op(A) · op(B).
struct GemmCase {
  const char* name;
  bool trans_a, trans_b;
  int64_t m, n, k;
};

// Its best GFLOP/s through polyak's GEMM and through Eigen's, both compiled for `isa`.
struct GemmResult {
  GemmCase shape;
  Isa isa;
  double polyak_gflops = 0, eigen_gflops = 0;
};

// Its best GFLOP/s through polyak's matmul on a device (cuBLAS on cuda).
struct DeviceGemmResult {
  GemmCase shape;
  double gflops = 0;
};

struct BenchResult {
  std::string device = "cpu";                  // where the step ran (--device)
  std::string precision = "f32";               // its GEMMs' operands (--precision)
  std::vector<DeviceGemmResult> device_gemms;  // on a device: its products, instead of gemms
  std::string isa;                             // the kernels' ISA in use
  std::vector<GemmResult> gemms;               // every product on every ISA the CPU supports
  double best_gemm_gflops = 0;                 // the best of them, polyak's or Eigen's
  std::string fma_isa;     // the widest ISA, whose multiply-add peak is measured
  double fma_gflops = 0;   // the cores' f32 multiply-add throughput in that ISA
  double ms_per_step = 0;  // median
  double tokens_per_s = 0;
  double step_gflop = 0;           // floating-point work of one training step (analytic count)
  double gflops = 0;               // step_gflop / median step time
  double percent_of_gemm = 0;      // of best_gemm_gflops
  double percent_of_fma_peak = 0;  // of fma_gflops
};

// The products the benchmark times: a square one of side `square`, and the model's own
// (feed-forward and projections, forward and backward) for `rows` = batch × length tokens.
std::vector<GemmCase> gemm_cases(const TransformerConfig& config, int64_t rows, int64_t square);

// Times each case through polyak's GEMM and Eigen's on every ISA the CPU supports.
std::vector<GemmResult> measure_gemms(const std::vector<GemmCase>& cases, int64_t reps);
// Times each case through matmul on `device` (waiting for the device around each run).
std::vector<DeviceGemmResult> measure_device_gemms(const std::vector<GemmCase>& cases, int64_t reps,
                                                   Device device);

// f32 multiply-add throughput of all threads in `isa`'s widest vectors (median of three).
double fma_peak_gflops(Isa isa);

// One line: the CPU, the ISA in use and those supported, the caches, the threads.
std::string machine_text();

// `polyak --version`: the version, what the build targets, the CUDA backend, and the CPU
// with the kernels' ISA in use (throws polyak::Error for a bad POLYAK_ISA).
std::string version_text();

// Multiply-add work (2 flops each) of one forward pass, from the model's shapes and each
// layer's attention (the GEMMs; Mega's EMA and the elementwise work roughly); a training
// step is counted as 3 forward passes (forward, and a backward of twice the work).
double forward_flops(const TransformerConfig& config, int64_t batch, int64_t length);

// Times the GEMMs, the peak and the training steps of options.train, in one run.
BenchResult run_bench(const BenchOptions& options, std::string* report);

}  // namespace polyak::cli
