#include "cli/copy_run.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include <algorithm>
#include <csignal>

#include "cli/memory_check.h"
#include "cli/run_dir.h"
#include "cli/tasks.h"
#include "cli/training_checkpoint.h"
#include "polyak/core/autograd.h"
#include "polyak/core/files.h"
#include "polyak/core/threads.h"
#include "polyak/data/prefetch.h"
#include "polyak/models/checkpoint.h"
#include "polyak/ops/nn_ops.h"
#include "polyak/ops/reduce.h"
#include "polyak/ops/shape_ops.h"
#include "polyak/optim/clip.h"

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
  if (model.cls.defined()) return "the model (its CLS position is not traced here)";
  LayerCarry carry;
  for (size_t i = 0; i < model.layers->size(); ++i) {
    x = (*model.layers)[i]->forward(x, carry, batch.lengths);
    if (!all_finite(x)) return "layer " + std::to_string(i);
  }
  if (model.final_norm) {
    x = model.final_norm->forward(x);
    if (!all_finite(x)) return "the final norm";
  }
  return "the head or the loss";
}

// A non-finite loss stops the run before the update, naming the step and the layer its
// non-finite values come from (the model has not moved since `batch`'s forward).
void stop_unless_finite(TransformerLM& model, const Batch& batch, double loss, int64_t step) {
  if (!std::isfinite(loss))
    fail_non_finite_loss(loss, step,
                         "the first non-finite values come from " + first_non_finite(model, batch));
}

nlohmann::json config_json(const TrainOptions& o, const TransformerConfig& c) {
  return {{"task", o.task},
          {"data", o.data},
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
          // Every field of the model's config, as the checkpoint stores it.
          {"transformer", nlohmann::json::parse(config_to_json(c))}};
}

// The task's columns (cli/tasks.h): step, loss, the training figure, lr, the clocks, the
// evaluation's figure and, when the task has one, its second.
std::string metrics_csv(const std::vector<StepRecord>& rows, const TaskMetrics& m) {
  const bool second = m.secondary[0] != '\0';
  std::ostringstream os;
  os << "step,loss," << m.train << ",lr,seconds,train_seconds," << m.test;
  if (second) os << ',' << m.secondary;
  os << '\n';
  for (const StepRecord& r : rows) {
    os << r.step << ',' << r.loss << ',' << r.accuracy << ',' << r.lr << ',' << r.seconds << ','
       << r.train_seconds << ',';
    if (r.test_accuracy >= 0) os << r.test_accuracy;
    if (second) {
      os << ',';
      if (r.test_accuracy >= 0) os << r.test_reference_accuracy;
    }
    os << '\n';
  }
  return os.str();
}

const std::string& metadata_value(const std::map<std::string, std::string>& metadata,
                                  const std::string& key, const std::string& path) {
  auto it = metadata.find(key);
  POLYAK_CHECK(it != metadata.end(), "polyak: ", path, " has no metadata '", key,
               "', expected a checkpoint written by polyak train (it records the copy task)");
  return it->second;
}

int64_t metadata_int(const std::map<std::string, std::string>& metadata, const std::string& key,
                     const std::string& path) {
  const std::string& text = metadata_value(metadata, key, path);
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::logic_error&) {
    used = 0;
  }
  POLYAK_CHECK(used > 0 && used == text.size(), "polyak: ", path, " has metadata ", key, " = '",
               text, "', expected an integer");
  return v;
}

std::unique_ptr<LrSchedule> make_schedule(const TrainOptions& o) {
  if (o.warmup > 0)
    return std::make_unique<LinearAnneal>(LinearAnneal::Options{
        .lr = o.lr, .warmup_steps = o.warmup, .total_steps = o.steps, .final_lr = 0});
  StepDecay::Options decay{.lr = o.lr};
  if (o.decay_step > 0) decay.milestones = {o.decay_step};
  return std::make_unique<StepDecay>(decay);
}

}  // namespace

uint64_t copy_test_seed(uint64_t seed) {
  return seed + 0x9E3779B97F4A7C15ull;
}

