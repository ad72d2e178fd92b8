// The tasks of cli/tasks.h: the copy task, byte-level text, pixel-by-pixel images and the
// LRA-style classification tasks, behind one interface.
#include "cli/tasks.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numbers>

#include "cli/copy_run.h"
#include "cli/images.h"
#include "polyak/core/autograd.h"
#include "polyak/core/error.h"
#include "polyak/data/idx.h"
#include "polyak/data/listops.h"
#include "polyak/data/pathfinder.h"
#include "polyak/data/sequences.h"
#include "polyak/data/text.h"
#include "polyak/models/generate.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/mixture.h"
#include "polyak/ops/nn_ops.h"
#include "polyak/ops/reduce.h"

namespace polyak::cli {
namespace {

constexpr double kLn2 = std::numbers::ln2;
// The generated LRA-style datasets are fixed, whatever the run's --seed (which seeds the
// model and the order of the batches), as LRA's released splits are.
constexpr uint64_t kDataSeed = 0;
// Fashion-MNIST: the last 6000 of the 60000 training images are the image task's
// validation split (LRA's image task holds out 5000 of CIFAR-10's 50000 the same way).
constexpr int64_t kImageValidation = 6000;
constexpr int64_t kPixels = 784;
constexpr int64_t kStartToken = 256;  // the pixel task's first input, before pixel 0

std::string format(const char* fmt, double a, double b = 0, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, fmt, a, b, c);
  return buf;
}

// ---- copy --------------------------------------------------------------------------------

class CopyRun final : public Task {
 public:
  explicit CopyRun(const TrainOptions& o)
      : test_seed_(copy_test_seed(o.seed)),
        train_({.length = o.length, .seed = o.seed}),
        test_({.length = o.length, .seed = test_seed_}) {}

  std::string name() const override { return "copy"; }
  TaskMetrics metrics() const override { return task_metrics("copy"); }
  int64_t vocab() const override { return train_.vocab(); }
  int64_t length() const override { return train_.length(); }
  void configure(TransformerConfig&) const override {}
  Batch train_batch(int64_t batch_size) override { return train_.batch(batch_size); }
  uint64_t train_position() const override { return train_.generator().offset(); }
  void set_train_position(uint64_t p) override { train_.generator().set_offset(p); }
  uint64_t test_position() const override { return test_.generator().offset(); }
  void set_test_position(uint64_t p) override { test_.generator().set_offset(p); }

  TaskScores evaluate(TransformerLM& model, int64_t batches, int64_t batch_size,
                      bool final) override {
    // The final figure uses a larger sample than the periodic evaluations, drawn after them.
    const CopyScores s =
        evaluate_copy(model, test_, final ? std::max<int64_t>(batches, 32) : batches, batch_size);
    return {s.tokens, s.reference, s.words};
  }
  double train_figure(double, const Tensor& predictions, const Batch& batch) const override {
    return copy_accuracy_of(predictions, batch);
  }
  std::map<std::string, std::string> metadata() const override {
    return copy_task_metadata(test_, test_seed_);
  }
  std::string summary(const TaskScores& s) const override {
    return format(
        "test accuracy: %.2f%% per token of the copied words, %.2f%% per word (words "
        "copied whole); the reference code's per-token figure, counting the separator: "
        "%.2f%%",
        100 * s.primary, 100 * s.words, 100 * s.secondary);
  }

 private:
  uint64_t test_seed_;
  CopyTask train_, test_;
};

// The mean of the head's loss over `batches` batches (each weighted by `weight(b)`), in eval
// mode without a graph: the held-out nll per token in nats.
template <class Next>
double mean_loss(TransformerLM& model, int64_t batches, Next next) {
  NoGradGuard no_grad;
  const EvalMode eval(model);
  double total = 0, weight = 0;
  for (int64_t i = 0; i < batches; ++i) {
    const Batch b = next(i);
    const double w = b.mask.defined() ? sum(b.mask).item() : static_cast<double>(b.targets.numel());
    total += head_loss(model, b.to(model.device())).loss.item() * w;
    weight += w;
  }
  return weight > 0 ? total / weight : 0.0;
}

// ---- text --------------------------------------------------------------------------------

class TextRun final : public Task {
 public:
  explicit TextRun(const TrainOptions& o)
      : corpus_(load_text(o.data.empty() ? default_text_path() : o.data),
                {.length = o.length, .held_out = 0.1, .seed = o.seed}) {}

  std::string name() const override { return "text"; }
  TaskMetrics metrics() const override { return task_metrics("text"); }
  int64_t vocab() const override { return corpus_.vocab(); }
  int64_t length() const override { return corpus_.length(); }
  void configure(TransformerConfig&) const override {}
  Batch train_batch(int64_t batch_size) override { return corpus_.batch(batch_size); }
  uint64_t train_position() const override { return corpus_.generator().offset(); }
  void set_train_position(uint64_t p) override { corpus_.generator().set_offset(p); }

