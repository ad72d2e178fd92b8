// Generation in RNN mode: tokens/s and memory against the number of generated tokens.
//
//   the paper's copy model (4 layers, 8 heads × 32, d 256, ff 1024, vocab 11), random
//   weights (seed 1), batch 1, prompt "1", then --tokens tokens, each fed back in
//
// For each kind (linear, momentum, adaptive, softmax by default) the program re-executes
// itself with `--kind K`, so that each row's peak resident set (VmHWM, which only grows
// within a process) belongs to that kind alone. Per row it prints the generation speed
// (tokens after the first over the time from the first to the last, so the prompt is
// excluded), the peak RSS, polyak's allocator peak, and the resident set (VmRSS) and live
// allocator bytes sampled at 10%, 50% and 100% of the run (1000, 5000 and 10000 tokens by
// default). The linear kinds keep a constant-size state per layer, so their memory is flat;
// softmax attention keeps a KV cache of 2 · layers · d floats per token, so its memory grows.
//
// Usage: bench_generate [--kinds K,K,...] [--tokens N] [--threads T] [--temperature X]
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/args.h"
#include "bench/rows.h"
#include "polyak/polyak.h"

using namespace polyak;

namespace {

constexpr int64_t kLayers = 4, kHeads = 8, kDModel = 256, kVocab = 11;

struct Options {
  std::vector<std::string> kinds = {"linear", "momentum", "adaptive", "softmax"};
  int64_t tokens = 10000;
  int threads = 0;  // 0: all cores
  double temperature = 0;
  std::string child_kind;  // non-empty: child mode, measure this kind only
};

struct Row {
  std::string kind;
  double tokens_per_s = 0, seconds = 0;
  double hwm_mib = 0, alloc_peak_mib = 0;
  std::array<double, 3> rss_mib{}, live_mib{};  // at the three sample points
};

// The flags, checked as they are read: a bad command line exits with status 2.
Options parse(int argc, char** argv) {
  Options o;
  CLI::App app{
      "RNN-mode generation of the copy model with random weights: tokens/s and memory "
      "against the number of generated tokens, one process per kind.",
      "bench_generate"};
  bench::set_option_defaults(app);
  bench::add_name_list(app, "--kinds", o.kinds, model_kinds(), "the model kinds");
  app.add_option("--tokens", o.tokens, "tokens generated after the prompt")
      ->check(bench::integer_at_least(10));
  app.add_option("--threads", o.threads, "OpenMP threads (0: all cores)")
      ->check(bench::integer_at_least(0));
  app.add_option("--temperature", o.temperature, "sampling temperature (0: greedy)")
      ->check(bench::number_at_least(0));
  bench::add_child_flags(app, o.child_kind, model_kinds());
  bench::parse_or_exit(app, argc, argv);
  return o;
}

double mib(size_t bytes) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0);
}

std::array<int64_t, 3> sample_points(int64_t tokens) {
  return {tokens / 10, tokens / 2, tokens};
}

// Child mode: one kind, one line
// "kind tok/s seconds hwm alloc_peak rss0 rss1 rss2 live0 live1 live2" on stdout.
int measure(const Options& o) {
  if (o.threads > 0) set_num_threads(o.threads);
  TransformerConfig c;  // its defaults are the paper's copy model
  c.vocab = kVocab;
  c.layers = kLayers;
  c.heads = kHeads;
  c.d_model = kDModel;
  c.max_len = o.tokens + 8;
  c.seed = 1;
  set_model_kind(c, o.child_kind);
  TransformerLM model(c);

  const std::array<int64_t, 3> points = sample_points(o.tokens);
  Row row;
  size_t next = 0;
  int64_t count = 0;
  std::chrono::steady_clock::time_point first, last;
  GenerateOptions g{.max_new_tokens = o.tokens,
                    .temperature = o.temperature,
                    .seed = 7,
                    .stop_token = -1,
                    .on_token = nullptr};
  g.on_token = [&](int32_t) {
    last = std::chrono::steady_clock::now();
    if (count++ == 0) first = last;
    if (next < points.size() && count == points[next]) {
      row.rss_mib[next] = bench::status_mib("VmRSS:");
      row.live_mib[next] = mib(allocator_stats().allocated_bytes);
      ++next;
    }
    return true;
  };
  std::vector<int32_t> out = generate(model, {1}, g);
  if (static_cast<int64_t>(out.size()) != o.tokens || count != o.tokens) {
    std::fprintf(stderr, "generate returned %zu tokens, expected %lld\n", out.size(),
                 static_cast<long long>(o.tokens));
    return 1;
  }
  row.seconds = std::chrono::duration<double>(last - first).count();
  row.tokens_per_s = static_cast<double>(count - 1) / row.seconds;
  std::printf("%s %.3f %.6f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f\n", o.child_kind.c_str(),
              row.tokens_per_s, row.seconds, bench::status_mib("VmHWM:"),
              mib(allocator_stats().peak_allocated_bytes), row.rss_mib[0], row.rss_mib[1],
              row.rss_mib[2], row.live_mib[0], row.live_mib[1], row.live_mib[2]);
  return 0;
}