std::map<std::string, std::string> copy_task_metadata(const CopyTask& test_task,
                                                      uint64_t test_seed) {
  return {{"copy.length", std::to_string(test_task.length())},
          {"copy.min_word", std::to_string(test_task.min_word())},
          {"copy.max_word", std::to_string(test_task.max_word())},
          {"copy.symbols", std::to_string(test_task.symbols())},
          {"copy.test_seed", std::to_string(test_seed)}};
}

CopyTask::Options copy_task_from_metadata(const std::map<std::string, std::string>& metadata,
                                          const std::string& path) {
  CopyTask::Options o;
  o.length = metadata_int(metadata, "copy.length", path);
  o.min_word = metadata_int(metadata, "copy.min_word", path);
  o.max_word = metadata_int(metadata, "copy.max_word", path);
  o.symbols = metadata_int(metadata, "copy.symbols", path);
  const std::string& seed = metadata_value(metadata, "copy.test_seed", path);
  size_t used = 0;
  try {
    o.seed = std::stoull(seed, &used);
  } catch (const std::logic_error&) {
    used = 0;
  }
  POLYAK_CHECK(used > 0 && used == seed.size() && seed[0] != '-', "polyak: ", path,
               " has metadata copy.test_seed = '", seed, "', expected an unsigned integer");
  return o;
}

CopyScores evaluate_copy(TransformerLM& model, CopyTask& task, int64_t batches,
                         int64_t batch_size) {
  NoGradGuard no_grad;
  const EvalMode eval(model);
  CopyScores s;
  for (int64_t i = 0; i < batches; ++i) {
    const Batch b = task.batch(batch_size);  // on the host: only the tokens go to the model
    const Tensor predicted = argmax(model(b.tokens.to(model.device())), 2).cpu();  // B·L ids
    s.tokens += copy_accuracy_of(predicted, b);
    s.reference += reference_accuracy_of(predicted, b);
    s.words += copied_words_of(predicted, b);
  }
  const double n = static_cast<double>(batches);
  return {s.tokens / n, s.reference / n, s.words / n};
}

StepOutputs copy_forward_backward(TransformerLM& model, const Batch& batch, Precision precision) {
  const Autocast scope(precision);  // the optimizer's step, after this, runs in f32
  const HeadLoss step = head_loss(model, batch);
  step.loss.backward();
  return {step.loss.detach(), step.output.detach()};
}

void fail_non_finite_loss(double value, int64_t step, const std::string& diagnosis) {
  fail("train: the loss is ", value, " at step ", step, "; ", diagnosis,
       ", expected finite values (lower --lr or check the data)");
}

double copy_loss_backward(TransformerLM& model, const Batch& batch, int64_t step, Tensor* logits,
                          Precision precision) {
  const StepOutputs out = copy_forward_backward(model, batch, precision);
  const double value = out.loss.item();
  stop_unless_finite(model, batch, value, step);
  if (logits) *logits = out.logits;
  return value;
}

CopyOptimizer::CopyOptimizer(TransformerLM& model, const TrainOptions& o)
    : params_(model.parameters()),
      opt_(params_, {.lr = o.lr, .weight_decay = o.weight_decay}),
      schedule_(make_schedule(o)),
      clip_(o.clip) {}

double CopyOptimizer::schedule() {
  return schedule_->apply(opt_);
}

void CopyOptimizer::update() {
  if (clip_ > 0) (void)clip_grad_norm_per_parameter_tensor(params_, clip_);  // no host read
  opt_.step();
}

CopyStepper::CopyStepper(TransformerLM& model, CopyOptimizer& opt, Device device,
                         Precision precision, bool graph)
    : model_(model), opt_(opt), device_(device), precision_(precision), use_graph_(graph) {
  POLYAK_CHECK(!graph || !device.is_cpu(),
               "polyak: --graph captures a device's step, expected --device cuda or cuda:N "
               "(the CPU runs its steps directly)");
}

