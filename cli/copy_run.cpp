#include "cli/copy_run.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/autograd.h"
#include "core/threads.h"
#include "ops/nn_ops.h"
#include "optim/clip.h"
#include "optim/radam.h"
#include "optim/schedule.h"

namespace polyak::cli {
namespace {

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

// Re-runs the forward pass layer by layer to name where values first stop being finite.
std::string first_non_finite(TransformerLM& model, const Batch& batch) {
  NoGradGuard no_grad;
  Tensor x = model.embedding->forward(batch.tokens);
  x = model.positions->forward(x);
  if (!all_finite(x)) return "the embedding";
  LayerCarry carry;
  for (size_t i = 0; i < model.layers->size(); ++i) {
    x = (*model.layers)[i]->forward(x, carry);
    if (!all_finite(x)) return "layer " + std::to_string(i);
  }
  if (model.final_norm) {
    x = model.final_norm->forward(x);
    if (!all_finite(x)) return "the final norm";
  }
  return "the head or the loss";
}

nlohmann::json config_json(const TrainOptions& o, const TransformerConfig& c) {
  return {{"task", "copy"},
          {"preset", o.preset},
          {"model", o.model},
          {"steps", o.steps},
          {"batch", o.batch},
          {"length", o.length},
          {"lr", o.lr},
          {"decay_step", o.decay_step},
          {"weight_decay", o.weight_decay},
          {"clip", o.clip},
          {"seed", o.seed},
          {"threads", num_threads()},
          {"eval_every", o.eval_every},
          {"eval_batches", o.eval_batches},
          {"transformer",
           {{"vocab", c.vocab},
            {"max_len", c.max_len},
            {"d_model", c.d_model},
            {"heads", c.heads},
            {"head_dim", c.resolved_head_dim()},
            {"ff_dim", c.resolved_ff_dim()},
            {"layers", c.layers},
            {"dropout", c.dropout},
            {"attention", c.attention},
            {"causal", c.causal},
            {"pre_norm", c.pre_norm},
            {"positions", c.positions},
            {"activation", c.activation},
            {"final_norm", c.final_norm},
            {"seed", c.seed}}}};
}

std::string metrics_csv(const std::vector<StepRecord>& rows) {
  std::ostringstream os;
  os << "step,loss,accuracy,lr,seconds,test_accuracy,test_reference_accuracy\n";
  for (const StepRecord& r : rows) {
    os << r.step << ',' << r.loss << ',' << r.accuracy << ',' << r.lr << ',' << r.seconds << ',';
    if (r.test_accuracy >= 0)
      os << r.test_accuracy << ',' << r.test_reference_accuracy;
    else
      os << ',';
    os << '\n';
  }
  return os.str();
}

}  // namespace

std::pair<double, double> evaluate_copy(TransformerLM& model, CopyTask& task, int64_t batches,
                                        int64_t batch_size) {
  NoGradGuard no_grad;
  bool was_training = model.is_training();
  model.eval();
  double word = 0, reference = 0;
  for (int64_t i = 0; i < batches; ++i) {
    Batch b = task.batch(batch_size);
    Tensor logits = model(b.tokens);
    word += copy_accuracy(logits, b);
    reference += reference_accuracy(logits, b);
  }
  model.train(was_training);
  return {word / static_cast<double>(batches), reference / static_cast<double>(batches)};
}

double copy_loss_backward(TransformerLM& model, const Batch& batch, int64_t step, Tensor* logits) {
  Tensor out = model(batch.tokens);
  Tensor loss = cross_entropy(out, batch.targets, batch.mask);
  double value = loss.item();
  if (!std::isfinite(value))
    fail("train: the loss is ", value, " at step ", step,
         "; the first non-finite values come from ", first_non_finite(model, batch),
         ", expected finite values (lower --lr or check the data)");
  loss.backward();
  if (logits) *logits = out.detach();
  return value;
}

TrainResult train_copy(const TrainOptions& o,
                       const std::function<void(const StepRecord&)>& on_step) {
  set_num_threads(o.threads);
  CopyTask train_task({.length = o.length, .seed = o.seed});
  CopyTask test_task({.length = o.length, .seed = o.seed + 0x9E3779B97F4A7C15ull});
  TransformerConfig config = o.model_config(train_task.vocab());
  TransformerLM model(config);
  model.train();

  std::filesystem::create_directories(o.out);
  TrainResult result;
  result.config_path = (std::filesystem::path(o.out) / "config.json").string();
  result.metrics_path = (std::filesystem::path(o.out) / "metrics.csv").string();
  write_text_file_atomically(result.config_path, config_json(o, config).dump(2) + "\n", "train");

  std::vector<Tensor> params = model.parameters();
  RAdam opt(params, {.lr = o.lr, .weight_decay = o.weight_decay});
  StepDecay::Options decay{.lr = o.lr};
  if (o.decay_step > 0) decay.milestones = {o.decay_step};
  StepDecay schedule(decay);

  std::vector<StepRecord> rows;
  auto start = std::chrono::steady_clock::now();
  for (int64_t step = 1; step <= o.steps; ++step) {
    Batch batch = train_task.batch(o.batch);
    opt.zero_grad();
    Tensor logits;
    StepRecord r;
    r.step = step;
    r.loss = copy_loss_backward(model, batch, step, &logits);
    if (o.clip > 0) clip_grad_norm_per_parameter(params, o.clip);
    r.lr = schedule.apply(opt);
    opt.step();
    r.accuracy = copy_accuracy(logits, batch);
    if (step % o.eval_every == 0 || step == o.steps)
      std::tie(r.test_accuracy, r.test_reference_accuracy) =
          evaluate_copy(model, test_task, o.eval_batches, o.batch);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rows.push_back(r);
    if (r.test_accuracy >= 0)
      write_text_file_atomically(result.metrics_path, metrics_csv(rows), "train");
    if (on_step) on_step(r);
  }
  result.seconds = rows.back().seconds;
  // The final figure uses a larger test sample than the periodic evaluations.
  std::tie(result.test_accuracy, result.test_reference_accuracy) =
      evaluate_copy(model, test_task, std::max<int64_t>(o.eval_batches, 32), o.batch);
  return result;
}

}  // namespace polyak::cli
