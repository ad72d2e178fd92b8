// Every model kind as a small language model: forward + backward time and peak memory
// against N, and whether they grow linearly in N.
//
//   TransformerLM: 2 layers, d_model 256, 8 heads × 32, ff 1024, vocab 256, dropout 0, f32,
//   the kinds' default settings (blocks of 64, m = 64, k = 64, Mega n 16, z 64)
//   tokens [1, N] and targets [1, N] uniform in the vocabulary, f32
//   loss = cross_entropy(model(tokens), targets), then loss.backward()
//   causal for every kind but linformer (non-causal only: it projects the whole sequence);
//   max_len = N for all (Linformer's E, F and Mega's relative position bias are sized by it)
//
// For each N (1024, 4096, 16384 by default) and kind the program re-executes itself with
// `--kind K --n N`, so each row's peak resident set (VmHWM, which only grows
// within a process) belongs to that measurement alone. Per row it prints the median time of
// forward + backward over --reps repetitions (after one warm-up), the peak RSS, polyak's
// allocator peak, and the attention weights the backward keeps. Kinds that keep N×N weights
// (softmax: heads × N × N per layer; mega: N × N) are skipped, with the reason, where those
// weights alone would pass --max-gib.
//
// Then per kind the growth from the smallest to the largest N measured: time and memory
// ratios divided by the N ratio (about 1, or less, when linear in N); and for the kinds that
// claim linear cost through blocks (transnormer, mega-chunk) their time against linear at
// each N, with whether it is within 2×.
//
// On a machine other processes share, --threads 1 gives the steadiest figures.
//
// Usage: bench_kinds [--kinds K,K,...] [--lengths N,N,...] [--reps R] [--threads T]
//                    [--max-gib G]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "bench/args.h"
#include "bench/rows.h"
#include "polyak/polyak.h"

using namespace polyak;

namespace {

constexpr int64_t kLayers = 2, kHeads = 8, kDModel = 256, kFF = 1024, kVocab = 256, kBatch = 1;
constexpr double kMiB = 1024.0 * 1024.0, kGiB = 1024.0 * kMiB;

struct Options {
  std::vector<std::string> kinds = model_kinds();
  std::vector<int64_t> lengths = {1024, 4096, 16384};
  int reps = 3;
  int threads = 0;  // 0: all cores
  double max_gib = 6;
  std::string child_kind;  // non-empty: child mode, measure this kind at N = child_n only
  int64_t child_n = 0;
};

// The flags, checked as they are read: a bad command line exits with status 2.
Options parse(int argc, char** argv) {
  Options o;
  CLI::App app{
      "Every model kind as a small language model: forward + backward time and peak memory "
      "against N, one process per row.",
      "bench_kinds"};
  bench::set_option_defaults(app);
  bench::add_name_list(app, "--kinds", o.kinds, model_kinds(), "the model kinds");
  bench::add_integer_list(app, "--lengths", o.lengths, 1, "the sequence lengths N");
  app.add_option("--reps", o.reps, "timed repetitions per row, after one warm-up")
      ->check(bench::integer_at_least(1));
  app.add_option("--threads", o.threads, "OpenMP threads (0: all cores)")
      ->check(bench::integer_at_least(0));
  app.add_option("--max-gib", o.max_gib,
                 "skip a row whose N×N attention weights alone would pass this many GiB")
      ->check(bench::number_above(0));
  bench::add_child_flags(app, o.child_kind, model_kinds(), &o.child_n);
  bench::parse_or_exit(app, argc, argv);
  return o;
}

TransformerConfig model_config(const std::string& kind, int64_t n) {
  TransformerConfig c;
  c.vocab = kVocab;
  c.max_len = n;
  c.d_model = kDModel;
  c.heads = kHeads;
  c.ff_dim = kFF;
  c.layers = kLayers;
  c.dropout = 0;
  set_model_kind(c, kind);
  c.causal = kind != "linformer";
  c.validate();
  return c;
}

// The attention weights the backward keeps, summed over the layers: [heads, N, W] f32 per
// layer, W the keys each query sees (N for softmax and mega, the block for diag and
// mega-chunk, k for linformer); the linear kinds keep none.
double attention_weights_bytes(const TransformerConfig& c, int64_t n) {
  double bytes = 0;
  for (int64_t layer = 0; layer < c.layers; ++layer) {
    const AttentionConfig a = c.layer_config(layer).attention;
    bytes += kBatch * attention_spec(a.kind).kept_bytes(a, n);
  }
  return bytes;
}

// Child mode: one kind and N, one line "n median_ms min_ms rss_mib alloc_mib" on stdout.
int measure(const Options& o) {
  if (o.threads > 0) set_num_threads(o.threads);
  const int64_t n = o.child_n;
  TransformerLM model(model_config(o.child_kind, n));
  model.train();
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(kVocab - 1));
  std::vector<int64_t> tokens(static_cast<size_t>(kBatch * n)), targets(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = token(rng);
    targets[i] = token(rng);
  }
  const Tensor x = Tensor::from_ints(tokens, {kBatch, n}),
               y = Tensor::from_ints(targets, {kBatch, n});

