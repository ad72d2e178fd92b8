// Training checkpoints: everything a copy-task run needs to continue exactly where it stopped
// (`polyak train --save-every N`, `--resume DIR`), in one safetensors file written atomically,
// `checkpoint.safetensors` in the run directory.
//
//   tensors   model.<name>            the model's state dict (parameters and buffers: Ω)
//             optim.<i>.<state>       the optimizer's state of parameter i (exp_avg, …)
//             train.rows              the metrics rows so far, f64 [steps, 8] (every digit)
//   metadata  polyak.format           "training-checkpoint/2" (/1, still read, held the rows
//                                     as CSV text in the metadata "train.rows")
//             polyak.config           the model's config (models/checkpoint.h)
//             train.options           the run's options, JSON (cli/options.h)
//             train.step              steps done
//             train.seconds, train.eval_seconds   wall clock so far
//             optim.step_count, optim.parameter_steps (JSON list)
//             rng                     JSON {name: offset}: every generator of the model
//                                     (dropout masks, Performer's Ω) and "data.train",
//                                     "data.test" (the copy task's streams)
//             counters                JSON {name: value}: the model's counters (Performer's
//                                     training forwards)
//
// On the CPU a run resumed from it is bit-identical to the run that never stopped (with the
// same threads): the same rows and the same final tensors.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "cli/copy_run.h"
#include "polyak/models/transformer.h"
#include "polyak/optim/optimizer.h"

namespace polyak::cli {

struct TrainingProgress {
  int64_t step = 0;  // steps done
  double seconds = 0, eval_seconds = 0;
  std::vector<StepRecord> rows;
  uint64_t train_data = 0, test_data = 0;  // the copy task generators' offsets
};

// Writes the checkpoint to `path` atomically (the previous one stays until the new one is
// complete). `options_json` is the run's options.
void save_training_checkpoint(const std::string& path, TransformerLM& model, const Optimizer& opt,
                              const TrainingProgress& progress, const std::string& options_json);

// The run options stored in the checkpoint at `path`, JSON; a missing or foreign file is an
// error naming the path and `command`.
std::string training_checkpoint_options(const std::string& path, const char* command);

// Restores the checkpoint at `path` into `model` and `opt`, built from the stored options (same
// config, same parameters; any device), and returns the progress. Every mismatch, a
// non-finite tensor and malformed metadata are errors naming the path and what is wrong.
TrainingProgress load_training_checkpoint(const std::string& path, TransformerLM& model,
                                          Optimizer& opt);

}  // namespace polyak::cli