// Parent mode: one child process per kind.
bool run_child(const char* self, const Options& o, const std::string& kind, Row& row) {
  std::string cmd;  // built piecewise: GCC 12 warns falsely on "'" + std::string(...)
  cmd.append("'").append(self).append("' --kind ").append(kind);
  cmd.append(" --tokens ").append(std::to_string(o.tokens));
  cmd.append(" --threads ").append(std::to_string(o.threads));
  cmd.append(" --temperature ").append(std::to_string(o.temperature));
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return false;
  char name[64] = {0};
  const int fields =
      std::fscanf(pipe, "%63s %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf", name, &row.tokens_per_s,
                  &row.seconds, &row.hwm_mib, &row.alloc_peak_mib, &row.rss_mib[0], &row.rss_mib[1],
                  &row.rss_mib[2], &row.live_mib[0], &row.live_mib[1], &row.live_mib[2]);
  const int status = pclose(pipe);
  row.kind = name;
  return fields == 11 && status == 0 && row.kind == kind;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  if (!o.child_kind.empty()) return measure(o);

  const std::string self_path = bench::self_path();
  if (self_path.empty()) {
    std::fprintf(stderr, "bench_generate: cannot find this program's path in /proc/self/exe\n");
    return 1;
  }
  const char* self = self_path.c_str();

  const std::array<int64_t, 3> points = sample_points(o.tokens);
  std::printf(
      "RNN-mode generation, f32, batch 1: %lld layers, d %lld, %lld heads, vocab %lld, random "
      "weights; prompt 1 token, then %lld tokens (%s)\n",
      static_cast<long long>(kLayers), static_cast<long long>(kDModel),
      static_cast<long long>(kHeads), static_cast<long long>(kVocab),
      static_cast<long long>(o.tokens), o.temperature > 0 ? "sampled, seed 7" : "greedy");
  std::printf(
      "threads %d, one process per kind; RSS and live allocator MiB at tokens %lld / "
      "%lld / %lld\n",
      o.threads > 0 ? o.threads : num_threads(), static_cast<long long>(points[0]),
      static_cast<long long>(points[1]), static_cast<long long>(points[2]));
  std::printf("%-20s %10s %10s %24s %24s %10s\n", "kind", "tokens/s", "peak RSS", "RSS MiB",
              "live alloc MiB", "alloc peak");
  std::fflush(stdout);

  for (const std::string& kind : o.kinds) {
    Row row;
    if (!run_child(self, o, kind, row)) {
      std::fprintf(stderr, "measurement for %s failed\n", kind.c_str());
      return 1;
    }
    char rss[64], live[64];
    std::snprintf(rss, sizeof rss, "%.1f / %.1f / %.1f", row.rss_mib[0], row.rss_mib[1],
                  row.rss_mib[2]);
    std::snprintf(live, sizeof live, "%.2f / %.2f / %.2f", row.live_mib[0], row.live_mib[1],
                  row.live_mib[2]);
    std::printf("%-20s %10.0f %10.1f %24s %24s %10.2f\n", kind.c_str(), row.tokens_per_s,
                row.hwm_mib, rss, live, row.alloc_peak_mib);
    // "A few MiB": the RSS moves by allocator and page-cache noise even for a fixed state.
    const double growth = row.rss_mib[2] - row.rss_mib[0];
    const double live_growth = row.live_mib[2] - row.live_mib[0];
    if (growth <= 4.0 && live_growth <= 1.0) {
      std::printf(
          "  %s: memory flat across the run (RSS %+.1f MiB, live %+.2f MiB from token "
          "%lld to %lld)\n",
          kind.c_str(), growth, live_growth, static_cast<long long>(points[0]),
          static_cast<long long>(points[2]));
    } else {
      // Softmax's KV cache: keys and values of every layer, d floats each, per token.
      const double kv_mib =
          mib(static_cast<size_t>(2 * kLayers * kDModel * 4 * (points[2] - points[0])));
      std::printf(
          "  %s: memory grows (RSS %+.1f MiB, live %+.2f MiB from token %lld to %lld; "
          "a KV cache of 2·layers·d floats per token would add %.1f MiB)\n",
          kind.c_str(), growth, live_growth, static_cast<long long>(points[0]),
          static_cast<long long>(points[2]), kv_mib);
    }
    std::fflush(stdout);
  }
  return 0;
}
