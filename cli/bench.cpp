#include "cli/bench.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/copy_run.h"
#include "core/autograd.h"
#include "core/files.h"
#include "core/threads.h"
#include "ops/matmul.h"
#include "optim/clip.h"
#include "optim/radam.h"

namespace polyak::cli {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best GFLOP/s over `reps` n×n×n f32 GEMMs through polyak::matmul (the GEMM every step
// uses): the peak, so the best repetition, not a median that other processes can drag down.
double gemm_peak(int64_t n, int64_t reps) {
  NoGradGuard no_grad;
  Generator gen(7);
  Tensor a = Tensor::randn({n, n}, gen), b = Tensor::randn({n, n}, gen);
  matmul(a, b);  // warm the caches and the allocator
  std::vector<double> rates;
  for (int64_t r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    Tensor c = matmul(a, b);
    rates.push_back(2.0 * static_cast<double>(n * n * n) / seconds_since(t0) / 1e9);
  }
  return *std::max_element(rates.begin(), rates.end());
}

}  // namespace

double fma_peak_gflops() {
#if defined(__AVX2__) && defined(__FMA__)
  const int threads = num_threads();
  const int64_t iters = 20'000'000;
  std::vector<double> rates;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = Clock::now();
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      // Ten independent chains cover the FMA latency (4 cycles) on two ports.
      __m256 acc[10];
      for (int i = 0; i < 10; ++i) acc[i] = _mm256_set1_ps(1.0f + 1e-3f * static_cast<float>(i));
      const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-6f);
      for (int64_t it = 0; it < iters; ++it)
        for (int i = 0; i < 10; ++i) acc[i] = _mm256_fmadd_ps(acc[i], mul, add);
      for (int i = 0; i < 10; ++i) sink += _mm256_cvtss_f32(acc[i]);
    }
    double s = seconds_since(t0);
    if (sink == 42.0f) s += 1e-9;  // keeps the loop alive
    rates.push_back(static_cast<double>(threads) * static_cast<double>(iters) * 10 * 16 / s / 1e9);
  }
  return median(rates);
#else
  return 0;
#endif
}

double forward_flops(const TransformerConfig& c, int64_t batch, int64_t length) {
  const double tokens = static_cast<double>(batch * length);
  const double d = static_cast<double>(c.d_model), ff = static_cast<double>(c.resolved_ff_dim());
  const double h = static_cast<double>(c.heads), dh = static_cast<double>(c.resolved_head_dim());
  const double n = static_cast<double>(length);
  // Keys a query sees on average: all of them, or (when causal) half plus one.
  auto keys = [&](double window) { return c.causal ? (window + 1) / 2 : window; };
  const double block = std::min(static_cast<double>(c.block_size), n);
  double per_token = 0;
  for (int64_t layer = 0; layer < c.layers; ++layer) {
    const std::string kind = c.layer_config(layer).attention.kind;
    per_token += 2 * 2 * d * ff;  // feed-forward
    if (kind == "mega" || kind == "mega-chunk") {
      // Mega's own block (nn/mega.h): V, the [2d + z + v] gate projection, W_h, the EMA
      // (n dimensions per channel, a multiply-add each way) and one head of attention.
      const double z = static_cast<double>(c.mega_z_dim), ema = static_cast<double>(c.mega_ema_dim);
      const double v = c.mega_v_dim > 0 ? static_cast<double>(c.mega_v_dim) : d;
      per_token += 2 * d * v + 2 * d * (2 * d + z + v) + 2 * v * d + 4 * d * ema;
      per_token += (2 * z + 2 * v) * keys(kind == "mega" ? n : block);
      continue;
    }
    per_token += 2 * d * 3 * h * dh  // q, k, v projections
                 + 2 * h * dh * d;   // output projection
    if (kind == "softmax")
      per_token += h * (2 * dh + 2 * dh) * keys(n);  // QKᵀ and PV
    else if (kind == "diag")
      per_token += h * (2 * dh + 2 * dh) * keys(block);
    else if (kind == "linformer")  // E K and F V, then attention over k positions
      per_token += h * (2 * dh + 2 * dh) * static_cast<double>(c.linformer_k) * 2;
    else if (kind == "performer") {
      // FAVOR+ maps q and k through m random features, then linear attention of width m.
      const double m = static_cast<double>(c.performer_features);
      per_token += h * (2 * 2 * dh * m + 2 * m * dh + 2 * m * dh + 4 * m);
    } else {
      per_token += h * (2 * dh * dh + 2 * dh * dh + 4 * dh);  // state update, readout, z
    }
    // Momentum attention adds a decayed numerator beside the plain one (MATH.md §3).
    if (kind == "momentum") per_token += h * (2 * dh * dh + 2 * dh * dh);
  }
  const double head = 2 * d * static_cast<double>(c.vocab);
  return tokens * (per_token + head);
}

