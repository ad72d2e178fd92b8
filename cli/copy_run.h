// Training a copy-task model: the loop behind `polyak train` and `polyak bench`.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/options.h"
#include "data/copy_task.h"
#include "models/transformer.h"

namespace polyak::cli {

struct StepRecord {
  int64_t step = 0;
  double loss = 0;
  double accuracy = 0;  // word accuracy on the training batch
  double lr = 0;
  double seconds = 0;         // wall clock since training started
  double test_accuracy = -1;  // on evaluation steps only
  double test_reference_accuracy = -1;
};

struct TrainResult {
  double test_accuracy = 0;            // word accuracy (MATH.md §10)
  double test_reference_accuracy = 0;  // the reference code's definition, for comparison
  double seconds = 0;
  std::string metrics_path;
  std::string config_path;
};

// Test-split word accuracy of `model` over `batches` batches of `batch_size` (eval mode).
std::pair<double, double> evaluate_copy(TransformerLM& model, CopyTask& task, int64_t batches,
                                        int64_t batch_size);

// One optimisation step's forward and backward: returns the loss and fills `logits`.
// Throws polyak::Error naming the step and the first layer with a non-finite output
// when the loss is not finite.
double copy_loss_backward(TransformerLM& model, const Batch& batch, int64_t step, Tensor* logits);

// Trains per `options`, writing metrics.csv and config.json under options.out;
// `on_step` sees every step (progress display).
TrainResult train_copy(const TrainOptions& options,
                       const std::function<void(const StepRecord&)>& on_step);

}  // namespace polyak::cli
