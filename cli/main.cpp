// The polyak program: `polyak train` and `polyak bench`. The library never prints; this does.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/bench.h"
#include "cli/copy_run.h"
#include "cli/options.h"
#include "core/threads.h"

namespace {

using polyak::cli::StepRecord;

std::string clock_text(double seconds) {
  int s = static_cast<int>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d:%02d", s / 60, s % 60);
  return buf;
}

int run_train(const polyak::cli::TrainOptions& o) {
  const bool tty = isatty(STDOUT_FILENO);
  std::printf(
      "polyak train: copy task, %s attention, %lld layers, d %lld, %lld heads, L %lld, "
      "batch %lld, %lld steps, %d threads\n",
      o.model.c_str(), static_cast<long long>(o.layers), static_cast<long long>(o.d_model),
      static_cast<long long>(o.heads), static_cast<long long>(o.length),
      static_cast<long long>(o.batch), static_cast<long long>(o.steps),
      o.threads > 0 ? o.threads : polyak::num_threads());
  std::fflush(stdout);
  double last_print = -1;
  auto on_step = [&](const StepRecord& r) {
    if (o.quiet) return;
    bool eval = r.test_accuracy >= 0;
    // A live line on a terminal; a line every few seconds (and at evaluations) otherwise.
    if (!eval && r.step != o.steps && r.seconds - last_print < (tty ? 0.2 : 10.0)) return;
    last_print = r.seconds;
    double tokens_per_s = static_cast<double>(r.step * o.batch * o.length) / r.seconds;
    double eta = r.seconds / static_cast<double>(r.step) * static_cast<double>(o.steps - r.step);
    std::printf("%sstep %6lld/%lld  loss %.4f  acc %5.1f%%  %8.0f tok/s  elapsed %s  ETA %s",
                tty ? "\r" : "", static_cast<long long>(r.step), static_cast<long long>(o.steps),
                r.loss, 100 * r.accuracy, tokens_per_s, clock_text(r.seconds).c_str(),
                clock_text(eta).c_str());
    if (eval) std::printf("  test acc %5.1f%%", 100 * r.test_accuracy);
    if (eval || !tty) std::printf("\n");
    std::fflush(stdout);
  };
  polyak::cli::TrainResult result = polyak::cli::train_copy(o, on_step);
  std::printf(
      "test accuracy on the copied word: %.2f%% (reference-code definition, counting the "
      "separator: %.2f%%) after %lld steps in %s\n",
      100 * result.test_accuracy, 100 * result.test_reference_accuracy,
      static_cast<long long>(o.steps), clock_text(result.seconds).c_str());
  std::printf("metrics: %s\nconfig:  %s\n", result.metrics_path.c_str(),
              result.config_path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    polyak::cli::Command cmd = polyak::cli::parse_command_line(args);
    if (cmd.name == "train") return run_train(cmd.train);
    std::string report;
    polyak::cli::run_bench(cmd.bench, &report);
    std::cout << report;
    return 0;
  } catch (const polyak::cli::HelpRequested& help) {
    std::cout << help.text;
    return 0;
  } catch (const polyak::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
