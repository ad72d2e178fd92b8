// Long sequences: causal linear and causal momentum attention forward + backward, time and
// memory against N.
//
//   linear:    y = causal_linear_attention(φ(q), φ(k), v)
//   momentum:  y = causal_momentum_attention(φ(q), φ(k), v, β = 0.1, γ = 0.6)  (exact, eq. 13)
//   φ(x) = elu(x) + 1, then y.backward(dy)
//   q, k [B,H,N,D], v, dy [B,H,N,Dv], f32, B = 1, H = 8, D = Dv = 32
//
// For each kind and N (4096, 16384, 65536 by default) the program re-executes itself with
// `--kind K --n N`, so each row's peak resident set (VmHWM, which only grows within a
// process) belongs to that measurement alone. Per row it prints the median time of forward
// + backward over --reps repetitions (after one warm-up), the process's peak RSS and
// polyak's allocator peak, and what storing one D×Dv state per position would have cost.
// Per N a line gives the momentum/linear ratio of the medians (both measured in this run,
// alternating kinds per N); per kind a last line says whether peak memory grows linearly
// in N (peak/N about constant across rows).
//
// With --device cuda (or cuda:N) q, k, v and dy live on that GPU, the clocks are read after
// synchronize(device), and the memory columns are the device allocator's peak (the host's RSS
// says nothing there); the linearity check reads that peak alone. N = 1,048,576 needs about
// 1 GiB per [1,8,N,32] tensor: bench/device.sh runs it on the GPU, not on the CPU.
//
// Usage: bench_long_sequence [--threads T] [--reps R] [--no-feature-map] [--sizes N,N,...]
//                            [--kinds linear,momentum] [--device cpu|cuda|cuda:N]
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/args.h"
#include "bench/rows.h"
#include "polyak/ops/attention/momentum_attention.h"
#include "polyak/polyak.h"

using namespace polyak;

namespace {

constexpr int64_t kB = 1, kH = 8, kD = 32, kDv = 32;
// The paper's copy-task momentum (Table 1); the time does not depend on the values.
constexpr double kBeta = 0.1, kGamma = 0.6;
const std::vector<std::string> kKinds = {"linear", "momentum"};

struct Options {
  int threads = 0;  // 0: all cores
  int reps = 5;
  bool feature_map = true;
  int64_t n = 0;     // > 0: child mode, measure this N only
  std::string kind;  // child mode: "linear" or "momentum"
  std::vector<int64_t> sizes = {4096, 16384, 65536};
  std::vector<std::string> kinds = kKinds;
  std::string device = "cpu";
};

// The flags, checked as they are read: a bad command line exits with status 2.
Options parse(int argc, char** argv) {
  Options o;
  CLI::App app{
      "Causal linear and momentum attention forward + backward: time and peak memory against "
      "N, one process per row.",
      "bench_long_sequence"};
  bench::set_option_defaults(app);
  app.add_option("--threads", o.threads, "OpenMP threads (0: all cores)")
      ->check(bench::integer_at_least(0));
  app.add_option("--reps", o.reps, "timed repetitions per row, after one warm-up")
      ->check(bench::integer_at_least(1));
  app.add_flag_callback(
      "--no-feature-map", [&o] { o.feature_map = false; },
      "attend over q and k as drawn, without elu_feature_map");
  bench::add_integer_list(app, "--sizes", o.sizes, 1, "the sequence lengths N");
  bench::add_name_list(app, "--kinds", o.kinds, kKinds, "the attention kinds");
  app.add_option("--device", o.device, "cpu | cuda | cuda:N: where the tensors live")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            try {
              (void)parse_device(text, "--device");
              return "";
            } catch (const Error&) {
              return "'" + text + "', expected cpu, cuda or cuda:N";
            }
          },
          ""));
  bench::add_child_flags(app, o.kind, kKinds, &o.n);
  bench::parse_or_exit(app, argc, argv);
  return o;
}

