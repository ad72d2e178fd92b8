// `polyak bench`: training-step time of a copy model, as a share of the machine's f32 GEMM
// peak measured in the same run.
#pragma once

#include <string>

#include "cli/options.h"

namespace polyak::cli {

struct BenchResult {
  double gemm_gflops = 0;  // best over repetitions of one square f32 GEMM
  double fma_gflops = 0;   // the cores' f32 FMA throughput (0 where not measurable)
  double ms_per_step = 0;  // median
  double tokens_per_s = 0;
  double step_gflop = 0;           // floating-point work of one training step (analytic count)
  double gflops = 0;               // step_gflop / median step time
  double percent_of_peak = 0;      // of gemm_gflops
  double percent_of_fma_peak = 0;  // of fma_gflops
};

// f32 FMA throughput of all threads: independent AVX2 FMA chains, no memory traffic — the
// ceiling no GEMM can pass. 0 on CPUs without AVX2/FMA.
double fma_peak_gflops();

// Multiply-add work (2 flops each) of one forward pass, from the model's shapes and each
// layer's attention (the GEMMs; Mega's EMA and the elementwise work roughly); a training
// step is counted as 3 forward passes (forward, and a backward of twice the work).
double forward_flops(const TransformerConfig& config, int64_t batch, int64_t length);

BenchResult run_bench(const BenchOptions& options, std::string* report);

}  // namespace polyak::cli
