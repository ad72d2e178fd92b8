#include "cli/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/copy_run.h"
#include "cli/memory_check.h"
#include "cli/probes.h"
#include "polyak/core/autograd.h"
#include "polyak/core/cpu.h"
#include "polyak/core/files.h"
#include "polyak/core/threads.h"
#include "polyak/nn/kinds.h"
#include "polyak/ops/gemm_kernel.h"
#include "polyak/ops/matmul.h"
#include "polyak/ops/shape_ops.h"
#include "polyak/optim/clip.h"
#include "polyak/optim/radam.h"

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

// Best GFLOP/s over `reps` runs of `run` (a product of `flop` flops): a peak, so the best
// repetition, not a median that other processes can drag down.
template <class F>
double best_gflops(double flop, int64_t reps, F&& run) {
  run();  // warm the caches and the packing buffers
  double best = 0;
  for (int64_t r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    run();
    best = std::max(best, flop / seconds_since(t0) / 1e9);
  }
  return best;
}

std::string size_text(int64_t bytes) {
  char buf[32];
  if (bytes >= (int64_t{1} << 20))
    std::snprintf(buf, sizeof buf, "%lld MiB", static_cast<long long>(bytes >> 20));
  else
    std::snprintf(buf, sizeof buf, "%lld KiB", static_cast<long long>(bytes >> 10));
  return buf;
}

}  // namespace

std::vector<GemmCase> gemm_cases(const TransformerConfig& c, int64_t rows, int64_t square) {
  const int64_t d = c.d_model, ff = c.resolved_ff_dim();
  return {{"square", false, false, square, square, square},
          {"ff up    X W1^T", false, true, rows, ff, d},
          {"ff down  H W2^T", false, true, rows, d, ff},
          {"proj     X W^T", false, true, rows, d, d},
          {"ff dX    dY W1", false, false, rows, d, ff},
          {"ff dW1   dY^T X", true, false, ff, d, rows}};
}

std::vector<GemmResult> measure_gemms(const std::vector<GemmCase>& cases, int64_t reps) {
  NoGradGuard no_grad;
  const int threads = num_threads();
  std::vector<GemmResult> out;
  for (const GemmCase& g : cases) {
    Generator gen(7);
    const Tensor a = Tensor::randn({g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k}, gen);
    const Tensor b = Tensor::randn({g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n}, gen);
    Tensor c = Tensor::empty({g.m, g.n});
    const float* ap = a.data<float>();
    const float* bp = b.data<float>();
    float* cp = c.data<float>();
    const double flop =
        2.0 * static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k);
    for (Isa isa : supported_isas()) {
      GemmResult r{g, isa, 0, 0};
      const SgemmArgs args{g.trans_a,
                           g.trans_b,
                           g.m,
                           g.n,
                           g.k,
                           ap,
                           g.trans_a ? g.m : g.k,
                           bp,
                           g.trans_b ? g.k : g.n,
                           cp,
                           g.n,
                           false,
                           nullptr};
      r.polyak_gflops = best_gflops(flop, reps, [&] { sgemm_threads(isa, args); });
      r.eigen_gflops = best_gflops(flop, reps, [&] {
        with_isa(isa, [&](auto tag) {
          eigen_sgemm(tag, threads, g.trans_a, g.trans_b, g.m, g.n, g.k, ap, bp, cp);
        });
      });
      out.push_back(r);
    }
  }
  return out;
}

// The best of five probes: a neighbour's load can only slow a probe down, and a peak that
// a GEMM of the same run exceeds would be no peak.
double fma_peak_gflops(Isa isa) {
  double best = 0;
  for (int rep = 0; rep < 5; ++rep)
    best = std::max(best, with_isa(isa, [](auto tag) {
                      return fma_peak_gflops(tag, num_threads(), 20'000'000);
                    }));
  return best;
}

std::string machine_text() {
  const CacheSizes caches = cache_sizes();
  std::string isas;
  for (Isa isa : supported_isas()) isas += (isas.empty() ? "" : ", ") + std::string(isa_name(isa));
  const std::string model = cpu_model();
  return "cpu: " + (model.empty() ? std::string("unknown x86-64") : model) +
         "; kernels: " + isa_name(active_isa()) + " (the CPU supports " + isas + "); L1d " +
         size_text(caches.l1d) + ", L2 " + size_text(caches.l2) + ", L3 " + size_text(caches.l3) +
         "; " + std::to_string(num_threads()) + " threads";
}