  TaskScores evaluate(TransformerLM& model, int64_t batches, int64_t batch_size,
                      bool final) override {
    const int64_t all = corpus_.held_out_batches(batch_size);
    const int64_t n = final ? all : std::min(batches, all);
    const double nats =
        mean_loss(model, n, [&](int64_t i) { return corpus_.held_out_batch(i, batch_size); });
    return {nats / kLn2};
  }
  double train_figure(double loss, const Tensor&, const Batch&) const override {
    return loss / kLn2;
  }
  std::map<std::string, std::string> metadata() const override {
    return {{"task", "text"}, {"text.path", corpus_.path()}};
  }
  std::string summary(const TaskScores& s) const override {
    return format(
               "held-out bits per byte: %.4f (the last %.0f bytes of the file, in windows of "
               "%.0f)",
               s.primary, static_cast<double>(corpus_.held_out_bytes()),
               static_cast<double>(corpus_.length())) +
           " of " + corpus_.path();
  }

 private:
  TextCorpus corpus_;
};

// ---- shuffled passes over a fixed split --------------------------------------------------

// An EpochSampler whose position is one number: the batches taken.
class Passes {
 public:
  Passes(int64_t size, int64_t batch, uint64_t seed) : sampler_(size, batch, seed) {}
  std::vector<int64_t> next() {
    ++taken_;
    return sampler_.next();
  }
  uint64_t position() const { return static_cast<uint64_t>(taken_); }
  void seek(uint64_t taken) {
    taken_ = static_cast<int64_t>(taken);
    const int64_t per_epoch = sampler_.batches_per_epoch();
    sampler_.seek(taken_ / per_epoch, taken_ % per_epoch);
  }

 private:
  EpochSampler sampler_;
  int64_t taken_ = 0;
};

// A batch of `o.batch` drawn from `count` examples: no more than there are.
void check_batch(const TrainOptions& o, int64_t count, const char* what) {
  POLYAK_CHECK(o.batch <= count, "polyak: --batch is ", o.batch, ", more than the ", count, " ",
               what, o.train_examples > 0 ? " of --train-examples" : "",
               ", expected at most that many");
}

// The first `limit` (> 0) of `size`, or all of them.
int64_t capped(int64_t size, int64_t limit) {
  return limit > 0 ? std::min(size, limit) : size;
}

// ---- pixels ------------------------------------------------------------------------------

class PixelRun final : public Task {
 public:
  explicit PixelRun(const TrainOptions& o)
      : train_(std::make_shared<const ImageSet>(load_fashion_mnist("train", o.data))),
        test_(std::make_shared<const ImageSet>(load_fashion_mnist("test", o.data))),
        train_count_(capped(train_->count, o.train_examples)),
        test_count_(capped(test_->count, o.test_examples)),
        head_(o.pixel_head),
        seed_(o.seed),
        passes_((check_batch(o, train_count_, "training images"), train_count_), o.batch, o.seed) {
    for (const ImageSet* set : {train_.get(), test_.get()})
      POLYAK_CHECK(set->rows * set->cols == kPixels, "polyak: the pixel task's ",
                   set == train_.get() ? "train" : "test", " images in ",
                   o.data.empty() ? default_fashion_mnist_dir() : o.data, " are ", set->rows, "×",
                   set->cols, ", expected 28×28 (Fashion-MNIST)");
  }

  std::string name() const override { return "pixels"; }
  TaskMetrics metrics() const override { return task_metrics("pixels"); }
  int64_t vocab() const override { return kStartToken + 1; }
  int64_t length() const override { return kPixels; }
  void configure(TransformerConfig& c) const override {
    c.vocab = vocab();
    c.max_len = kPixels;
    c.causal = true;
    c.head = head_ == "softmax" ? "tokens" : "mixture";
    c.output_vocab = head_ == "softmax" ? 256 : 0;  // the start token is never a target
  }
  Batch train_batch(int64_t) override { return images(*train_, passes_.next()); }
  uint64_t train_position() const override { return passes_.position(); }
  void set_train_position(uint64_t p) override { passes_.seek(p); }

