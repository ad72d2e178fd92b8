// The tasks a run trains on (`polyak train --task`, `polyak pixels`, `polyak lra`): where
// their batches come from, how the model is set up for them, the loss of the model's head,
// and the figures a run reports.
//
//   task        data                                   model                   figures
//   copy        generated words (data/copy_task.h)      causal, token head      word accuracy
//   text        a text file's bytes (data/text.h)       causal, token head      bits per byte
//   pixels      Fashion-MNIST, 784 pixels per image     causal, mixture head    bits per dim
//               (start token 256, then pixels 0..782)   (or 256-way softmax)
//   listops     generated (data/listops.h)              non-causal, class head  accuracy
//   pathfinder  generated 32×32 (data/pathfinder.h)     non-causal, class head  accuracy
//   image       Fashion-MNIST as 784-pixel sequences    non-causal, class head  accuracy
//
// The classification tasks train on their train split, evaluate on their validation split
// during the run and on the test split at its end. The language tasks (text, pixels)
// evaluate on their held-out split (the file's tail, the 10000 test images).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cli/options.h"
#include "polyak/data/copy_task.h"
#include "polyak/models/transformer.h"

namespace polyak::cli {

// copy, text, pixels, listops, pathfinder, image.
const std::vector<std::string>& task_names();
// Whether `task` classifies whole sequences with a non-causal encoder (the LRA-style tasks).
bool is_classification_task(const std::string& task);

// A run's figures of one evaluation: `primary` is the task's headline (accuracy, bits per
// byte or dim); `secondary` the copy task's reference accuracy and `words` its per-word
// accuracy (−1 when the task has none).
struct TaskScores {
  double primary = 0, secondary = -1, words = -1;
};

// The names of a task's figures: metrics.csv's columns and the progress line's labels.
struct TaskMetrics {
  const char* train;      // the training batches' figure: "accuracy", "bits_per_byte", …
  const char* test;       // the evaluations' headline: "test_accuracy", "test_bits_per_dim", …
  const char* secondary;  // the second evaluation figure's column ("" when none)
  bool percent;           // accuracies (shown ×100, higher is better) or bits (lower is better)
};

// The figures of `task` (without loading its data).
TaskMetrics task_metrics(const std::string& task);

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual TaskMetrics metrics() const = 0;
  // The vocabulary and the positions of a sequence (the model's vocab and max_len).
  virtual int64_t vocab() const = 0;
  virtual int64_t length() const = 0;
  // The model's task fields: vocab, max_len, causal, head, classes, pooling, positions.
  virtual void configure(TransformerConfig& config) const = 0;
  // The next training batch (on the host); advances the training stream.
  virtual Batch train_batch(int64_t batch_size) = 0;
  // The training stream's position after the batches taken so far, and a jump to one (an
  // exact resume).
  virtual uint64_t train_position() const = 0;
  virtual void set_train_position(uint64_t position) = 0;
  // The test stream's position (the copy task draws its test words from a stream; the
  // others evaluate fixed splits and keep 0).
  virtual uint64_t test_position() const { return 0; }
  virtual void set_test_position(uint64_t) {}
  // An evaluation during the run (`batches` batches of `batch_size`; the validation split of
  // a classification task), or the final one (`final`: the whole test split, or more batches
  // of a generated one). Runs in eval mode and restores the model's mode.
  virtual TaskScores evaluate(TransformerLM& model, int64_t batches, int64_t batch_size,
                              bool final) = 0;
  // The training figure of one batch from its loss and its predictions on the host
  // (argmax ids of the token or class head; undefined for a mixture head).
  virtual double train_figure(double loss, const Tensor& predictions, const Batch& batch) const;
  // Entries for model.safetensors' metadata: what `polyak generate` needs to know of the task.
  virtual std::map<std::string, std::string> metadata() const { return {}; }
  // The end-of-run line of `polyak train`.
  virtual std::string summary(const TaskScores& scores) const = 0;
  // What the task makes of the trained model in the run's folder (the pixel task: a PNG grid
  // of samples); returns the lines to print, or "".
  virtual std::string after_training(TransformerLM&, const std::string& /*out_dir*/) { return ""; }
};

// The task `options.task` names, its data loaded or generated from the options (the data
// file or folder, the seed, the splits' sizes). A missing or malformed file is a
// polyak::Error naming it.
std::unique_ptr<Task> make_task(const TrainOptions& options);

// One training step's forward and loss for the model's head: token logits against
// batch.targets under batch.mask (cross-entropy), class logits against batch.targets [B],
// or the mixture's mean nll over batch.mask. Returns the loss (a scalar on the model's
// device, with its graph) and the head's output.
struct HeadLoss {
  Tensor loss, output;
};
HeadLoss head_loss(TransformerLM& model, const Batch& batch);
// The argmax ids of a token or class head's output (on its device); undefined for a
// mixture head, which has no class to predict.
Tensor head_predictions(const TransformerLM& model, const Tensor& output);

}  // namespace polyak::cli
