// Command-line options of the polyak program, parsed without side effects so that tests
// can check every accepted and rejected input.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/transformer.h"

namespace polyak::cli {

// `polyak train` on the copy task (MATH.md §10).
struct TrainOptions {
  std::string preset = "default";  // default | paper
  std::string model = "linear";    // attention kind: softmax | linear
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
  int threads = 0;  // 0: all cores
  int64_t eval_every = 0;
  int64_t eval_batches = 0;
  std::string out;  // run folder: metrics.csv and config.json
  bool quiet = false;

  // The model these options describe.
  TransformerConfig model_config(int64_t vocab) const;
};

// `polyak bench`: time training steps of a copy model against the machine's GEMM peak.
struct BenchOptions {
  TrainOptions train;  // the model and batch (preset paper by default)
  int64_t warmup = 2;
  int64_t gemm_size = 2048;
  int64_t gemm_reps = 7;
  std::string json;  // optional: write the figures as JSON here
};

struct Command {
  std::string name;  // train | bench
  TrainOptions train;
  BenchOptions bench;
};

// Thrown for --help: carries the text to print.
struct HelpRequested {
  std::string text;
};

// Parses argv[1..] (without the program name). Throws polyak::Error naming the flag, the
// value seen and what was expected, for unknown flags, bad values and missing commands.
Command parse_command_line(const std::vector<std::string>& args);

}  // namespace polyak::cli