void CopyStepper::load(const Batch& host_batch) {
  if (use_graph_ && inputs_.tokens.defined()) {
    // The buffers a captured step reads: written, never replaced. A captured step has one
    // shape and no padding to vary.
    POLYAK_CHECK(host_batch.tokens.shape() == inputs_.tokens.shape() &&
                     host_batch.lengths == inputs_.lengths,
                 "polyak: --graph replays one captured step, a batch of tokens ",
                 inputs_.tokens.shape(), host_batch.lengths.empty() ? "" : " with padding",
                 "; this batch has tokens ", host_batch.tokens.shape(),
                 ", expected batches of one shape and padding (train this task without --graph)");
    inputs_.tokens.copy_(host_batch.tokens);
    inputs_.targets.copy_(host_batch.targets);
    if (inputs_.mask.defined()) inputs_.mask.copy_(host_batch.mask);
    inputs_.word_lengths = host_batch.word_lengths;
  } else {
    inputs_ = host_batch.to(device_);
  }
}

CopyStepper::Outputs CopyStepper::step(int64_t step) {
  Outputs o;
  if (!use_graph_ || steps_++ == 0) {
    opt_.zero_grad();
    const StepOutputs out = copy_forward_backward(model_, inputs_, precision_);
    // On the CPU the loss is at hand: a non-finite one stops the run before the update.
    if (device_.is_cpu()) stop_unless_finite(model_, inputs_, out.loss.item(), step);
    o.lr = opt_.step();
    o.loss = out.loss;
    o.predictions = head_predictions(model_, out.logits);
    return o;
  }
  o.lr = opt_.schedule();  // read by the replay's optimiser arguments
  if (!graph_.defined()) {
    graph_ = DeviceGraph::capture(device_, [&] {
      opt_.zero_grad();
      const StepOutputs out = copy_forward_backward(model_, inputs_, precision_);
      opt_.update();
      graph_loss_ = out.loss;
      graph_predictions_ = head_predictions(model_, out.logits);
    });
  }
  graph_.replay();
  o.loss = graph_loss_.clone();
  if (graph_predictions_.defined()) o.predictions = graph_predictions_.clone();
  return o;
}

namespace {

// SIGINT and SIGTERM while a run trains: the first one is noted, and the run saves a
// checkpoint after the step in progress and returns; the handler then goes back to the
// default, so a second signal ends the process at once.
volatile std::sig_atomic_t g_signal = 0;
extern "C" void note_signal(int signal) {
  g_signal = signal;
  std::signal(signal, SIG_DFL);
}

}  // namespace

SignalScope::SignalScope() {
  g_signal = 0;
  previous_int_ = std::signal(SIGINT, note_signal);
  previous_term_ = std::signal(SIGTERM, note_signal);
}
SignalScope::~SignalScope() {
  std::signal(SIGINT, previous_int_);
  std::signal(SIGTERM, previous_term_);
}
int SignalScope::received() {
  return g_signal;
}

void keep_checkpoints(const std::filesystem::path& dir, int64_t step, int64_t keep) {
  namespace fs = std::filesystem;
  const fs::path latest = dir / "checkpoint.safetensors";
  const fs::path named = dir / ("checkpoint-" + std::to_string(step) + ".safetensors");
  std::error_code ec;
  fs::remove(named, ec);
  fs::create_hard_link(latest, named, ec);
  if (ec) fs::copy_file(latest, named, fs::copy_options::overwrite_existing);
  std::vector<std::pair<int64_t, fs::path>> kept;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    const std::string prefix = "checkpoint-", suffix = ".safetensors";
    if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string digits =
        name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    kept.emplace_back(std::stoll(digits), e.path());
  }
  std::sort(kept.begin(), kept.end());
  for (size_t i = 0; i + static_cast<size_t>(keep) < kept.size(); ++i)
    fs::remove(kept[i].second, ec);
}

