// The polyak program: train, bench, generate, compare, ablate and inspect-grads. The library
// never prints; this does.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <new>

#include "cli/bench.h"
#include "cli/copy_run.h"
#include "cli/experiments.h"
#include "cli/generate.h"
#include "cli/inspect.h"
#include "cli/options.h"
#include "cli/tasks.h"
#include "polyak/core/threads.h"

namespace {

using polyak::cli::StepRecord;
using polyak::cli::TrainOptions;

std::string clock_text(double seconds) {
  int s = static_cast<int>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d:%02d", s / 60, s % 60);
  return buf;
}

// The progress line of one training run: live on a terminal, every few seconds (and at
// evaluations) otherwise. `prefix` names the run inside a comparison.
class Progress {
 public:
  Progress(const TrainOptions& o, std::string prefix)
      : o_(o), prefix_(std::move(prefix)), tty_(isatty(STDOUT_FILENO)) {}

  void operator()(const StepRecord& r) {
    if (o_.quiet) return;
    bool eval = r.test_accuracy >= 0;
    if (!eval && r.step != o_.steps && r.seconds - last_print_ < (tty_ ? 0.2 : 10.0)) return;
    last_print_ = r.seconds;
    // Tokens a step trains on (fewer when ListOps pads its batches: an upper bound then).
    double tokens_per_s = static_cast<double>(r.step * o_.batch * o_.length) / r.train_seconds;
    double eta = r.seconds / static_cast<double>(r.step) * static_cast<double>(o_.steps - r.step);
    std::printf("%s%sstep %6lld/%lld  loss %.4f  %s  %8.0f tok/s  elapsed %s  ETA %s",
                tty_ ? "\r" : "", prefix_.c_str(), static_cast<long long>(r.step),
                static_cast<long long>(o_.steps), r.loss,
                figure(metrics_.train, r.accuracy).c_str(), tokens_per_s,
                clock_text(r.seconds).c_str(), clock_text(eta).c_str());
    if (eval) std::printf("  %s", figure(metrics_.test, r.test_accuracy).c_str());
    if (eval || !tty_) std::printf("\n");
    std::fflush(stdout);
  }

 private:
  // "acc 97.3%", "test bits/dim 3.412": a figure of the task, labelled.
  std::string figure(const char* column, double value) const {
    std::string label = column;
    for (auto [from, to] : {std::pair<const char*, const char*>{"test_", "test "},
                            {"val_", "val "},
                            {"accuracy", "acc"},
                            {"bits_per_byte", "bits/byte"},
                            {"bits_per_dim", "bits/dim"}})
      if (const size_t at = label.find(from); at != std::string::npos)
        label.replace(at, std::string(from).size(), to);
    char buf[64];
    if (metrics_.percent)
      std::snprintf(buf, sizeof buf, "%s %5.1f%%", label.c_str(), 100 * value);
    else
      std::snprintf(buf, sizeof buf, "%s %.3f", label.c_str(), value);
    return buf;
  }

