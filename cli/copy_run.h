// Training a model on a task (cli/tasks.h; the copy task by default): the loop behind `polyak
// train`, `polyak pixels`, `polyak lra`, `polyak compare`, `polyak ablate` and `polyak bench`,
// and the optimiser and loss step `polyak inspect-grads` shares.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cli/options.h"
#include "polyak/core/graph.h"
#include "polyak/data/copy_task.h"
#include "polyak/models/transformer.h"
#include "polyak/optim/radam.h"
#include "polyak/optim/schedule.h"

namespace polyak::cli {

// One row of metrics.csv. The figures are the task's (cli/tasks.h: TaskMetrics): for the copy
// task the word accuracy of the training batch, the test accuracy and the reference code's;
// for text and pixels bits per byte or dim; for classification accuracies.
struct StepRecord {
  int64_t step = 0;
  double loss = 0;
  double accuracy = 0;  // the training batch's figure (word accuracy, bits, accuracy)
  double lr = 0;
  double seconds = 0;         // wall clock since training started
  double train_seconds = 0;   // the same without the time spent in test evaluations
  double test_accuracy = -1;  // the evaluation's headline figure, on evaluation steps only
  double test_reference_accuracy = -1;  // its second figure, when the task has one
};

struct TrainResult {
  // The final evaluation (on the test split): the task's headline figure (the copy task's
  // per-token accuracy over the copied words, docs/math.md §10) and the copy task's two
  // others.
  double test_accuracy = 0;
  double test_reference_accuracy = 0;  // the reference code's definition, for comparison
  double test_word_accuracy = 0;       // per word: the words copied whole
  double seconds = 0;                  // wall clock of the whole run, evaluations included
  double train_seconds = 0;            // without the evaluations
  std::string metrics_path;
  std::string config_path;
  std::string model_path;       // model.safetensors: the model and the metadata below
  std::string checkpoint_path;  // checkpoint.safetensors: the whole run, for --resume
  int stopped_by = 0;           // SIGINT or SIGTERM when a signal stopped the run
  int64_t steps_done = 0;
  std::vector<StepRecord> records;  // every step, as in metrics.csv
  std::string summary;              // the task's end-of-run line (cli/tasks.h)
  std::string made;                 // what the task made after training (samples.png), or ""
  // The training batches' producer (a thread of its own): batches made, the seconds it spent
  // making them and the seconds the steps waited for one.
  int64_t data_batches = 0;
  double data_seconds = 0, data_wait_seconds = 0;
  // Temporary files of saves killed half-way that the run removed from its directory.
  std::vector<std::string> removed_temporaries;
};

// Checkpoint metadata that train_copy writes beside the model, so that `polyak generate
// --copy` can redraw the run's test split: copy.length, copy.min_word, copy.max_word
// (exclusive), copy.symbols, copy.test_seed; and, for the record, train.kind, train.steps,
// train.seed, train.test_accuracy.
std::map<std::string, std::string> copy_task_metadata(const CopyTask& test_task,
                                                      uint64_t test_seed);
// The test split's options back from that metadata; a missing or malformed key is a
// polyak::Error naming `path` and the key.
CopyTask::Options copy_task_from_metadata(const std::map<std::string, std::string>& metadata,
                                          const std::string& path);
// The test split's seed for a run seeded with `seed`: an independent stream of words.
uint64_t copy_test_seed(uint64_t seed);

// Test-split accuracies of `model` over `batches` batches of `batch_size` (eval mode): per
// token (copy_accuracy_of, what the runs report), the reference code's window, and per word
// (copied_words_of: every token of the word right).
struct CopyScores {
  double tokens = 0, reference = 0, words = 0;
};
CopyScores evaluate_copy(TransformerLM& model, CopyTask& task, int64_t batches, int64_t batch_size);

// One optimisation step's forward and backward under Autocast(`precision`) (--precision)
// with nothing read back to the host: the loss (a scalar on the model's device) and the
// head's output (logits, class logits or mixture parameters: cli/tasks.h, head_loss), both
// detached.
struct StepOutputs {
  Tensor loss, logits;
};
StepOutputs copy_forward_backward(TransformerLM& model, const Batch& batch,
                                  Precision precision = Precision::f32);
// The polyak::Error of a non-finite loss `value` at `step`, with `diagnosis`: where the
// non-finite values come from, or why that is not known.
[[noreturn]] void fail_non_finite_loss(double value, int64_t step, const std::string& diagnosis);

// One optimisation step's forward and backward, both under Autocast(`precision`): returns
// the loss and fills `logits`. Throws polyak::Error naming the step and the first layer with
// a non-finite output when the loss is not finite.
double copy_loss_backward(TransformerLM& model, const Batch& batch, int64_t step, Tensor* logits,
                          Precision precision = Precision::f32);

// The optimiser of every run (docs/math.md §9): RAdam with decoupled weight decay, the lr × 0.1
// from options.decay_step (or, with options.warmup, a linear warmup and a linear decay to 0 at
// options.steps), and per-parameter gradient-norm clipping at options.clip.
class CopyOptimizer {
 public:
  CopyOptimizer(TransformerLM& model, const TrainOptions& options);
  void zero_grad() { opt_.zero_grad(); }
  // Clips the gradients, sets this step's lr and updates the parameters; returns the lr.
  double step() {
    const double lr = schedule();
    update();
    return lr;
  }
  RAdam& optimizer() { return opt_; }
  // step() in its two parts: the host's (sets and returns this step's lr) and the device's
  // (clipping and the update, which a graph captures).
  double schedule();
  void update();

