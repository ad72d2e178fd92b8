// Long sequences: causal linear attention forward + backward, time and memory against N.
//
//   y = causal_linear_attention(φ(q), φ(k), v),  φ(x) = elu(x) + 1,  then y.backward(dy)
//   q, k [B,H,N,D], v, dy [B,H,N,Dv], f32, B = 1, H = 8, D = Dv = 32
//
// For each N (4096, 16384, 65536 by default) the program re-executes itself with `--n N`,
// so each row's peak resident set (VmHWM, which only grows within a process) belongs to
// that N alone. Per row it prints the median time of forward + backward over --reps
// repetitions (after one warm-up), the process's peak RSS and polyak's allocator peak,
// and what storing one D×Dv state per position would have cost. The last line says
// whether peak memory grows linearly in N (peak/N about constant across rows).
//
// Usage: bench_long_sequence [--threads T] [--reps R] [--no-feature-map] [--sizes N,N,...]
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "polyak/polyak.h"

using namespace polyak;

namespace {

constexpr int64_t kB = 1, kH = 8, kD = 32, kDv = 32;

struct Options {
  int threads = 0;  // 0: all cores
  int reps = 5;
  bool feature_map = true;
  int64_t n = 0;  // > 0: child mode, measure this N only
  std::vector<int64_t> sizes = {4096, 16384, 65536};
};

struct Row {
  int64_t n = 0;
  double median_ms = 0, min_ms = 0;
  double rss_mib = 0, alloc_mib = 0;
};

[[noreturn]] void usage(const char* prog, const std::string& problem) {
  std::fprintf(stderr,
               "%s\nusage: %s [--threads T] [--reps R] [--no-feature-map] [--sizes N,N,...]\n",
               problem.c_str(), prog);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0], arg + " needs a value");
      return argv[++i];
    };
    try {
      if (arg == "--threads") {
        o.threads = std::stoi(value());
      } else if (arg == "--reps") {
        o.reps = std::max(1, std::stoi(value()));
      } else if (arg == "--n") {
        o.n = std::stoll(value());
      } else if (arg == "--no-feature-map") {
        o.feature_map = false;
      } else if (arg == "--sizes") {
        o.sizes.clear();
        std::stringstream list(value());
        for (std::string item; std::getline(list, item, ',');) o.sizes.push_back(std::stoll(item));
      } else {
        usage(argv[0], "unknown option " + arg);
      }
    } catch (const std::logic_error&) {
      usage(argv[0], "bad value for " + arg);
    }
  }
  return o;
}

// VmHWM (peak resident set) of this process, in MiB.
double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  }
  return 0;
}

// Child mode: one N, one line "n median_ms min_ms rss_mib alloc_mib" on stdout.
int measure(const Options& o) {
  if (o.threads > 0) set_num_threads(o.threads);
  const int64_t N = o.n;
  Generator gen(1);
  Tensor q = Tensor::randn({kB, kH, N, kD}, gen).requires_grad_();
  Tensor k = Tensor::randn({kB, kH, N, kD}, gen).requires_grad_();
  Tensor v = Tensor::randn({kB, kH, N, kDv}, gen).requires_grad_();
  Tensor dy = Tensor::randn({kB, kH, N, kDv}, gen);

  std::vector<double> ms;
  for (int rep = 0; rep <= o.reps; ++rep) {  // rep 0 warms up
    q.zero_grad();
    k.zero_grad();
    v.zero_grad();
    const auto t0 = std::chrono::steady_clock::now();
    Tensor y = o.feature_map ? causal_linear_attention(elu_feature_map(q), elu_feature_map(k), v)
                             : causal_linear_attention(q, k, v);
    y.backward(dy);
    const auto t1 = std::chrono::steady_clock::now();
    if (rep > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const double median =
      ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
  const double alloc_mib =
      static_cast<double>(allocator_stats().peak_allocated_bytes) / (1024.0 * 1024.0);
  std::printf("%lld %.6f %.6f %.3f %.3f\n", static_cast<long long>(N), median, ms.front(),
              peak_rss_mib(), alloc_mib);
  return 0;
}

// Parent mode: one child process per N.
bool run_child(const char* self, const Options& o, int64_t n, Row& row) {
  std::string cmd;  // built piecewise: GCC 12 warns falsely on "'" + std::string(...)
  cmd.append("'").append(self).append("' --n ").append(std::to_string(n));
  cmd.append(" --reps ").append(std::to_string(o.reps));
  cmd.append(" --threads ").append(std::to_string(o.threads));
  if (!o.feature_map) cmd.append(" --no-feature-map");
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return false;
  long long n_read = 0;
  const int fields = std::fscanf(pipe, "%lld %lf %lf %lf %lf", &n_read, &row.median_ms, &row.min_ms,
                                 &row.rss_mib, &row.alloc_mib);
  const int status = pclose(pipe);
  row.n = n_read;
  return fields == 5 && status == 0 && n_read == n;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  if (o.n > 0) return measure(o);

  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len <= 0) usage(argv[0], "cannot find this program's path in /proc/self/exe");
  self[len] = '\0';

  std::printf("causal_linear_attention forward + backward, f32, B=%lld H=%lld D=%lld Dv=%lld, %s\n",
              static_cast<long long>(kB), static_cast<long long>(kH), static_cast<long long>(kD),
              static_cast<long long>(kDv),
              o.feature_map ? "q, k through elu_feature_map (timed)" : "no feature map");
  std::printf("threads %d, median of %d repetitions after one warm-up, one process per N\n",
              o.threads > 0 ? o.threads : num_threads(), o.reps);
  std::printf("%8s %12s %12s %14s %16s %20s\n", "N", "median ms", "min ms", "peak RSS MiB",
              "alloc peak MiB", "per-pos states MiB");
  std::fflush(stdout);

  std::vector<Row> rows;
  for (int64_t n : o.sizes) {
    Row row;
    if (!run_child(self, o, n, row)) {
      std::fprintf(stderr, "measurement for N = %lld failed\n", static_cast<long long>(n));
      return 1;
    }
    // What an O(N·D·Dv) implementation would hold: one D×Dv f32 state per position and head.
    const double states_mib = static_cast<double>(kB * kH * n * kD * kDv) * 4 / (1024.0 * 1024.0);
    std::printf("%8lld %12.2f %12.2f %14.1f %16.1f %20.1f\n", static_cast<long long>(n),
                row.median_ms, row.min_ms, row.rss_mib, row.alloc_mib, states_mib);
    std::fflush(stdout);
    rows.push_back(row);
  }

  // Linear growth: peak / N stays about constant from the smallest N to the largest.
  if (rows.size() >= 2) {
    const Row& first = rows.front();
    const Row& last = rows.back();
    const double alloc_ratio = (last.alloc_mib / static_cast<double>(last.n)) /
                               (first.alloc_mib / static_cast<double>(first.n));
    const double rss_ratio = (last.rss_mib / static_cast<double>(last.n)) /
                             (first.rss_mib / static_cast<double>(first.n));
    const bool linear = alloc_ratio > 0.8 && alloc_ratio < 1.25 && rss_ratio < 1.25;
    std::printf(
        "memory: allocator peak/N ratio (N=%lld vs N=%lld) %.3f, peak RSS/N ratio %.3f: "
        "peak memory %s linearly in N\n",
        static_cast<long long>(last.n), static_cast<long long>(first.n), alloc_ratio, rss_ratio,
        linear ? "grows" : "does NOT grow");
  }
  return 0;
}
