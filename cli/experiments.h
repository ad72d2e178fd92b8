// `polyak compare` (the paper's Figure 1) and `polyak ablate beta|connection` (Figures 4–5):
// several copy-task runs that share the seed, hence the model initialisation stream and the
// same sequence of training and test batches, one after the other, each in its own folder:
//
//   <out>/<run>/metrics.csv, config.json, model.safetensors
//   <out>/summary.csv       one row per run (rewritten after each run)
//   <out>/<figure>.png      drawn by scripts/plot_runs.py (needs Python 3 and matplotlib)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cli/copy_run.h"
#include "cli/options.h"

namespace polyak::cli {

struct ExperimentRun {
  std::string name;      // folder under the experiment's out: "momentum", "beta-0.3", ...
  std::string label;     // legend: "momentum", "β = 0.3", "β̃ = 0.9", "adaptive"
  TrainOptions options;  // options.out = <experiment out>/<name>
};

// The runs of `options`: one per kind (compare); one per β with train.model (beta); one
// momentum-connection run per β̃ and one adaptive run (connection).
std::vector<ExperimentRun> experiment_runs(const ExperimentOptions& options);

// One row of summary.csv.
struct RunSummary {
  std::string name, label, kind;
  int64_t steps = 0;
  bool ok = true;                    // false: training stopped with an error (see `error`)
  std::string error;                 // its message
  double final_train_loss = 0;       // mean training loss of the last min(100, steps) steps
  double final_test_accuracy = 0;    // word accuracy on ≥ 32 test batches after training
  double seconds_per_100_steps = 0;  // training time only (evaluations excluded)
  double train_seconds = 0;          // the same, whole run
  double total_seconds = 0;          // wall clock, evaluations and the final test included
  int64_t steps_to_90 = -1;          // first evaluation with test accuracy ≥ 90% (−1: none)
  double train_seconds_to_90 = -1;   // training seconds up to that step
};

RunSummary summarize(const ExperimentRun& run, const TrainResult& result);
// The CSV: run,label,kind,status,steps,final_train_loss,... (empty figures for failed runs).
std::string summary_csv(const std::vector<RunSummary>& rows, const std::string& task = "copy");

// The PNG's file name: figure1.png (compare), ablate-beta.png, ablate-connection.png.
std::string figure_name(const ExperimentOptions& options);
// A one-line description for the figure's title: the study and the shared configuration.
std::string figure_title(const ExperimentOptions& options);

struct PlotResult {
  bool drawn = false;
  std::string message;  // why not, or the plot script's output
};

// Runs `python script folder --out png --title title`. Never throws for a missing Python,
// missing matplotlib or a failing script: says so in the result.
PlotResult draw_plot(const std::string& python, const std::string& script,
                     const std::string& folder, const std::string& png, const std::string& title);
// The same for any arguments: `python script args...`, drawn when it exits with 0 and `png`
// exists.
PlotResult run_plot_script(const std::string& python, const std::string& script,
                           const std::vector<std::string>& args, const std::string& png);

struct ExperimentCallbacks {
  std::function<void(const ExperimentRun&, size_t index, size_t count)> on_run_start;
  std::function<void(const StepRecord&)> on_step;
  std::function<void(const RunSummary&)> on_run_end;
};

struct ExperimentResult {
  std::vector<RunSummary> runs;
  std::string summary_path;
  std::string png_path;
  PlotResult plot;
  int64_t failed_runs = 0;
  int stopped_by = 0;  // SIGINT or SIGTERM: the experiment stopped in a run, saved
};

// Trains every run of experiment_runs(options) in order, writes summary.csv after each and
// draws the PNG at the end. A run that fails (a non-finite loss, say) is recorded as failed
// and the others still run.
ExperimentResult run_experiment(const ExperimentOptions& options,
                                const ExperimentCallbacks& callbacks = {});

}  // namespace polyak::cli