 private:
  std::vector<Tensor> params_;
  RAdam opt_;
  std::unique_ptr<LrSchedule> schedule_;
  double clip_;
};

// The training steps of train_copy and run_bench: the batch on the device, forward, masked
// loss, backward, clipping and the update, with nothing read back to the host (on the CPU a
// non-finite loss stops the step before the update, naming the layer).
//
// With `graph` (--graph, a device only) the first step runs eagerly — it allocates the
// optimiser's state and warms the device's libraries — the second is captured in a
// DeviceGraph (core/graph.h), and every later step replays it: load() writes the batch into
// the buffers the capture read, and the loss and predictions are copied out of the graph's.
class CopyStepper {
 public:
  CopyStepper(TransformerLM& model, CopyOptimizer& opt, Device device, Precision precision,
              bool graph);
  // Puts `host_batch` where the next step reads it.
  void load(const Batch& host_batch);
  struct Outputs {
    Tensor loss;         // [] on the device
    Tensor predictions;  // argmax ids on the device ([B, L] or [B]; none for a mixture head)
    double lr = 0;
  };
  // Step `step` (1-based, for the error of a non-finite loss) on the loaded batch.
  Outputs step(int64_t step);
  // Whether the steps are replays of a captured graph now.
  bool replaying() const { return graph_.defined(); }

 private:
  TransformerLM& model_;
  CopyOptimizer& opt_;
  Device device_;
  Precision precision_;
  bool use_graph_;
  Batch inputs_;
  int64_t steps_ = 0;
  DeviceGraph graph_;
  Tensor graph_loss_, graph_predictions_;  // written by each replay
};

// Notes SIGINT and SIGTERM while it lives (the previous handlers come back after):
// train_copy checks received() after each step and stops with a checkpoint.
class SignalScope {
 public:
  SignalScope();
  ~SignalScope();
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;
  static int received();  // the signal, or 0

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

// With --keep-checkpoints K > 1: checkpoint-<step>.safetensors beside checkpoint.safetensors
// (a hard link, or a copy), and only the K latest of them.
void keep_checkpoints(const std::filesystem::path& dir, int64_t step, int64_t keep);

// Trains per `options` on options.task, writing metrics.csv and config.json under options.out
// (metrics at every evaluation, so an interrupted run keeps its curve) and model.safetensors
// at the end; `on_step` sees every step (progress display). The training batches are made
// up to two steps ahead on a thread of their own (data/prefetch.h).
TrainResult train_run(const TrainOptions& options,
                      const std::function<void(const StepRecord&)>& on_step);

}  // namespace polyak::cli
