#include "cli/generate.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>

#include "cli/copy_run.h"
#include "cli/images.h"
#include "polyak/core/threads.h"
#include "polyak/models/checkpoint.h"
#include "polyak/models/generate.h"

namespace polyak::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// One generate() call, timed as GenerateReport describes.
std::vector<int32_t> timed_generate(TransformerLM& model, const std::vector<int32_t>& prompt,
                                    GenerateOptions options, GenerateReport& report) {
  Clock::time_point first, last;
  int64_t count = 0;
  options.on_token = [&](int32_t) {
    last = Clock::now();
    if (count++ == 0) first = last;
    return true;
  };
  const Clock::time_point start = Clock::now();
  std::vector<int32_t> out = generate(model, prompt, options);
  report.prompt_tokens += static_cast<int64_t>(prompt.size());
  report.generated_tokens += static_cast<int64_t>(out.size());
  if (count > 0) {
    report.prompt_seconds += seconds_between(start, first);
    report.generate_seconds += seconds_between(first, last);
    report.timed_tokens += count - 1;
  }
  return out;
}

}  // namespace

int64_t state_bytes(const TransformerLM& model) {
  ModelState state = model.initial_state(1);
  int64_t bytes = 0;
  for (const AttentionState& layer : state.layers)
    for (const Tensor& t : layer.tensors)
      if (t.defined()) bytes += static_cast<int64_t>(t.nbytes());
  return bytes;
}

double GenerateReport::prompt_tokens_per_s() const {
  return prompt_seconds > 0 ? static_cast<double>(prompt_tokens) / prompt_seconds : 0;
}

double GenerateReport::generated_tokens_per_s() const {
  return generate_seconds > 0 ? static_cast<double>(timed_tokens) / generate_seconds : 0;
}

GenerateReport run_generate(const GenerateCommand& o) {
  set_num_threads(o.threads);
  std::map<std::string, std::string> metadata;
  std::shared_ptr<TransformerLM> model = load_model(o.checkpoint, &metadata);
  model->to(device_flag(o.device));
  const TransformerConfig& config = model->config();
  POLYAK_CHECK(config.causal, "polyak generate: ", o.checkpoint,
               " holds a non-causal model, expected a causal one (generation runs the model "
               "as an RNN, one token at a time)");

  GenerateReport report;
  report.kind = model_kind(config);
  report.vocab = config.vocab;
  POLYAK_CHECK(o.stop >= -1 && o.stop < config.vocab, "polyak generate: --stop is ", o.stop,
               ", expected a token id in [0, ", config.vocab, ") of ", o.checkpoint,
               "'s vocabulary or -1");

  GenerateOptions gen{.max_new_tokens = o.tokens,
                      .temperature = o.temperature,
                      .seed = o.seed,
                      .stop_token = o.stop,
                      .on_token = nullptr};
  const auto trained_on = metadata.find("train.task");
  report.task = trained_on == metadata.end() ? "copy" : trained_on->second;
  if (o.images > 0) {
    POLYAK_CHECK(report.task == "pixels" || config.head == "mixture",
                 "polyak generate: ", o.checkpoint, " holds a model of the ", report.task,
                 " task, expected a pixel model (polyak pixels) for --images");
    const Clock::time_point start = Clock::now();
    const Tensor images = sample_images(*model, {.images = o.images, .seed = o.seed});
    report.images = o.images;
    report.image_seconds = seconds_between(start, Clock::now());
    report.png = o.png.empty()
                     ? (std::filesystem::path(o.checkpoint).parent_path() / "samples.png").string()
                     : o.png;
    write_png_grid(report.png, images, 28, 28, std::min<int64_t>(o.images, 8));
    report.state_bytes = state_bytes(*model);
    return report;
  }
  if (o.copy == 0) {
    // A text model's prompt is its bytes; any other's, token ids.
    std::vector<int32_t> prompt;
    if (report.task == "text")
      for (unsigned char c : o.prompt) prompt.push_back(c);
    else
      prompt = parse_prompt(o.prompt);
    for (int32_t t : prompt)
      POLYAK_CHECK(t >= 0 && t < config.vocab, "polyak generate: --prompt has token ", t,
                   ", expected ids in [0, ", config.vocab, ") (the vocabulary of ", o.checkpoint,
                   ")");
    report.tokens = timed_generate(*model, prompt, gen, report);
    return report;
  }

  // Copy mode: K words of the test split, each prompted with "w 0".
  CopyTask task(copy_task_from_metadata(metadata, o.checkpoint));
  POLYAK_CHECK(task.vocab() <= config.vocab, "polyak generate: ", o.checkpoint,
               " records a copy task over ", task.vocab(), " tokens, expected at most the model's ",
               config.vocab);
  Batch batch = task.batch(o.copy);
  const Indices tokens = to_indices("polyak generate", "the copy task's tokens", batch.tokens);
  const int64_t length = task.length();
  for (int64_t i = 0; i < o.copy; ++i) {
    const int64_t n = batch.word_lengths[static_cast<size_t>(i)];
    const auto row = tokens.values.begin() + i * length;
    std::vector<int32_t> word(row, row + n);
    std::vector<int32_t> prompt = word;
    prompt.push_back(0);
    gen.max_new_tokens = n;
    std::vector<int32_t> out = timed_generate(*model, prompt, gen, report);
    int64_t right = 0;
    for (int64_t t = 0; t < std::min<int64_t>(n, static_cast<int64_t>(out.size())); ++t)
      right += out[static_cast<size_t>(t)] == word[static_cast<size_t>(t)];
    report.words += 1;
    report.words_exact += right == n && static_cast<int64_t>(out.size()) == n;
    report.word_tokens += n;
    report.word_tokens_right += right;
    if (report.examples.size() < 3) report.examples.push_back({word, out});
  }
  return report;
}

}  // namespace polyak::cli
