// Memory estimates from a config (models/memory.h): the parameter count is exact for every
// kind and form, and the training estimate stays within a factor of the allocator's measured
// peak; sizes that cannot fit are refused before anything is built.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "nn/helpers.h"
#include "polyak/core/storage.h"
#include "polyak/models/memory.h"
#include "polyak/nn/kinds.h"
#include "polyak/ops/nn_ops.h"
#include "polyak/optim/radam.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::has_form;

namespace {

TransformerConfig config_of(const std::string& kind, bool causal) {
  TransformerConfig c;
  c.vocab = 13;
  c.max_len = 32;
  c.d_model = 24;
  c.heads = 2;
  c.ff_dim = 40;
  c.layers = 3;
  c.dropout = 0.1;
  set_model_kind(c, kind);
  c.causal = causal;
  c.validate();
  return c;
}

// The model's forward and backward on one batch and a RAdam step, twice (the moments are
// allocated at the first); the allocator's peak over the second, above what was allocated
// before the model was built.
double measured_training_peak(const TransformerConfig& config, int64_t batch, int64_t length) {
  const size_t before = allocator_stats().allocated_bytes;
  TransformerLM model(config);
  model.train();
  RAdam opt(model.parameters());
  std::vector<int64_t> values(static_cast<size_t>(batch * length));
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int64_t>(i * 7 % 13);
  const Tensor tokens = testing::ids({batch, length}, values);
  std::vector<int32_t> targets(values.begin(), values.end());
  const Indices target(Shape{batch * length}, targets);
  size_t peak = 0;
  for (int step = 0; step < 2; ++step) {
    reset_peak_allocated();
    const Tensor logits = model(tokens);
    Tensor loss = cross_entropy(logits.reshape({batch * length, config.vocab}), target);
    loss.backward();
    opt.step();
    opt.zero_grad();
    peak = allocator_stats().peak_allocated_bytes;
  }
  return static_cast<double>(peak - before);
}

}  // namespace

TEST_CASE("parameter_count: every kind and form, exactly the built model's") {
  for (const std::string& kind : model_kinds()) {
    for (const bool causal : {true, false}) {
      if (!has_form(kind, causal)) continue;
      for (const std::string positions : {"sinusoidal", "learned"}) {
        TransformerConfig c = config_of(kind, causal);
        c.positions = positions;
        c.norm = positions == "learned" ? "rmsnorm" : "layernorm";
        c.final_norm = positions == "sinusoidal";
        CAPTURE(kind);
        CAPTURE(causal);
        CAPTURE(positions);
        const TransformerLM model(c);
        CHECK(parameter_count(c) == static_cast<double>(model.num_parameters()));
      }
    }
  }
}

TEST_CASE("estimate_training_memory: within a factor of the measured peak for every kind") {
  struct Shape3 {
    int64_t d, ff, heads;
  };
  const int64_t batch = 4, length = 64;
  for (const std::string& kind : model_kinds()) {
    if (!has_form(kind, true)) continue;
    for (const Shape3 s : {Shape3{24, 40, 2}, Shape3{64, 256, 4}, Shape3{64, 64, 16}}) {
      TransformerConfig c = config_of(kind, true);
      c.d_model = s.d;
      c.ff_dim = s.ff;
      c.heads = s.heads;
      c.max_len = length;
      const MemoryEstimate e = estimate_training_memory(c, batch, length);
      const double measured = measured_training_peak(c, batch, length);
      const double ratio = e.total() / measured;
      CAPTURE(kind);
      CAPTURE(s.d);
      CAPTURE(s.ff);
      CAPTURE(s.heads);
      CAPTURE(ratio);
      CHECK(e.weight_bytes >= 4 * e.parameters);
      CHECK(e.optimizer_bytes == 2 * e.gradient_bytes);
      // Never far below what the run takes (it would let a run start that cannot finish its
      // first step) nor far above it (it would refuse runs that fit).
      CHECK(ratio > 0.8);
      CHECK(ratio < 2.0);
    }
  }
}

TEST_CASE("estimate_training_memory: grows with the sizes a user asks for") {
  const TransformerConfig c = config_of("momentum", true);
  const MemoryEstimate base = estimate_training_memory(c, 4, 32);
  TransformerConfig deep = c;
  deep.layers = 1000000;
  const MemoryEstimate e = estimate_training_memory(deep, 4, 32);
  CHECK(e.parameters > 1e9);
  CHECK(e.total() > 1e5 * base.total() / 2);
  CHECK(estimate_training_memory(c, 8, 32).activation_bytes ==
        doctest::Approx(2 * base.activation_bytes));
  // Softmax keeps its N×N weights: quadratic in the length, where momentum is linear.
  const TransformerConfig softmax = config_of("softmax", true);
  const double s1 = estimate_training_memory(softmax, 1, 1000).activation_bytes;
  const double s2 = estimate_training_memory(softmax, 1, 2000).activation_bytes;
  const double m1 = estimate_training_memory(c, 1, 1000).activation_bytes;
  const double m2 = estimate_training_memory(c, 1, 2000).activation_bytes;
  CHECK(s2 / s1 > 3);
  CHECK(m2 / m1 == doctest::Approx(2).epsilon(0.05));
}

TEST_CASE("check_memory: refuses past the limit, naming the flags and the estimate") {
  const TransformerConfig c = config_of("linear", true);
  const MemoryEstimate e = estimate_training_memory(c, 4, 32);
  check_memory("test", e, Device::cpu(), e.total() * 2, "--layers 3", "the way out");
  check_error(
      [&] { check_memory("test", e, Device::cpu(), e.total() / 2, "--layers 3", "the way out"); },
      {"test: --layers 3 needs about", "parameters: weights", "gradients", "optimizer state",
       "activations", "more than the limit of", "the way out"});
  // Against the machine: a model of 10^12 parameters fits nowhere this test runs.
  TransformerConfig huge = c;
  huge.layers = 100000000;
  if (available_memory())
    check_error(
        [&] {
          check_memory("test", estimate_training_memory(huge, 4, 32), Device::cpu(), std::nullopt,
                       "--layers 100000000", "the way out");
        },
        {"--layers 100000000", "available on cpu"});
}

TEST_CASE("available_memory: the host has a figure, below its total memory") {
  const std::optional<size_t> available = available_memory();
  REQUIRE(available.has_value());
  CHECK(*available > 0);
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  CHECK(static_cast<double>(*available) <= static_cast<double>(pages) * static_cast<double>(page) +
                                               static_cast<double>(allocator_stats().cached_bytes));
}

TEST_CASE("format_bytes") {
  CHECK(format_bytes(12) == "12 bytes");
  CHECK(format_bytes(4096) == "4.0 KiB");
  CHECK(format_bytes(1.5 * 1024 * 1024 * 1024) == "1.5 GiB");
  CHECK(format_bytes(3.0 * std::pow(1024.0, 4)) == "3.0 TiB");
}