  TaskScores evaluate(TransformerLM& model, int64_t batches, int64_t batch_size,
                      bool final) override {
    const int64_t count = final ? test_count_ : std::min(test_count_, batches * batch_size);
    const int64_t n = (count + batch_size - 1) / batch_size;
    const double nats = mean_loss(model, n, [&](int64_t i) {
      std::vector<int64_t> idx;
      for (int64_t j = i * batch_size; j < std::min(count, (i + 1) * batch_size); ++j)
        idx.push_back(j);
      return images(*test_, idx);
    });
    return {nats / kLn2};
  }
  double train_figure(double loss, const Tensor&, const Batch&) const override {
    return loss / kLn2;
  }
  std::map<std::string, std::string> metadata() const override {
    return {{"task", "pixels"}, {"pixels.start_token", std::to_string(kStartToken)}};
  }
  std::string summary(const TaskScores& s) const override {
    return format("test bits/dim: %.4f (%.0f Fashion-MNIST test images)", s.primary,
                  static_cast<double>(test_count_));
  }
  // 16 samples drawn in RNN mode, as samples.png in the run's folder.
  std::string after_training(TransformerLM& model, const std::string& out_dir) override {
    const auto start = std::chrono::steady_clock::now();
    const Tensor images = sample_images(model, {.images = 16, .seed = seed_});
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::string png = (std::filesystem::path(out_dir) / "samples.png").string();
    write_png_grid(png, images, 28, 28, 8);
    return format(
               "samples: 16 images drawn pixel by pixel in RNN mode in %.1f s (%.2f "
               "images/s), ",
               seconds, 16 / seconds) +
           png;
  }

  // Images `indices` of `set` as next-pixel sequences: inputs (start, x_0 … x_782), targets
  // x_0 … x_783. No mask: every position counts, and the loss is the plain mean.
  static Batch images(const ImageSet& set, const std::vector<int64_t>& indices) {
    const auto B = static_cast<int64_t>(indices.size());
    Batch b;
    b.tokens = Tensor::empty(Shape{B, kPixels}, DType::i64);
    b.targets = Tensor::empty(Shape{B, kPixels}, DType::i64);
    int64_t* tokens = b.tokens.data<int64_t>();
    int64_t* targets = b.targets.data<int64_t>();
    for (int64_t r = 0; r < B; ++r) {
      const uint8_t* px = set.pixels.data() + indices[static_cast<size_t>(r)] * kPixels;
      tokens[r * kPixels] = kStartToken;
      for (int64_t t = 0; t < kPixels; ++t) {
        targets[r * kPixels + t] = px[t];
        if (t + 1 < kPixels) tokens[r * kPixels + t + 1] = px[t];
      }
    }
    return b;
  }

 private:
  std::shared_ptr<const ImageSet> train_, test_;
  int64_t train_count_, test_count_;
  std::string head_;
  uint64_t seed_;
  Passes passes_;
};

// ---- classification ----------------------------------------------------------------------

struct Splits {
  std::unique_ptr<SequenceDataset> train, validation, test;
};

Splits classification_splits(const TrainOptions& o) {
  Splits s;
  if (o.task == "listops") {
    auto split = [&](const char* name) {
      ListOpsDataset::Options lo;
      lo.split = name;
      lo.seed = kDataSeed;
      return std::make_unique<ListOpsDataset>(lo);
    };
    s.train = split("train");
    s.validation = split("val");
    s.test = split("test");
  } else if (o.task == "pathfinder") {
    auto split = [&](const char* name) {
      PathfinderDataset::Options po;
      po.split = name;
      po.seed = kDataSeed;
      po.contour_length = pathfinder_contour_length(o.difficulty);
      return std::make_unique<PathfinderDataset>(po);
    };
    s.train = split("train");
    s.validation = split("val");
    s.test = split("test");
  } else {
    auto train = std::make_shared<const ImageSet>(load_fashion_mnist("train", o.data));
    auto test = std::make_shared<const ImageSet>(load_fashion_mnist("test", o.data));
    POLYAK_CHECK(train->count > kImageValidation, "polyak: the image task's training file holds ",
                 train->count, " images, expected more than the ", kImageValidation,
                 " it holds out for validation");
    const int64_t keep = train->count - kImageValidation;
    s.train = std::make_unique<ImageSequences>(train, "fashion-mnist/train", 0, keep);
    s.validation =
        std::make_unique<ImageSequences>(train, "fashion-mnist/val", keep, kImageValidation);
    s.test = std::make_unique<ImageSequences>(test, "fashion-mnist/test");
  }
  return s;
}

class ClassifyRun final : public Task {
 public:
  explicit ClassifyRun(const TrainOptions& o)
      : task_(o.task),
        splits_(classification_splits(o)),
        train_count_(capped(splits_.train->size(), o.train_examples)),
        test_count_(capped(splits_.test->size(), o.test_examples)),
        passes_((check_batch(o, train_count_, "training examples"), train_count_), o.batch,
                o.seed) {}

