// Generation in RNN mode: the prompt goes through TransformerLM::step one token at a time,
// then each generated token is fed back. Legend: V = vocab.
//
//   greedy (temperature 0):  next = argmax_v logits[v]        (the first maximum)
//   sampling (T > 0):        next ~ p,  p_v = exp((logits[v] − max) / T) / Σ exp(…),
//                            by inversion of one uniform draw from Generator(seed)
#include "polyak/models/generate.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "polyak/core/error.h"
#include "polyak/core/rng.h"
#include "polyak/ops/mixture.h"
#include "polyak/ops/shape_ops.h"

namespace polyak {

namespace {

int32_t pick(const Tensor& logits, double temperature, Generator& gen) {
  const std::vector<double> l = logits.to_vector();  // [1, V]
  size_t best = 0;
  for (size_t v = 1; v < l.size(); ++v)
    if (l[v] > l[best]) best = v;
  if (temperature == 0.0) return static_cast<int32_t>(best);
  std::vector<double> p(l.size());
  double total = 0;
  for (size_t v = 0; v < l.size(); ++v) total += p[v] = std::exp((l[v] - l[best]) / temperature);
  double u = gen.uniform() * total;
  for (size_t v = 0; v < p.size(); ++v) {
    u -= p[v];
    if (u < 0) return static_cast<int32_t>(v);
  }
  return static_cast<int32_t>(best);  // rounding left u ≥ 0 past the last: the mode
}

}  // namespace

std::vector<int32_t> generate(TransformerLM& model, const std::vector<int32_t>& prompt,
                              const GenerateOptions& options) {
  const char* fn = "generate";
  const TransformerConfig& c = model.config();
  POLYAK_CHECK(c.causal, fn,
               ": the model is not causal (causal = false), expected a causal model: only a "
               "causal model generates");
  POLYAK_CHECK(c.head == "tokens", fn, ": the model has a ", c.head,
               " head, expected a token head (a pixel model's mixture head draws images: "
               "sample_images, polyak generate --images)");
  POLYAK_CHECK(!prompt.empty(), fn, ": the prompt is empty, expected at least one token");
  for (size_t i = 0; i < prompt.size(); ++i)
    POLYAK_CHECK(prompt[i] >= 0 && prompt[i] < c.vocab, fn, ": prompt[", i, "] = ", prompt[i],
                 ", expected in [0, vocab = ", c.vocab, ")");
  POLYAK_CHECK(options.max_new_tokens >= 0, fn, ": max_new_tokens = ", options.max_new_tokens,
               ", expected ≥ 0");
  POLYAK_CHECK(options.temperature >= 0.0 && std::isfinite(options.temperature), fn,
               ": temperature = ", options.temperature,
               ", expected a finite value ≥ 0 (0: greedy)");
  // Every position fed to the model: the prompt and all generated tokens but the last.
  const int64_t positions =
      static_cast<int64_t>(prompt.size()) + std::max<int64_t>(options.max_new_tokens - 1, 0);
  // Refused before anything is generated: a limit met part-way would lose the tokens so far.
  const int64_t limit = model.step_limit();
  POLYAK_CHECK(limit == 0 || positions <= limit, fn, ": a prompt of ", prompt.size(),
               " tokens and max_new_tokens = ", options.max_new_tokens, " need ", positions,
               " positions, expected at most ", limit, " (", model.step_limit_reason(), ")");

  const EvalMode eval(model);
  NoGradGuard no_grad;
  ModelState state = model.initial_state(1);
  const Device device = model.device();  // each token goes where the model is
  Tensor logits;
  for (int32_t t : prompt) logits = model.step(Tensor::from_ints({t}, {1}).to(device), state);

  Generator gen(options.seed);
  std::vector<int32_t> out;
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    const int32_t next = pick(logits, options.temperature, gen);
    out.push_back(next);
    if (options.on_token && !options.on_token(next)) break;
    if (next == options.stop_token) break;
    if (i + 1 < options.max_new_tokens)
      logits = model.step(Tensor::from_ints({next}, {1}).to(device), state);
  }
  return out;
}

}  // namespace polyak

namespace polyak {

Tensor sample_images(TransformerLM& model, const ImageSampleOptions& options) {
  const char* fn = "sample_images";
  const TransformerConfig& c = model.config();
  POLYAK_CHECK(c.causal, fn,
               ": the model is not causal (causal = false), expected a causal pixel model");
  POLYAK_CHECK(c.head != "classes", fn,
               ": the model has a class head, expected a mixture or token head (a pixel model)");
  POLYAK_CHECK(options.images > 0 && options.pixels > 0, fn, ": images = ", options.images,
               ", pixels = ", options.pixels, ", expected both > 0");
  POLYAK_CHECK(options.start_token >= 0 && options.start_token < c.vocab && c.vocab > 256, fn,
               ": start_token = ", options.start_token, " with vocab = ", c.vocab,
               ", expected a token of the vocabulary beyond the 256 intensities");
  const int64_t limit = model.step_limit();
  POLYAK_CHECK(limit == 0 || options.pixels <= limit, fn, ": ", options.pixels,
               " pixels need as many positions, expected at most ", limit, " (",
               model.step_limit_reason(), ")");
  const EvalMode eval(model);
  NoGradGuard no_grad;
  const int64_t B = options.images, P = options.pixels;
  const Device device = model.device();
  ModelState state = model.initial_state(B);
  Generator gen(options.seed);
  Tensor out = Tensor::empty(Shape{B, P}, DType::i64);
  int64_t* po = out.data<int64_t>();
  Tensor input = Tensor::full(Shape{B}, static_cast<double>(options.start_token), DType::i64);
  for (int64_t t = 0; t < P; ++t) {
    const Tensor head = model.step(input.to(device), state).cpu();  // [B, 3K] or [B, V]
    Tensor drawn;
    if (c.head == "mixture") {
      drawn = sample_logistic_mixture(head, gen);
    } else {  // a token head: the softmax over the intensities alone
      drawn = Tensor::empty(Shape{B}, DType::i64);
      for (int64_t b = 0; b < B; ++b)
        drawn.data<int64_t>()[b] = pick(slice(slice(head, 0, b, b + 1), 1, 0, 256), 1.0, gen);
    }
    for (int64_t b = 0; b < B; ++b) po[b * P + t] = drawn.data<int64_t>()[b];
    input = drawn;
  }
  return out;
}

}  // namespace polyak