  std::vector<double> ms;
  for (int rep = 0; rep <= o.reps; ++rep) {  // rep 0 warms up
    model.zero_grad();
    const auto t0 = std::chrono::steady_clock::now();
    Tensor loss = cross_entropy(model(x), y);
    loss.backward();
    const auto t1 = std::chrono::steady_clock::now();
    if (rep > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  bench::print_row_line(n, ms);
  return 0;
}

// Parent mode: one child process per kind and N.
bool run_child(const std::string& self, const Options& o, const std::string& kind, int64_t n,
               bench::Row& row) {
  std::string cmd;  // built piecewise: GCC 12 warns falsely on "'" + std::string(...)
  cmd.append("'").append(self).append("' --kind ").append(kind);
  cmd.append(" --n ").append(std::to_string(n));
  cmd.append(" --reps ").append(std::to_string(o.reps));
  cmd.append(" --threads ").append(std::to_string(o.threads));
  return bench::read_row(cmd, kind, n, row);
}

const char* yes_no(bool yes) {
  return yes ? "yes" : "no";
}

// Growth from the kind's smallest measured N to its largest, each ratio divided by the N
// ratio: about 1 (or less, where fixed costs dominate the small N) when linear in N.
void print_growth(const std::string& kind, const std::vector<bench::Row>& rows) {
  if (rows.size() < 2) {
    std::printf("%-20s fewer than two lengths measured: no growth figure\n", kind.c_str());
    return;
  }
  const bench::Row& a = rows.front();
  const bench::Row& b = rows.back();
  const double n_ratio = static_cast<double>(b.n) / static_cast<double>(a.n);
  const double time = b.median_ms / a.median_ms / n_ratio;
  const double alloc = b.alloc_mib / a.alloc_mib / n_ratio;
  const double rss = b.rss_mib / a.rss_mib / n_ratio;
  // 1.5 leaves room for noise and cache effects; quadratic growth gives about n_ratio.
  const bool linear = time < 1.5 && alloc < 1.5;
  std::printf(
      "%-20s N %lld → %lld (×%g): time ×%.2f (/%g = %.2f), alloc peak ×%.2f (/%g = %.2f), "
      "peak RSS ×%.2f (/%g = %.2f): linear in N: %s\n",
      kind.c_str(), static_cast<long long>(a.n), static_cast<long long>(b.n), n_ratio,
      time * n_ratio, n_ratio, time, alloc * n_ratio, n_ratio, alloc, rss * n_ratio, n_ratio, rss,
      yes_no(linear));
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (!o.child_kind.empty()) return measure(o);

  const std::string self = bench::self_path();
  if (self.empty()) {
    std::fprintf(stderr, "bench_kinds: cannot find this program's path in /proc/self/exe\n");
    return 1;
  }

  std::printf(
      "model kinds as language models, forward + backward of the cross-entropy, f32: %lld "
      "layers, d %lld, %lld heads, ff %lld, vocab %lld, B = %lld, dropout 0; causal but for "
      "linformer; max_len = N\n",
      static_cast<long long>(kLayers), static_cast<long long>(kDModel),
      static_cast<long long>(kHeads), static_cast<long long>(kFF), static_cast<long long>(kVocab),
      static_cast<long long>(kBatch));
  std::printf(
      "threads %d, median of %d repetitions after one warm-up, one process per row; kinds "
      "whose N×N attention weights would pass %g GiB are skipped\n",
      o.threads > 0 ? o.threads : num_threads(), o.reps, o.max_gib);
  std::printf("%-20s %6s %11s %11s %13s %15s %17s\n", "kind", "N", "median ms", "min ms",
              "peak RSS MiB", "alloc peak MiB", "attn weights MiB");
  std::fflush(stdout);

  std::map<std::string, std::vector<bench::Row>> rows;
  for (int64_t n : o.lengths) {
    for (const std::string& kind : o.kinds) {
      const TransformerConfig config = model_config(kind, n);
      const double weights = attention_weights_bytes(config, n);
      if (weights > o.max_gib * kGiB) {
        std::printf(
            "%-20s %6lld skipped: its attention weights alone need %.1f GiB, over "
            "--max-gib %g\n",
            kind.c_str(), static_cast<long long>(n), weights / kGiB, o.max_gib);
        std::fflush(stdout);
        continue;
      }
      bench::Row row;
      if (!run_child(self, o, kind, n, row)) {
        std::fprintf(stderr, "measurement of %s at N = %lld failed\n", kind.c_str(),
                     static_cast<long long>(n));
        return 1;
      }
      std::printf("%-20s %6lld %11.1f %11.1f %13.1f %15.1f %17.1f\n", kind.c_str(),
                  static_cast<long long>(n), row.median_ms, row.min_ms, row.rss_mib, row.alloc_mib,
                  weights / kMiB);
      std::fflush(stdout);
      rows[kind].push_back(row);
    }
  }

  std::printf(
      "\ngrowth from the smallest to the largest N measured (ratio / N ratio ≈ 1: linear)\n");
  for (const std::string& kind : o.kinds) print_growth(kind, rows[kind]);

  const std::vector<bench::Row>& linear = rows["linear"];
  for (const char* kind : {"transnormer", "mega-chunk"}) {
    const std::vector<bench::Row>& mine = rows[kind];
    for (const bench::Row& r : mine)
      for (const bench::Row& l : linear)
        if (l.n == r.n)
          std::printf("%s / linear time at N = %lld: %.2f (≤ 2×: %s)\n", kind,
                      static_cast<long long>(r.n), r.median_ms / l.median_ms,
                      yes_no(r.median_ms <= 2 * l.median_ms));
  }
  return 0;
}