  std::string name() const override { return task_; }
  TaskMetrics metrics() const override { return task_metrics(task_); }
  int64_t vocab() const override { return splits_.train->vocab(); }
  int64_t length() const override { return splits_.train->max_length(); }
  // The LRA code's small encoder around the kind: non-causal, pre-norm, learned positions,
  // mean pooling and a ReLU layer of the feed-forward width before the class logits.
  void configure(TransformerConfig& c) const override {
    c.vocab = vocab();
    c.max_len = length();
    c.causal = false;
    c.pre_norm = true;
    c.positions = "learned";
    c.head = "classes";
    c.classes = splits_.train->classes();
    c.pooling = "mean";
    c.head_hidden = c.resolved_ff_dim();
  }
  Batch train_batch(int64_t) override { return batch(*splits_.train, passes_.next()); }
  uint64_t train_position() const override { return passes_.position(); }
  void set_train_position(uint64_t p) override { passes_.seek(p); }

  TaskScores evaluate(TransformerLM& model, int64_t batches, int64_t batch_size,
                      bool final) override {
    const SequenceDataset& data = final ? *splits_.test : *splits_.validation;
    const int64_t count =
        final ? test_count_ : std::min(splits_.validation->size(), batches * batch_size);
    NoGradGuard no_grad;
    const EvalMode eval(model);
    int64_t right = 0;
    for (int64_t first = 0; first < count; first += batch_size) {
      std::vector<int64_t> idx;
      for (int64_t j = first; j < std::min(count, first + batch_size); ++j) idx.push_back(j);
      const Batch b = batch(data, idx);
      const Tensor predicted =
          head_predictions(model, model.forward(b.tokens.to(model.device()), b.lengths)).cpu();
      for (size_t r = 0; r < idx.size(); ++r)
        right += predicted.data<int64_t>()[r] == b.targets.data<int64_t>()[r];
    }
    return {static_cast<double>(right) / static_cast<double>(count)};
  }
  double train_figure(double, const Tensor& predictions, const Batch& b) const override {
    const int64_t B = b.targets.numel();
    int64_t right = 0;
    for (int64_t r = 0; r < B; ++r)
      right += predictions.data<int64_t>()[r] == b.targets.data<int64_t>()[r];
    return static_cast<double>(right) / static_cast<double>(B);
  }
  std::map<std::string, std::string> metadata() const override { return {{"task", task_}}; }
  std::string summary(const TaskScores& s) const override {
    return format("test accuracy: %.2f%% (%.0f examples of the test split, ", 100 * s.primary,
                  static_cast<double>(test_count_)) +
           splits_.test->name() + ")";
  }

  // Examples `indices` as one batch: class targets [B], padded rows with their lengths.
  static Batch batch(const SequenceDataset& data, const std::vector<int64_t>& indices) {
    ClassBatch c = gather_batch(data, indices);
    Batch b;
    b.tokens = c.tokens;
    b.targets = c.labels;
    b.lengths = std::move(c.lengths);
    return b;
  }

 private:
  std::string task_;
  Splits splits_;
  int64_t train_count_, test_count_;
  Passes passes_;
};

}  // namespace

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"copy",    "text",       "pixels",
                                                 "listops", "pathfinder", "image"};
  return names;
}

TaskMetrics task_metrics(const std::string& task) {
  if (task == "text") return {"bits_per_byte", "test_bits_per_byte", "", false};
  if (task == "pixels") return {"bits_per_dim", "test_bits_per_dim", "", false};
  if (is_classification_task(task)) return {"accuracy", "val_accuracy", "", true};
  return {"accuracy", "test_accuracy", "test_reference_accuracy", true};
}

bool is_classification_task(const std::string& task) {
  return task == "listops" || task == "pathfinder" || task == "image";
}

double Task::train_figure(double loss, const Tensor&, const Batch&) const {
  return loss;
}

std::unique_ptr<Task> make_task(const TrainOptions& o) {
  if (o.task == "copy") return std::make_unique<CopyRun>(o);
  if (o.task == "text") return std::make_unique<TextRun>(o);
  if (o.task == "pixels") return std::make_unique<PixelRun>(o);
  if (is_classification_task(o.task)) return std::make_unique<ClassifyRun>(o);
  fail("polyak: --task is '", o.task,
       "', expected one of: copy, text, pixels, listops, "
       "pathfinder, image");
}

HeadLoss head_loss(TransformerLM& model, const Batch& b) {
  Tensor out = model.forward(b.tokens, b.lengths);
  const std::string& head = model.config().head;
  Tensor loss;
  if (head == "classes") {
    loss = cross_entropy(out, b.targets);
  } else if (head == "mixture") {
    const Tensor nll = logistic_mixture_nll(out, b.targets);
    loss = b.mask.defined() ? sum(nll * b.mask) / sum(b.mask) : mean(nll);
  } else {
    loss = b.mask.defined() ? cross_entropy(out, b.targets, b.mask) : cross_entropy(out, b.targets);
  }
  return {loss, out};
}

Tensor head_predictions(const TransformerLM& model, const Tensor& output) {
  const std::string& head = model.config().head;
  if (head == "mixture") return Tensor();
  return argmax(output, head == "classes" ? 1 : 2);
}

}  // namespace polyak::cli