std::string version_text() {
  std::string isas;
  for (Isa isa : supported_isas()) isas += (isas.empty() ? "" : ", ") + std::string(isa_name(isa));
  const std::string model = cpu_model();
  return std::string("polyak ") + POLYAK_VERSION + "\nbuilt for: " + POLYAK_BUILD_TARGET +
         "; CUDA backend: " + (POLYAK_CUDA_BUILT ? "on" : "off") +
         "\ncpu: " + (model.empty() ? std::string("unknown x86-64") : model) + " (supports " +
         isas + ")\nkernels: " + isa_name(active_isa()) +
         (std::getenv("POLYAK_ISA") && *std::getenv("POLYAK_ISA") ? " (forced by POLYAK_ISA)"
                                                                  : " (the widest supported)");
}

double forward_flops(const TransformerConfig& c, int64_t batch, int64_t length) {
  const double tokens = static_cast<double>(batch * length);
  const double d = static_cast<double>(c.d_model), ff = static_cast<double>(c.resolved_ff_dim());
  double per_token = 0;
  for (int64_t layer = 0; layer < c.layers; ++layer) {
    const AttentionConfig a = c.layer_config(layer).attention;
    per_token += 2 * 2 * d * ff  // feed-forward
                 + attention_spec(a.kind).flops(a, length);
  }
  const double head = 2 * d * static_cast<double>(c.vocab);
  return tokens * (per_token + head);
}

std::vector<DeviceGemmResult> measure_device_gemms(const std::vector<GemmCase>& cases, int64_t reps,
                                                   Device device) {
  NoGradGuard no_grad;
  std::vector<DeviceGemmResult> out;
  for (const GemmCase& g : cases) {
    Generator gen(7);
    const Tensor a = Tensor::randn({g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k}, gen).to(device);
    const Tensor b = Tensor::randn({g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n}, gen).to(device);
    const double flop =
        2.0 * static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k);
    out.push_back({g, best_gflops(flop, reps, [&] {
                     Tensor c = matmul(a, b, g.trans_a, g.trans_b);
                     synchronize(device);
                   })});
  }
  return out;
}