  const TrainOptions& o_;
  std::string prefix_;
  bool tty_;
  polyak::cli::TaskMetrics metrics_ = polyak::cli::task_metrics(o_.task);
  double last_print_ = -1;
};

// A run's final figure, labelled: "test accuracy 97.30%", "test bits/dim 3.8620".
std::string test_figure(const std::string& task, double value) {
  char buf[64];
  if (polyak::cli::task_metrics(task).percent)
    std::snprintf(buf, sizeof buf, "test accuracy %.2f%%", 100 * value);
  else
    std::snprintf(buf, sizeof buf, "test %s %.4f", task == "text" ? "bits/byte" : "bits/dim",
                  value);
  return buf;
}

void print_model_line(const char* command, const TrainOptions& o) {
  std::printf(
      "polyak %s: %s task, %s model, %lld layers, d %lld, %lld heads, L %lld, batch %lld, "
      "%lld steps, %d threads\n",
      command, o.task.c_str(), o.model.c_str(), static_cast<long long>(o.layers),
      static_cast<long long>(o.d_model), static_cast<long long>(o.heads),
      static_cast<long long>(o.length), static_cast<long long>(o.batch),
      static_cast<long long>(o.steps), o.threads > 0 ? o.threads : polyak::num_threads());
  const std::vector<std::string>& kinds = polyak::model_kinds();
  // A checkpoint's custom (attention, connection) pair is no kind with settings to list.
  const bool known = std::find(kinds.begin(), kinds.end(), o.model) != kinds.end();
  const std::string settings = known ? polyak::cli::kind_settings(o) : "";
  if (!settings.empty()) std::printf("  %s\n", settings.c_str());
  std::fflush(stdout);
}

int train_command(const TrainOptions& o) {
  print_model_line("train", o);
  Progress progress(o, "");
  polyak::cli::TrainResult result =
      polyak::cli::train_run(o, [&](const StepRecord& r) { progress(r); });
  for (const std::string& file : result.removed_temporaries)
    std::fprintf(stderr, "polyak train: removed %s, left by a save that was killed half-way\n",
                 file.c_str());
  if (result.stopped_by != 0) {
    std::fprintf(stderr,
                 "\npolyak train: stopped by %s after step %lld of %lld; the run is saved in %s\n"
                 "continue it with: polyak train --resume %s\n",
                 result.stopped_by == SIGINT ? "SIGINT" : "SIGTERM",
                 static_cast<long long>(result.steps_done), static_cast<long long>(o.steps),
                 result.checkpoint_path.c_str(), o.out.c_str());
    return 128 + result.stopped_by;
  }
  std::printf("%s; after %lld steps in %s\n", result.summary.c_str(),
              static_cast<long long>(o.steps), clock_text(result.seconds).c_str());
  if (!result.made.empty()) std::printf("%s\n", result.made.c_str());
  if (result.data_batches > 0)
    std::printf(
        "data: %lld batches made on their own thread in %.1f s (%.0f batches/s), the steps "
        "waited %.2f s for them in all (training: %.1f s)\n",
        static_cast<long long>(result.data_batches), result.data_seconds,
        result.data_seconds > 0 ? static_cast<double>(result.data_batches) / result.data_seconds
                                : 0.0,
        result.data_wait_seconds, result.train_seconds);
  std::printf("metrics: %s\nconfig:  %s\nmodel:   %s\n", result.metrics_path.c_str(),
              result.config_path.c_str(), result.model_path.c_str());
  return 0;
}

std::string token_list(const std::vector<int32_t>& tokens) {
  std::string s;
  for (int32_t t : tokens) {
    if (!s.empty()) s += ' ';
    s += std::to_string(t);
  }
  return s;
}

int generate_command(const polyak::cli::GenerateCommand& o) {
  polyak::cli::GenerateReport r = polyak::cli::run_generate(o);
  const std::string kind = r.kind.empty() ? "custom" : r.kind;
  if (r.images > 0) {
    std::printf(
        "%s model, %d threads: %lld images of 784 pixels in %.1f s (%.2f images/s, RNN mode, "
        "all images one batch); recurrent state %.1f KiB per image at its start\ngrid: %s\n",
        kind.c_str(), polyak::num_threads(), static_cast<long long>(r.images), r.image_seconds,
        static_cast<double>(r.images) / r.image_seconds,
        static_cast<double>(r.state_bytes) / 1024.0, r.png.c_str());
    return 0;
  }
  if (o.copy == 0 && r.task == "text") {
    std::string text;
    for (int32_t t : r.tokens) {
      const auto c = static_cast<unsigned char>(t);
      if (c == '\n' || c == '\t' || (c >= 32 && c < 127) || c >= 128)
        text += static_cast<char>(c);
      else
        text += '.';
    }
    std::printf("%s%s\n", o.prompt.c_str(), text.c_str());
  } else if (o.copy == 0) {
    std::printf("%s\n", token_list(r.tokens).c_str());
  } else {
    for (const polyak::cli::CopyExample& ex : r.examples)
      std::printf("w   %s\nout %s  %s\n", token_list(ex.word).c_str(),
                  token_list(ex.output).c_str(), ex.output == ex.word ? "(exact)" : "(differs)");
    std::printf(
        "copy: %lld of %lld test words reproduced exactly (%.1f%%), token accuracy %.2f%% "
        "(%lld of %lld)\n",
        static_cast<long long>(r.words_exact), static_cast<long long>(r.words),
        100.0 * static_cast<double>(r.words_exact) / static_cast<double>(r.words),
        100.0 * static_cast<double>(r.word_tokens_right) / static_cast<double>(r.word_tokens),
        static_cast<long long>(r.word_tokens_right), static_cast<long long>(r.word_tokens));
  }
  std::printf("%s model, %d threads: prompt %lld tokens at %.0f tokens/s; generated %lld tokens",
              kind.c_str(), polyak::num_threads(), static_cast<long long>(r.prompt_tokens),
              r.prompt_tokens_per_s(), static_cast<long long>(r.generated_tokens));
  if (r.timed_tokens > 0)
    std::printf(" at %.0f tokens/s (one step each, prompt excluded)\n", r.generated_tokens_per_s());
  else
    std::printf(" (too few to time apart from the prompt)\n");
  return 0;
}

// `text` padded with spaces to `width` columns: UTF-8 continuation bytes and combining
// marks (the tilde of β̃) take no column.
std::string padded(const std::string& text, size_t width) {
  size_t columns = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const bool continuation = (byte & 0xC0) == 0x80;
    const bool combining = byte == 0xCC || (byte == 0xCD && i + 1 < text.size() &&
                                            static_cast<unsigned char>(text[i + 1]) < 0xB0);
    if (!continuation && !combining) ++columns;
  }
  return text + std::string(columns < width ? width - columns : 0, ' ');
}