TrainResult train_run(const TrainOptions& o,
                      const std::function<void(const StepRecord&)>& on_step) {
  set_num_threads(o.threads);
  std::unique_ptr<Task> task = make_task(o);
  const TaskMetrics metrics = task->metrics();
  TransformerConfig config = o.model_config(task->vocab());
  task->configure(config);
  config.validate();
  const Device device = device_flag(o.device);
  check_training_memory(o, config, device);
  TransformerLM model(config);
  const Precision precision = precision_flag(o);
  model.to(device);
  model.train();

  // The run directory: locked for this run; another run's files refused (or replaced with
  // --force, or continued with --resume).
  const RunDirectory dir(o.out,
                         o.resume  ? RunDirectory::Mode::resume
                         : o.force ? RunDirectory::Mode::force
                                   : RunDirectory::Mode::fresh,
                         "polyak train");
  const std::filesystem::path out_dir(o.out);
  TrainResult result;
  result.removed_temporaries = dir.removed_temporaries();
  result.config_path = (out_dir / "config.json").string();
  result.metrics_path = (out_dir / "metrics.csv").string();
  result.model_path = (out_dir / "model.safetensors").string();
  result.checkpoint_path = (out_dir / "checkpoint.safetensors").string();
  const std::string options_json = train_options_json(o);

  CopyOptimizer opt(model, o);
  TrainingProgress resumed;
  if (o.resume) {
    resumed = load_training_checkpoint(result.checkpoint_path, model, opt.optimizer());
    POLYAK_CHECK(o.steps >= resumed.step, "polyak train --resume: --steps is ", o.steps,
                 " but the run in ", o.out, " has done ", resumed.step,
                 " steps, expected --steps ≥ ", resumed.step);
    task->set_train_position(resumed.train_data);
    task->set_test_position(resumed.test_data);
  }
  write_text_file_atomically(result.config_path, config_json(o, config).dump(2) + "\n", "train");

  // The training batches, made on a thread of their own up to two steps ahead. Each carries the
  // training stream's position after it, which is what a checkpoint after that step records.
  struct Made {
    Batch batch;
    uint64_t position = 0;
  };
  uint64_t train_position = task->train_position();
  Prefetcher<Made> batches(
      [&task, batch = o.batch] {
        Made m;
        m.batch = task->train_batch(batch);
        m.position = task->train_position();
        return m;
      },
      2);

  std::vector<StepRecord>& rows = result.records;
  rows = resumed.rows;  // grows with the steps (no reservation sized by --steps)
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  // On a device nothing in a step waits for the device: each step's loss and argmax
  // predictions stay there, and `sync_every` steps' worth are read back at once (always
  // before an evaluation and at the end), which is when their rows are written and shown.
  struct Pending {
    StepRecord record;
    Tensor loss, predictions;
    Batch batch;  // on the host: the targets (and word lengths) the training figure needs
  };
  std::vector<Pending> pending;
  const int64_t sync_every = o.sync_every > 0 ? o.sync_every : device.is_cpu() ? 1 : 50;
  // One read of the group's losses and one of its predictions: on a device, two waits.
  auto read_pending = [&] {
    if (pending.empty()) return;
    std::vector<Tensor> losses, predictions;
    for (const Pending& p : pending) {
      losses.push_back(p.loss.reshape({1}));
      if (p.predictions.defined()) predictions.push_back(p.predictions);
    }
    const std::vector<double> loss_values = concat(losses, 0).to_vector();
    const Tensor predicted = predictions.empty() ? Tensor() : concat(predictions, 0).cpu();
    for (size_t i = 0; i < pending.size(); ++i) {
      Pending& p = pending[i];
      StepRecord& r = p.record;
      r.loss = loss_values[i];
      if (!std::isfinite(r.loss))
        fail_non_finite_loss(r.loss, r.step,
                             "losses on a device are read every " + std::to_string(sync_every) +
                                 " steps (--device cpu names the first layer with non-finite "
                                 "values)");
      Tensor mine;
      if (predicted.defined()) {
        const int64_t B = p.predictions.size(0), row = static_cast<int64_t>(i) * B;
        mine = slice(predicted, 0, row, row + B);
      }
      r.accuracy = task->train_figure(r.loss, mine, p.batch);
      rows.push_back(r);
      if (on_step) on_step(r);
    }
    const bool evaluated = pending.back().record.test_accuracy >= 0;
    pending.clear();
    if (evaluated)
      write_text_file_atomically(result.metrics_path, metrics_csv(rows, metrics), "train");
  };
  const Clock::time_point start = Clock::now();
  double eval_seconds = resumed.eval_seconds;
  auto elapsed = [&] { return resumed.seconds + since(start); };
  // The run after `done` steps into checkpoint.safetensors, and its rows into metrics.csv.
  // `test_data` is the position of the test stream to continue from; without
  // `keep_last_eval` the last row's evaluation is left out: it came only because the run
  // ended at that step, and a run that goes on does not make it.
  auto save_checkpoint = [&](int64_t done, uint64_t test_data, bool keep_last_eval) {
    read_pending();
    TrainingProgress progress;
    progress.step = done;
    progress.seconds = elapsed();
    progress.eval_seconds = eval_seconds;
    progress.rows = rows;
    if (!keep_last_eval && !progress.rows.empty())
      progress.rows.back().test_accuracy = progress.rows.back().test_reference_accuracy = -1;
    progress.train_data = train_position;
    progress.test_data = test_data;
    save_training_checkpoint(result.checkpoint_path, model, opt.optimizer(), progress,
                             options_json);
    write_text_file_atomically(result.metrics_path, metrics_csv(rows, metrics), "train");
    if (o.keep_checkpoints > 1) keep_checkpoints(out_dir, done, o.keep_checkpoints);
  };
  auto finish_data = [&] {
    const PrefetchStats stats = batches.stats();
    result.data_batches = stats.consumed;
    result.data_seconds = stats.produce_seconds;
    result.data_wait_seconds = stats.wait_seconds;
  };
  const SignalScope signals;
  CopyStepper stepper(model, opt, device, precision, o.graph);
  uint64_t end_test_data = task->test_position();
  bool end_eval_kept = true;
  for (int64_t step = resumed.step + 1; step <= o.steps; ++step) {
    Made made = batches.next();
    train_position = made.position;
    stepper.load(made.batch);
    Pending p;
    StepRecord& r = p.record;
    r.step = step;
    const CopyStepper::Outputs out = stepper.step(step);
    r.lr = out.lr;
    p.loss = out.loss;
    p.predictions = out.predictions;
    p.batch = std::move(made.batch);
    r.train_seconds = elapsed() - eval_seconds;
    const bool regular_eval = step % o.eval_every == 0;
    const bool evaluate = regular_eval || step == o.steps;
    end_test_data = task->test_position();
    end_eval_kept = regular_eval;
    if (evaluate) {
      const Clock::time_point eval_start = Clock::now();
      const TaskScores scores = task->evaluate(model, o.eval_batches, o.batch, false);
      r.test_accuracy = scores.primary;
      r.test_reference_accuracy = scores.secondary;
      eval_seconds += since(eval_start);
    }
    r.seconds = elapsed();
    pending.push_back(std::move(p));
    if (evaluate || static_cast<int64_t>(pending.size()) >= sync_every) read_pending();
    if (step == o.steps) break;
    if (const int signal = SignalScope::received()) {
      save_checkpoint(step, task->test_position(), true);
      finish_data();
      result.stopped_by = signal;
      result.steps_done = step;
      return result;
    }
    if (o.save_every > 0 && step % o.save_every == 0)
      save_checkpoint(step, task->test_position(), true);
  }
  // The checkpoint of the finished run, before the final evaluation draws from the test
  // stream: a later --resume with more --steps continues as if the run had never stopped.
  save_checkpoint(o.steps, end_eval_kept ? task->test_position() : end_test_data, end_eval_kept);
  finish_data();
  result.steps_done = o.steps;
  result.train_seconds = rows.empty() ? 0 : rows.back().train_seconds;
  // The final figure: the whole test split (or, for the copy task, a larger sample than the
  // periodic evaluations, drawn after them).
  const TaskScores final_scores = task->evaluate(model, o.eval_batches, o.batch, true);
  result.test_accuracy = final_scores.primary;
  result.test_reference_accuracy = final_scores.secondary;
  result.test_word_accuracy = final_scores.words;
  result.summary = task->summary(final_scores);
  result.seconds = elapsed();

  std::map<std::string, std::string> metadata = task->metadata();
  metadata["train.task"] = o.task;
  metadata["train.kind"] = o.model;
  metadata["train.steps"] = std::to_string(o.steps);
  metadata["train.seed"] = std::to_string(o.seed);
  metadata["train.test_accuracy"] = std::to_string(result.test_accuracy);
  save_model(model, result.model_path, metadata);
  result.made = task->after_training(model, o.out);
  return result;
}

}  // namespace polyak::cli
