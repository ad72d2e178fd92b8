// Command-line options of the polyak program, parsed without side effects so that tests
// can check every accepted and rejected input.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "polyak/core/autocast.h"
#include "polyak/models/transformer.h"

namespace polyak::cli {

// The presets, in the order --help lists them: "default" (a small linear model that learns
// in under a minute), "paper" (the paper's copy configuration), "figure1" (a scaled copy
// configuration for the comparison of every causal kind and the ablations).
const std::vector<std::string>& preset_names();

// The model kinds the copy task can train: every kind of model_kinds() with a causal form
// (all but Linformer), in that order.
const std::vector<std::string>& causal_model_kinds();
// The model kinds `task` can train: the causal ones for the copy, text and pixel tasks, the
// ones with a non-causal form for the classification tasks.
std::vector<std::string> task_model_kinds(const std::string& task);

// `polyak train` on a task (cli/tasks.h; the copy task by default, docs/math.md §10).
struct TrainOptions {
  std::string task = "copy";  // task_names(): copy | text | pixels | listops | pathfinder | image
  // text: the file (default: The Devil's Dictionary of Debian's dict-devil); pixels, image:
  // Fashion-MNIST's folder (default: $POLYAK_FASHION_MNIST or dataset-fashion-mnist's).
  std::string data;
  std::string pixel_head = "mixture";  // pixels: mixture (10 logistics) | softmax (256-way)
  std::string difficulty = "hard";     // pathfinder: easy | intermediate | hard (6, 9, 14 dashes)
  // The first N examples of the train split, and of the test split for the final evaluation
  // (0: all of them): small runs and tests.
  int64_t train_examples = 0;
  int64_t test_examples = 0;
  // Steps of linear warmup, then a linear decay to 0 at --steps (the LRA code's schedule);
  // 0: the copy task's constant lr with its × 0.1 at decay_step.
  int64_t warmup = 0;
  std::string preset = "default";
  std::string model = "linear";  // one of model_kinds()
  int64_t steps = 0;
  int64_t batch = 0;
  int64_t length = 0;  // sequence length L of the copy task
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t d_model = 0;
  int64_t ff = 0;
  double dropout = 0;
  double lr = 0;
  int64_t decay_step = 0;  // lr × 0.1 from this step on (0: never)
  double weight_decay = 0.01;
  double clip = 1.0;  // per-parameter gradient-norm clip (0: off)
  uint64_t seed = 0;
  int threads = 0;                // 0: all cores
  std::string device = "cpu";     // cpu | cuda | cuda:N: where the model, the data and the
                                  // optimiser state live
  std::string precision = "f32";  // f32 | bf16: the device GEMMs' operands (core/autocast.h)
  int64_t eval_every = 0;
  // Steps between reads of the loss and the training accuracy from a device (0: 1 on the
  // CPU, where a read costs nothing, and 50 on a device); no step waits for the device.
  int64_t sync_every = 0;
  // Capture the training step in a device graph and replay it from the third step on
  // (cli/copy_run.h: CopyStepper); a device only.
  bool graph = false;
  int64_t eval_batches = 0;
  // Checkpoints (cli/training_checkpoint.h): every `save_every` steps (0: only at the end and
  // on SIGINT/SIGTERM), keeping the last `keep_checkpoints` (checkpoint-<step>.safetensors
  // beside checkpoint.safetensors when more than 1).
  int64_t save_every = 0;
  int64_t keep_checkpoints = 1;
  // The memory the run may use ("8G", "512MiB", bytes; "": what the machine has available):
  // a run whose estimate (models/memory.h) needs more is refused before anything is built.
  // Not stored in checkpoints: it belongs to the machine, and may be given with --resume.
  std::string max_memory;
  bool force = false;   // --force: replace the run in `out`
  bool resume = false;  // --resume: continue the run in `out` from its checkpoint
  // The kinds' settings given as flags (--beta, --block-size, …: the fields of nn/kinds.h's
  // tables), by flag. Each applies to every kind whose struct has a field with that flag;
  // the others keep the kind's defaults.
  std::map<std::string, ParamValue> kind_flags;
  std::string out;  // run folder: metrics.csv, config.json and model.safetensors
  bool quiet = false;