// compare and ablate: progress per run, a table at the end, the PNG's fate.
int experiment_command(const polyak::cli::ExperimentOptions& e) {
  const std::string command = e.study == "compare" ? "compare" : "ablate " + e.study;
  std::vector<polyak::cli::ExperimentRun> runs = polyak::cli::experiment_runs(e);
  std::printf("polyak %s: %zu runs, one after the other, seed %llu, into %s\n", command.c_str(),
              runs.size(), static_cast<unsigned long long>(e.train.seed), e.train.out.c_str());
  std::unique_ptr<Progress> progress;
  polyak::cli::ExperimentCallbacks cb;
  cb.on_run_start = [&](const polyak::cli::ExperimentRun& run, size_t i, size_t n) {
    std::printf("[%zu/%zu] %s\n", i + 1, n, run.label.c_str());
    print_model_line(command.c_str(), run.options);
    progress = std::make_unique<Progress>(run.options, "  ");
  };
  cb.on_step = [&](const StepRecord& r) { (*progress)(r); };
  cb.on_run_end = [&](const polyak::cli::RunSummary& s) {
    if (!s.ok)
      std::printf("  %s failed: %s\n", s.label.c_str(), s.error.c_str());
    else
      std::printf("  %s: final train loss %.4f, %s, %.2f s per 100 steps\n", s.label.c_str(),
                  s.final_train_loss, test_figure(e.train.task, s.final_test_accuracy).c_str(),
                  s.seconds_per_100_steps);
    std::fflush(stdout);
  };
  polyak::cli::ExperimentResult result = polyak::cli::run_experiment(e, cb);
  if (result.stopped_by != 0) {
    std::fprintf(stderr,
                 "\npolyak %s: stopped by %s; the finished runs and the stopped one are saved "
                 "in %s\ncontinue with the same command and --resume\n",
                 command.c_str(), result.stopped_by == SIGINT ? "SIGINT" : "SIGTERM",
                 e.train.out.c_str());
    return 128 + result.stopped_by;
  }

  const bool percent = polyak::cli::task_metrics(e.train.task).percent;
  // Steps to 90% word accuracy is a copy-task figure; the other tasks leave the column out.
  const bool copy = e.train.task == "copy";
  std::printf("\n%-22s %12s %10s %12s %10s%s\n", "run", "train loss",
              percent ? "test acc" : "test bits", "s/100 steps", "total s",
              copy ? "   step@90%" : "");
  for (const polyak::cli::RunSummary& s : result.runs) {
    if (!s.ok) {
      std::printf("%s %12s\n", padded(s.label, 22).c_str(), "failed");
      continue;
    }
    const double shown = percent ? 100 * s.final_test_accuracy : s.final_test_accuracy;
    std::string to_90;  // " %10s" of the copy task's column, or nothing
    if (copy) {
      to_90 = s.steps_to_90 >= 0 ? std::to_string(s.steps_to_90) : "-";
      to_90.insert(0, 11 - std::min<size_t>(10, to_90.size()), ' ');
    }
    std::printf("%s %12.4f %9.*f%s %12.2f %10.1f%s\n", padded(s.label, 22).c_str(),
                s.final_train_loss, percent ? 2 : 4, shown, percent ? "%" : " ",
                s.seconds_per_100_steps, s.total_seconds, to_90.c_str());
  }
  std::printf("(train loss: mean of the last 100 steps; %s)\nsummary: %s\n",
              e.train.task == "copy" ? "test accuracy: word accuracy on ≥ 32 test batches"
              : percent              ? "test accuracy on the test split"
                                     : "the test split's bits per dim (or byte)",
              result.summary_path.c_str());
  int status = result.failed_runs > 0 ? 1 : 0;
  if (result.plot.drawn) {
    std::printf("figure:  %s\n", result.png_path.c_str());
  } else {
    std::fprintf(stderr,
                 "polyak %s: %s was not drawn: %s\nthe CSVs are complete; draw it later with: "
                 "%s %s %s --out %s\n",
                 command.c_str(), result.png_path.c_str(), result.plot.message.c_str(),
                 e.python.c_str(), e.plot_script.c_str(), e.train.out.c_str(),
                 result.png_path.c_str());
    status = 3;
  }
  return status;
}