// Child mode: one kind and N, one line "n median_ms min_ms rss_mib alloc_mib" on stdout
// (alloc_mib: the allocator peak of the device the tensors are on).
int measure(const Options& o, Device device) {
  if (o.threads > 0) set_num_threads(o.threads);
  const int64_t N = o.n;
  Generator gen(1);
  // Drawn on the host, then moved: the same numbers on every device.
  Tensor q = Tensor::randn({kB, kH, N, kD}, gen).to(device).requires_grad_();
  Tensor k = Tensor::randn({kB, kH, N, kD}, gen).to(device).requires_grad_();
  Tensor v = Tensor::randn({kB, kH, N, kDv}, gen).to(device).requires_grad_();
  Tensor dy = Tensor::randn({kB, kH, N, kDv}, gen).to(device);

  std::vector<double> ms;
  for (int rep = 0; rep <= o.reps; ++rep) {  // rep 0 warms up
    q.zero_grad();
    k.zero_grad();
    v.zero_grad();
    synchronize(device);  // a device's clock starts when its queued work has ended
    const auto t0 = std::chrono::steady_clock::now();
    const Tensor fq = o.feature_map ? elu_feature_map(q) : q;
    const Tensor fk = o.feature_map ? elu_feature_map(k) : k;
    Tensor y = o.kind == "momentum" ? causal_momentum_attention(fq, fk, v, kBeta, kGamma)
                                    : causal_linear_attention(fq, fk, v);
    y.backward(dy);
    synchronize(device);
    const auto t1 = std::chrono::steady_clock::now();
    if (rep > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  bench::print_row_line(N, ms, device);
  return 0;
}

// Parent mode: one child process per kind and N.
bool run_child(const char* self, const Options& o, const std::string& kind, int64_t n,
               bench::Row& row) {
  std::string cmd;  // built piecewise: GCC 12 warns falsely on "'" + std::string(...)
  cmd.append("'").append(self).append("' --kind ").append(kind);
  cmd.append(" --n ").append(std::to_string(n));
  cmd.append(" --reps ").append(std::to_string(o.reps));
  cmd.append(" --threads ").append(std::to_string(o.threads));
  cmd.append(" --device ").append(o.device);
  if (!o.feature_map) cmd.append(" --no-feature-map");
  return bench::read_row(cmd, kind, n, row);
}

// Linear growth: peak / N stays about constant from the smallest N to the largest. On a
// device only the allocator's peak is read (the host's RSS holds the CUDA context, not N).
void print_memory_check(const std::string& kind, const std::vector<bench::Row>& rows,
                        bool on_device) {
  if (rows.size() < 2) return;
  const bench::Row& first = rows.front();
  const bench::Row& last = rows.back();
  const double alloc_ratio = (last.alloc_mib / static_cast<double>(last.n)) /
                             (first.alloc_mib / static_cast<double>(first.n));
  const double rss_ratio =
      (last.rss_mib / static_cast<double>(last.n)) / (first.rss_mib / static_cast<double>(first.n));
  const bool linear = alloc_ratio > 0.8 && alloc_ratio < 1.25 && (on_device || rss_ratio < 1.25);
  if (on_device) {
    std::printf(
        "memory %s: device allocator peak/N ratio (N=%lld vs N=%lld) %.3f: peak memory %s "
        "linearly in N\n",
        kind.c_str(), static_cast<long long>(last.n), static_cast<long long>(first.n), alloc_ratio,
        linear ? "grows" : "does NOT grow");
    return;
  }
  std::printf(
      "memory %s: allocator peak/N ratio (N=%lld vs N=%lld) %.3f, peak RSS/N ratio %.3f: "
      "peak memory %s linearly in N\n",
      kind.c_str(), static_cast<long long>(last.n), static_cast<long long>(first.n), alloc_ratio,
      rss_ratio, linear ? "grows" : "does NOT grow");
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  const Device device = parse_device(o.device, "--device");  // checked by parse()
  try {
    check_device_available(device, "bench_long_sequence");
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  if (o.n > 0) return measure(o, device);

  const std::string self_path = bench::self_path();
  if (self_path.empty()) {
    std::fprintf(stderr,
                 "bench_long_sequence: cannot find this program's path in /proc/self/exe\n");
    return 1;
  }
  const char* self = self_path.c_str();

  std::printf(
      "causal attention forward + backward, f32, B=%lld H=%lld D=%lld Dv=%lld, on %s, %s\n"
      "kinds: linear = causal_linear_attention, momentum = causal_momentum_attention "
      "(exact, beta=%g gamma=%g)\n",
      static_cast<long long>(kB), static_cast<long long>(kH), static_cast<long long>(kD),
      static_cast<long long>(kDv), device.str().c_str(),
      o.feature_map ? "q, k through elu_feature_map (timed)" : "no feature map", kBeta, kGamma);
  std::printf("threads %d, median of %d repetitions after one warm-up, one process per row\n",
              o.threads > 0 ? o.threads : num_threads(), o.reps);
  const bool on_device = !device.is_cpu();
  if (on_device)  // bench/fla_attention.py prints its rows in this layout too
    std::printf("%-9s %8s %12s %12s %16s %20s\n", "kind", "N", "median ms", "min ms",
                "device peak MiB", "per-pos states MiB");
  else
    std::printf("%-9s %8s %12s %12s %14s %16s %20s\n", "kind", "N", "median ms", "min ms",
                "peak RSS MiB", "alloc peak MiB", "per-pos states MiB");
  std::fflush(stdout);

  std::vector<std::vector<bench::Row>> rows(o.kinds.size());
  for (int64_t n : o.sizes) {
    std::vector<const bench::Row*> at_n(o.kinds.size(), nullptr);
    for (size_t kind = 0; kind < o.kinds.size(); ++kind) {
      bench::Row row;
      if (!run_child(self, o, o.kinds[kind], n, row)) {
        std::fprintf(stderr, "measurement of %s for N = %lld failed\n", o.kinds[kind].c_str(),
                     static_cast<long long>(n));
        return 1;
      }
      // What an O(N·D·Dv) implementation would hold: one D×Dv f32 state per position and head.
      const double states_mib = static_cast<double>(kB * kH * n * kD * kDv) * 4 / (1024.0 * 1024.0);
      if (on_device)
        std::printf("%-9s %8lld %12.2f %12.2f %16.1f %20.1f\n", row.kind.c_str(),
                    static_cast<long long>(n), row.median_ms, row.min_ms, row.alloc_mib,
                    states_mib);
      else
        std::printf("%-9s %8lld %12.2f %12.2f %14.1f %16.1f %20.1f\n", row.kind.c_str(),
                    static_cast<long long>(n), row.median_ms, row.min_ms, row.rss_mib,
                    row.alloc_mib, states_mib);
      std::fflush(stdout);
      rows[kind].push_back(row);
      at_n[kind] = &rows[kind].back();
    }
    const bench::Row* lin = nullptr;
    const bench::Row* mom = nullptr;
    for (size_t kind = 0; kind < o.kinds.size(); ++kind) {
      if (o.kinds[kind] == "linear") lin = at_n[kind];
      if (o.kinds[kind] == "momentum") mom = at_n[kind];
    }
    if (lin != nullptr && mom != nullptr) {
      std::printf("ratio     %8lld momentum/linear median time %.3f\n", static_cast<long long>(n),
                  mom->median_ms / lin->median_ms);
      std::fflush(stdout);
    }
  }
  for (size_t kind = 0; kind < o.kinds.size(); ++kind)
    print_memory_check(o.kinds[kind], rows[kind], on_device);
  return 0;
}