  // The model these options describe.
  TransformerConfig model_config(int64_t vocab) const;
};

// The options a checkpoint stores (JSON; without out, quiet, force, resume and max_memory),
// and back: a missing or mistyped key is a polyak::Error naming `source` and the key.
std::string train_options_json(const TrainOptions& options);
TrainOptions train_options_from_json(const std::string& json, const std::string& source);

// The flags that may be given with `polyak train --resume DIR` (the others come from the
// run's checkpoint).
const std::vector<std::string>& resume_flags();

// The settings of the model's kind in one line, for the line `polyak train` prints under
// the model's shape ("" for kinds without any: softmax), from the kinds' tables, e.g.
//   momentum attention: --feature-map elu, --attention-eps 1e-06, --beta 0.1, --gamma 0.6,
//   --weighting exact; the adaptive connection: --conn-gamma 0.99, --delta 0.001, …
//   TransNormer (layers diag, norm): --block-size 16, --feature-map elu
std::string kind_settings(const TrainOptions& options);

// `polyak bench`: time training steps of a copy model against the machine's GEMM peak.
struct BenchOptions {
  TrainOptions train;  // the model and batch (preset paper by default)
  int64_t warmup = 2;
  int64_t gemm_size = 2048;
  int64_t gemm_reps = 7;
  std::string json;  // optional: write the figures as JSON here
};

// `polyak generate`: RNN-mode generation from a checkpoint written by `polyak train`.
struct GenerateCommand {
  std::string checkpoint;
  // --prompt as given: token ids ("3 5 1 0"), or a text model's text, whose bytes are its
  // tokens (the checkpoint's task decides which).
  std::string prompt;
  int64_t tokens = 32;     // --tokens: new tokens after the prompt
  int64_t copy = 0;        // --copy K: K test words of the checkpoint's copy task instead
  int64_t images = 0;      // --images N: a pixel model's N samples instead, drawn as a PNG grid
  std::string png;         // where (default: samples.png beside the checkpoint)
  double temperature = 0;  // 0: greedy
  uint64_t seed = 0;       // sampling stream (temperature > 0)
  int32_t stop = -1;       // stop after generating this token (−1: never)
  int threads = 0;
  std::string device = "cpu";  // where the model runs
};

// `polyak compare` (Figure 1 of the paper) and `polyak ablate beta|connection` (Figures
// 4–5): several copy-task runs with one seed and one data stream, each in its own folder
// under train.out, then summary.csv and a PNG drawn by scripts/plot_runs.py.
struct ExperimentOptions {
  std::string study;   // compare | beta | connection
  TrainOptions train;  // shared settings; for `ablate beta`, train.model is the kind swept
  std::vector<std::string> kinds;  // compare: the kinds, in order
  std::vector<double> values;      // ablate: β (beta) or β̃ (connection) values, in order
  std::string python = "/usr/bin/python3";
  std::string plot_script;  // default: scripts/plot_runs.py of this source tree
  // Continue an experiment stopped part-way in train.out: its runs with a checkpoint resume
  // from it, the others start afresh.
  bool resume = false;
};

// `polyak inspect-grads`: copy-task runs that record, every `every` steps, the norms of the
// gradients reaching each layer's q, k, v and attention output, and the loss (TransNormer's
// claim that linear attention's scaling makes them large, docs/math.md §5). One run per kind,
// all from one seed and one data stream, or one per checkpoint, training on from it.
struct InspectOptions {
  TrainOptions train;  // shared settings (figure1 preset); train.out: the CSVs and the PNG
  std::vector<std::string> kinds;        // default: linear, transnormer, momentum
  std::vector<std::string> checkpoints;  // instead of kinds: model.safetensors files
  int64_t every = 10;                    // record at step 1, every `every` steps and the last
  std::string python = "/usr/bin/python3";
  std::string plot_script;  // default: scripts/plot_grads.py of this source tree
};

struct Command {
  std::string name;  // train | bench | generate | compare | ablate | inspect-grads
  TrainOptions train;
  BenchOptions bench;
  GenerateCommand generate;
  ExperimentOptions experiment;  // compare and ablate
  InspectOptions inspect;
};

// Thrown for --help: carries the text to print.
struct HelpRequested {
  std::string text;
};

// Parses argv[1..] (without the program name). Throws polyak::Error naming the flag, the
// value seen and what was expected, for unknown flags, bad values and missing commands.
Command parse_command_line(const std::vector<std::string>& args);

// Token ids separated by spaces or commas ("3 5 1 0"); anything else is a polyak::Error
// naming the word.
std::vector<int32_t> parse_prompt(const std::string& text);

// The device a --device value names, checked to be present here (a polyak::Error naming
// the flag otherwise: not a device, a build without CUDA, no GPU, no such index).
Device device_flag(const std::string& value);

// The precision --precision names: f32, or bf16 on a device (a polyak::Error naming the
// flag otherwise: not a precision, bf16 with --device cpu, where autocast does nothing).
Precision precision_flag(const TrainOptions& options);

// scripts/<name> of the source tree the program was built from: plot_runs.py (compare,
// ablate), plot_grads.py (inspect-grads).
std::string default_plot_script(const std::string& name = "plot_runs.py");

}  // namespace polyak::cli