// inspect-grads: progress per run, a table of the norms at the end, the PNG's fate.
int inspect_command(const polyak::cli::InspectOptions& o) {
  std::printf(
      "polyak inspect-grads: %zu runs, one after the other, seed %llu, every %lld steps, "
      "into %s\n",
      o.checkpoints.empty() ? o.kinds.size() : o.checkpoints.size(),
      static_cast<unsigned long long>(o.train.seed), static_cast<long long>(o.every),
      o.train.out.c_str());
  std::unique_ptr<Progress> progress;
  polyak::cli::InspectCallbacks cb;
  cb.on_run_start = [&](const polyak::cli::GradRun& run, size_t i, size_t n) {
    std::printf("[%zu/%zu] %s%s%s\n", i + 1, n, run.name.c_str(),
                run.checkpoint.empty() ? "" : ", training on from ", run.checkpoint.c_str());
    print_model_line("inspect-grads", run.options);
    progress = std::make_unique<Progress>(run.options, "  ");
  };
  cb.on_step = [&](const StepRecord& r) { (*progress)(r); };
  cb.on_run_end = [&](const polyak::cli::GradRun& run) {
    if (!run.ok) std::printf("  %s failed: %s\n", run.name.c_str(), run.error.c_str());
    std::printf("  %s: %s\n", run.name.c_str(), run.csv_path.c_str());
    std::fflush(stdout);
  };
  polyak::cli::InspectResult result = polyak::cli::run_inspect(o, cb);

  std::printf(
      "\nL2 norms of the gradients reaching each layer's attention: median and max over "
      "the recorded steps\n%-20s %-13s %21s %21s %21s %21s %10s %9s\n",
      "run", "layer", "q: median  max", "k: median  max", "v: median  max", "out: median  max",
      "loss", "test acc");
  for (const polyak::cli::GradRun& run : result.runs) {
    for (const polyak::cli::LayerGradStats& s : polyak::cli::layer_grad_stats(run)) {
      const std::string layer = std::to_string(s.layer) + " " + s.attention;
      std::printf("%s %-13s", padded(run.name, 20).c_str(), layer.c_str());
      for (const polyak::cli::NormStats* n : {&s.q, &s.k, &s.v, &s.out})
        std::printf(" %10.3g %10.3g", n->median, n->max);
      if (run.ok)
        std::printf(" %10.4f %8.2f%%\n", run.final_loss, 100 * run.test_accuracy);
      else
        std::printf(" %10s %9s\n", "failed", "-");
    }
  }
  std::printf(
      "(loss: mean training loss of the last 100 steps; test accuracy: word accuracy "
      "after training)\n");
  int status = result.failed_runs > 0 ? 1 : 0;
  if (result.plot.drawn) {
    std::printf("figure:  %s\n", result.png_path.c_str());
  } else {
    std::string csvs;
    for (const polyak::cli::GradRun& run : result.runs) csvs.append(run.csv_path).append(" ");
    std::fprintf(stderr,
                 "polyak inspect-grads: %s was not drawn: %s\nthe CSVs are complete; "
                 "draw it later with: %s %s %s--out %s\n",
                 result.png_path.c_str(), result.plot.message.c_str(), o.python.c_str(),
                 o.plot_script.c_str(), csvs.c_str(), result.png_path.c_str());
    status = 3;
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    polyak::cli::Command cmd = polyak::cli::parse_command_line(args);
    if (cmd.name == "train") return train_command(cmd.train);
    if (cmd.name == "generate") return generate_command(cmd.generate);
    if (cmd.name == "compare" || cmd.name == "ablate") return experiment_command(cmd.experiment);
    if (cmd.name == "inspect-grads") return inspect_command(cmd.inspect);
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
  } catch (const std::bad_alloc&) {
    // Past the memory check (an estimate, or --max-memory over the machine's memory).
    std::cerr << "error: polyak: out of memory: the run needs more than this machine (or its "
                 "memory limit) can give; make the model, the batch or the sequences smaller, "
                 "or lower --max-memory to what the machine has\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