BenchResult run_bench(const BenchOptions& options, std::string* report) {
  const TrainOptions& o = options.train;
  set_num_threads(o.threads);
  const Device device = device_flag(o.device);
  BenchResult result;
  result.device = device.str();
  const Precision precision = precision_flag(o);
  result.precision = name(precision);
  CopyTask task({.length = o.length, .seed = o.seed});
  TransformerConfig config = o.model_config(task.vocab());
  check_training_memory(o, config, device);
  const std::vector<GemmCase> cases = gemm_cases(config, o.batch * o.length, options.gemm_size);
  if (device.is_cpu()) {
    result.isa = isa_name(active_isa());
    const Isa widest = supported_isas().back();
    result.fma_isa = isa_name(widest);
    result.fma_gflops = fma_peak_gflops(widest);
    result.gemms = measure_gemms(cases, options.gemm_reps);
    for (const GemmResult& g : result.gemms)
      result.best_gemm_gflops =
          std::max({result.best_gemm_gflops, g.polyak_gflops, g.eigen_gflops});
  } else {
    result.isa = result.device;
    result.device_gemms = measure_device_gemms(cases, options.gemm_reps, device);
    for (const DeviceGemmResult& g : result.device_gemms)
      result.best_gemm_gflops = std::max(result.best_gemm_gflops, g.gflops);
  }

  TransformerLM model(config);
  model.to(device);
  model.train();
  CopyOptimizer opt(model, o);
  CopyStepper stepper(model, opt, device, precision, o.graph);
  std::vector<double> times;
  std::vector<Tensor> losses;  // read after the timing: reading one waits for the device
  for (int64_t step = 1; step <= options.warmup + o.steps; ++step) {
    // The batch is drawn and moved outside the timed region, as in bench/torch_copy.py.
    stepper.load(task.batch(o.batch));
    synchronize(device);
    auto t0 = Clock::now();
    losses.push_back(stepper.step(step).loss);
    synchronize(device);  // a device's step has ended when its queued work has
    if (step > options.warmup) times.push_back(seconds_since(t0));
  }
  for (Tensor& l : losses) l = l.reshape({1});
  const std::vector<double> values = concat(losses, 0).to_vector();  // one read
  for (size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]))
      fail_non_finite_loss(
          values[i], static_cast<int64_t>(i) + 1,
          "polyak train with these flags names the first layer with non-finite values");
  double step_s = median(times);
  result.ms_per_step = 1000 * step_s;
  result.tokens_per_s = static_cast<double>(o.batch * o.length) / step_s;
  result.step_gflop = 3 * forward_flops(config, o.batch, o.length) / 1e9;
  result.gflops = result.step_gflop / step_s;
  result.percent_of_gemm = 100 * result.gflops / result.best_gemm_gflops;
  result.percent_of_fma_peak = device.is_cpu() ? 100 * result.gflops / result.fma_gflops : 0;

  std::ostringstream os;
  char line[512];
  auto dims_of = [](const GemmCase& g) {
    return std::to_string(g.m) + "x" + std::to_string(g.n) + "x" + std::to_string(g.k);
  };
  // The step's line up to "of the best", the same on a device and on the CPU.
  const std::string where = (device.is_cpu() ? "kernels " + result.isa : result.device) + ", " +
                            result.precision + (o.graph ? ", graph" : "");
  char step[512];
  std::snprintf(
      step, sizeof step,
      "polyak %s (%s preset: %lld layers, d %lld, %lld heads x %lld, ff %lld, batch %lld x %lld), "
      "%s: median %.1f ms/step over %lld steps, %.0f tokens/s, %.1f GFLOP/step, %.1f GFLOP/s = "
      "%.1f%% of the best ",
      o.model.c_str(), o.preset.c_str(), static_cast<long long>(config.layers),
      static_cast<long long>(config.d_model), static_cast<long long>(config.heads),
      static_cast<long long>(config.resolved_head_dim()),
      static_cast<long long>(config.resolved_ff_dim()), static_cast<long long>(o.batch),
      static_cast<long long>(o.length), where.c_str(), result.ms_per_step,
      static_cast<long long>(o.steps), result.tokens_per_s, result.step_gflop, result.gflops,
      result.percent_of_gemm);
  if (!device.is_cpu()) {
    std::snprintf(line, sizeof line, "f32 GEMM on %s (matmul), GFLOP/s, best of %lld:\n",
                  result.device.c_str(), static_cast<long long>(options.gemm_reps));
    os << line;
    for (const DeviceGemmResult& g : result.device_gemms) {
      std::snprintf(line, sizeof line, "  %-17s %20s %8.1f\n", g.shape.name,
                    dims_of(g.shape).c_str(), g.gflops);
      os << line;
    }
    std::snprintf(line, sizeof line, "device GEMM (%.1f)\n", result.best_gemm_gflops);
    os << step << line;
  } else {
    os << machine_text() << "\n";
    std::snprintf(line, sizeof line,
                  "fma peak: f32 %s multiply-add throughput, %d threads, best of 5: %.1f GFLOP/s "
                  "(no GEMM can pass it)\n",
                  result.fma_isa.c_str(), num_threads(), result.fma_gflops);
    os << line;
    std::snprintf(line, sizeof line,
                  "f32 GEMM, GFLOP/s, best of %lld, %d threads:\n"
                  "  %-17s %20s %-8s %8s %8s %7s %7s\n",
                  static_cast<long long>(options.gemm_reps), num_threads(), "product", "m x n x k",
                  "isa", "polyak", "eigen", "ratio", "%fma");
    os << line;
    for (const GemmResult& g : result.gemms) {
      std::snprintf(line, sizeof line, "  %-17s %20s %-8s %8.1f %8.1f %7.3f %6.1f%%\n",
                    g.shape.name, dims_of(g.shape).c_str(), isa_name(g.isa), g.polyak_gflops,
                    g.eigen_gflops, g.polyak_gflops / g.eigen_gflops,
                    100 * g.polyak_gflops / result.fma_gflops);
      os << line;
    }
    std::snprintf(line, sizeof line, "GEMM (%.1f), %.1f%% of the %s fma peak\n",
                  result.best_gemm_gflops, result.percent_of_fma_peak, result.fma_isa.c_str());
    os << step << line;
  }
  if (report) *report = os.str();

  if (!options.json.empty()) {
    nlohmann::json gemms = nlohmann::json::array();
    for (const GemmResult& g : result.gemms)
      gemms.push_back({{"product", g.shape.name},
                       {"m", g.shape.m},
                       {"n", g.shape.n},
                       {"k", g.shape.k},
                       {"trans_a", g.shape.trans_a},
                       {"trans_b", g.shape.trans_b},
                       {"isa", isa_name(g.isa)},
                       {"polyak_gflops", g.polyak_gflops},
                       {"eigen_gflops", g.eigen_gflops}});
    nlohmann::json j = {{"model", o.model},
                        {"device", result.device},
                        {"precision", result.precision},
                        {"preset", o.preset},
                        {"threads", num_threads()},
                        {"isa", result.isa},
                        {"cpu", cpu_model()},
                        {"steps", o.steps},
                        {"ms_per_step", result.ms_per_step},
                        {"tokens_per_s", result.tokens_per_s},
                        {"step_gflop", result.step_gflop},
                        {"gflops", result.gflops},
                        {"gemms", gemms},
                        {"best_gemm_gflops", result.best_gemm_gflops},
                        {"percent_of_gemm", result.percent_of_gemm},
                        {"fma_isa", result.fma_isa},
                        {"fma_peak_gflops", result.fma_gflops},
                        {"percent_of_fma_peak", result.percent_of_fma_peak}};
    write_text_file_atomically(options.json, j.dump(2) + "\n", "bench");
  }
  return result;
}

}  // namespace polyak::cli
