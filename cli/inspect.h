// `polyak inspect-grads`: how large the gradients that reach each layer's attention are while
// a copy-task model trains. TransNormer's claim (docs/math.md §5) is that linear attention's
// scaling (its denominator) makes them unbounded, and that NormAttention, which drops it,
// keeps them tame; momentum attention is the third curve.
//
//   <out>/<run>.csv   step,layer,q,k,v,out,loss: a row per recorded step and layer
//   <out>/grads.png   drawn by scripts/plot_grads.py (needs Python 3 and matplotlib)
//
// q, k, v: L2 norms, over the whole batch, of ∂loss/∂ the projections' outputs [B,N,H·D]
// (before any feature map); out: of ∂loss/∂ the mixed output [B,N,H·D] before out_proj
// (Attention::inspect_gradients, nn/attention.h); loss: the step's training loss. The
// norms are taken before the gradient clipping, which acts on the parameters only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cli/copy_run.h"
#include "cli/experiments.h"
#include "cli/options.h"

namespace polyak::cli {

struct GradRecord {
  int64_t step = 0;
  int64_t layer = 0;
  double q = 0, k = 0, v = 0, out = 0;
  double loss = 0;
};

// The CSV: the header step,layer,q,k,v,out,loss, then a row per record.
std::string grad_csv(const std::vector<GradRecord>& records);

// The runs' names, in order, which name their CSVs: the kinds; or for checkpoints the folder
// of a model.safetensors (runs/figure1/linear/model.safetensors → "linear"), else the file's
// stem, with "-<position>" appended where two would share a name.
std::vector<std::string> inspect_run_names(const InspectOptions& options);

struct GradRun {
  std::string name;
  std::string kind;                          // model_kind() of the model ("" for none)
  std::string checkpoint;                    // the file trained on from ("" for a fresh model)
  std::vector<std::string> layer_attention;  // each layer's attention: "diag", "norm", ...
  TrainOptions options;  // the run's settings; for a checkpoint, its model's shape and L
  std::vector<GradRecord> records;
  std::string csv_path;
  bool ok = true;            // false: training stopped with an error (see `error`); the CSV
  std::string error;         // holds what was recorded until then
  double final_loss = 0;     // mean training loss of the last min(100, steps) steps
  double test_accuracy = 0;  // word accuracy on options.eval_batches test batches at the end
  double seconds = 0;
};

// Median and maximum of one norm over a run's records of one layer.
struct NormStats {
  double median = 0, max = 0;
};
struct LayerGradStats {
  int64_t layer = 0;
  std::string attention;  // the layer's attention kind
  NormStats q, k, v, out;
};
// One entry per layer that has records, in layer order.
std::vector<LayerGradStats> layer_grad_stats(const GradRun& run);

struct InspectCallbacks {
  // After the run's model is built or loaded.
  std::function<void(const GradRun&, size_t index, size_t count)> on_run_start;
  std::function<void(const StepRecord&)> on_step;
  std::function<void(const GradRun&)> on_run_end;
};

struct InspectResult {
  std::vector<GradRun> runs;
  std::string png_path;  // <out>/grads.png
  PlotResult plot;
  int64_t failed_runs = 0;
};

// Trains each run in order (the same seed, so the same initialisation stream and batches
// for every kind), records per `options.every` and writes its CSV; then draws the PNG. A run
// that fails (a non-finite loss) is recorded as failed and the others still run; a
// checkpoint that cannot be loaded, or holds a non-causal model, is a polyak::Error.
InspectResult run_inspect(const InspectOptions& options, const InspectCallbacks& callbacks = {});

}  // namespace polyak::cli