BenchResult run_bench(const BenchOptions& options, std::string* report) {
  const TrainOptions& o = options.train;
  set_num_threads(o.threads);
  BenchResult result;
  result.fma_gflops = fma_peak_gflops();
  result.gemm_gflops = gemm_peak(options.gemm_size, options.gemm_reps);

  CopyTask task({.length = o.length, .seed = o.seed});
  TransformerConfig config = o.model_config(task.vocab());
  TransformerLM model(config);
  model.train();
  std::vector<Tensor> params = model.parameters();
  RAdam opt(params, {.lr = o.lr, .weight_decay = o.weight_decay});
  std::vector<double> times;
  for (int64_t step = 1; step <= options.warmup + o.steps; ++step) {
    Batch batch = task.batch(o.batch);  // outside the timed region, as in bench/torch_copy.py
    auto t0 = Clock::now();
    opt.zero_grad();
    copy_loss_backward(model, batch, step, nullptr);
    if (o.clip > 0) clip_grad_norm_per_parameter(params, o.clip);
    opt.step();
    if (step > options.warmup) times.push_back(seconds_since(t0));
  }
  double step_s = median(times);
  result.ms_per_step = 1000 * step_s;
  result.tokens_per_s = static_cast<double>(o.batch * o.length) / step_s;
  result.step_gflop = 3 * forward_flops(config, o.batch, o.length) / 1e9;
  result.gflops = result.step_gflop / step_s;
  result.percent_of_peak = 100 * result.gflops / result.gemm_gflops;
  result.percent_of_fma_peak = result.fma_gflops > 0 ? 100 * result.gflops / result.fma_gflops : 0;

  std::ostringstream os;
  char line[512];
  std::snprintf(
      line, sizeof line,
      "gemm peak: f32 %lld^3 through polyak::matmul, %d threads: %.1f GFLOP/s (best of %lld)\n",
      static_cast<long long>(options.gemm_size), num_threads(), result.gemm_gflops,
      static_cast<long long>(options.gemm_reps));
  os << line;
  std::snprintf(
      line, sizeof line,
      "fma peak:  f32 AVX2 FMA throughput, %d threads: %.1f GFLOP/s (no GEMM can pass it)\n",
      num_threads(), result.fma_gflops);
  os << line;
  std::snprintf(
      line, sizeof line,
      "polyak %s (%s preset: %lld layers, d %lld, %lld heads x %lld, ff %lld, batch %lld x %lld): "
      "median %.1f ms/step over %lld steps, %.0f tokens/s, %.1f GFLOP/step, %.1f GFLOP/s = %.1f%% "
      "of GEMM peak, %.1f%% of FMA peak\n",
      o.model.c_str(), o.preset.c_str(), static_cast<long long>(config.layers),
      static_cast<long long>(config.d_model), static_cast<long long>(config.heads),
      static_cast<long long>(config.resolved_head_dim()),
      static_cast<long long>(config.resolved_ff_dim()), static_cast<long long>(o.batch),
      static_cast<long long>(o.length), result.ms_per_step, static_cast<long long>(o.steps),
      result.tokens_per_s, result.step_gflop, result.gflops, result.percent_of_peak,
      result.percent_of_fma_peak);
  os << line;
  if (report) *report = os.str();

  if (!options.json.empty()) {
    nlohmann::json j = {{"model", o.model},
                        {"preset", o.preset},
                        {"threads", num_threads()},
                        {"steps", o.steps},
                        {"ms_per_step", result.ms_per_step},
                        {"tokens_per_s", result.tokens_per_s},
                        {"step_gflop", result.step_gflop},
                        {"gflops", result.gflops},
                        {"gemm_peak_gflops", result.gemm_gflops},
                        {"percent_of_peak", result.percent_of_peak},
                        {"fma_peak_gflops", result.fma_gflops},
                        {"percent_of_fma_peak", result.percent_of_fma_peak}};
    write_text_file_atomically(options.json, j.dump(2) + "\n", "bench");
  }
  return result;
}

}  // namespace polyak::cli
