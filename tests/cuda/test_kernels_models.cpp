// Whole models on a device against the CPU, for every model kind: the logits, the loss and
// every parameter's gradient after one forward and backward in training mode (dropout on:
// the device draws the CPU's masks), the losses of ten RAdam steps, and generation in RNN
// mode equal to the parallel form on the device.
#include <cmath>
#include <string>
#include <vector>

#include "device_models.h"
#include "kernel_devices.h"
#include "polyak/models/transformer.h"
#include "polyak/nn/kinds.h"
#include "polyak/ops/nn_ops.h"
#include "polyak/ops/reduce.h"
#include "polyak/ops/shape_ops.h"
#include "polyak/optim/clip.h"
#include "polyak/optim/radam.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

Tensor loss_of(TransformerLM& model, const Tensor& tokens, const Tensor& targets) {
  const Tensor logits = model.forward(tokens);
  return cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}));
}

}  // namespace

TEST_CASE("device models: every kind's logits, loss and gradients match the CPU") {
  for (const Device dev : kernel_devices()) {
    for (const std::string& kind : model_kinds()) {
      INFO(kind << " on " << dev);
      const TransformerConfig c = device_model(kind);
      TransformerLM on_cpu(c), on_dev(c);
      on_dev.to(dev);
      const Tensor tokens = token_pattern(2, 12, c.vocab, 1);
      const Tensor targets = token_pattern(2, 12, c.vocab, 3);
      check_close(on_dev.forward(tokens.to(dev)), on_cpu.forward(tokens).detach(), 1e-4, 256,
                  kind + " logits");
      const Tensor l_cpu = loss_of(on_cpu, tokens, targets);
      const Tensor l_dev = loss_of(on_dev, tokens.to(dev), targets.to(dev));
      REQUIRE(l_dev.device() == dev);
      check_close(l_dev, l_cpu.detach(), 1e-5, 64, kind + " loss");
      l_cpu.backward();
      l_dev.backward();
      const NamedTensors p_cpu = on_cpu.named_parameters(), p_dev = on_dev.named_parameters();
      REQUIRE(p_cpu.size() == p_dev.size());
      for (size_t i = 0; i < p_cpu.size(); ++i) {
        REQUIRE(p_dev[i].second.grad().defined());
        check_close(p_dev[i].second.grad(), p_cpu[i].second.grad(), 1e-4, 1024,
                    kind + " gradient of " + p_cpu[i].first);
      }
    }
  }
}

TEST_CASE("device models: ten RAdam steps follow the CPU's losses") {
  for (const Device dev : kernel_devices()) {
    for (const std::string& kind : model_kinds()) {
      INFO(kind << " on " << dev);
      const TransformerConfig c = device_model(kind);
      TransformerLM on_cpu(c), on_dev(c);
      on_dev.to(dev);
      RAdam opt_cpu(on_cpu.parameters(), {.lr = 3e-3}), opt_dev(on_dev.parameters(), {.lr = 3e-3});
      std::vector<double> losses_cpu, losses_dev;
      for (int64_t s = 0; s < 10; ++s) {
        const Tensor tokens = token_pattern(2, 12, c.vocab, s);
        const Tensor targets = token_pattern(2, 12, c.vocab, s + 2);
        opt_cpu.zero_grad();
        opt_dev.zero_grad();
        const Tensor l_cpu = loss_of(on_cpu, tokens, targets);
        const Tensor l_dev = loss_of(on_dev, tokens.to(dev), targets.to(dev));
        l_cpu.backward();
        l_dev.backward();
        opt_cpu.step();
        opt_dev.step();
        losses_cpu.push_back(l_cpu.item());
        losses_dev.push_back(l_dev.cpu().item());
      }
      for (size_t s = 0; s < losses_cpu.size(); ++s) {
        INFO("step " << s);
        CHECK(losses_dev[s] == doctest::Approx(losses_cpu[s]).epsilon(2e-4));
      }
      CHECK(losses_cpu.back() < losses_cpu.front());
    }
  }
}

TEST_CASE("device models: generation in RNN mode equals the parallel form on the device") {
  for (const Device dev : kernel_devices()) {
    for (const std::string& kind : model_kinds()) {
      TransformerConfig c = device_model(kind);
      if (!c.causal) continue;
      INFO(kind << " on " << dev);
      c.dropout = 0;
      TransformerLM model(c);
      model.to(dev);
      model.eval();
      const Tensor tokens = token_pattern(2, 10, c.vocab, 4).to(dev);
      const Tensor parallel = model.forward(tokens);
      ModelState state = model.initial_state(2);
      std::vector<Tensor> rows;
      for (int64_t t = 0; t < 10; ++t) {
        const Tensor logits = model.step(slice(tokens, 1, t, t + 1).reshape({2}), state);
        REQUIRE(logits.device() == dev);
        rows.push_back(logits.reshape({2, 1, c.vocab}));
      }
      check_close(concat(rows, 1), parallel.detach().cpu(), 1e-4, 256, kind + " steps");
    }
  }
}

TEST_CASE("device models: a training step reads nothing back to the host") {
  const Device dev = fake_device();
  for (const std::string& kind : model_kinds()) {
    INFO(kind);
    const TransformerConfig c = device_model(kind);
    TransformerLM model(c);
    model.to(dev);
    std::vector<Tensor> params = model.parameters();
    RAdam opt(params, {.lr = 1e-3, .weight_decay = 0.01});
    const Tensor tokens = token_pattern(2, 12, c.vocab, 1).to(dev);
    const Tensor targets = token_pattern(2, 12, c.vocab, 2).to(dev);
    const Tensor mask = Tensor::ones({2, 12}).to(dev);
    std::vector<Tensor> losses;
    for (int64_t s = 0; s < 3; ++s) {
      fake::calls().erase("to_host");
      fake::calls().erase("from_host");
      opt.zero_grad();
      const Tensor logits = model.forward(tokens);
      const Tensor loss = cross_entropy(logits, targets, mask);
      loss.backward();
      // Nothing comes from the host either (a copy from pageable memory could not be
      // captured in a CUDA graph): the heads' decays travel inside the kernels' arguments.
      CHECK(fake::calls()["from_host"] == 0);
      (void)clip_grad_norm_per_parameter_tensor(params, 1.0);
      opt.step();
      losses.push_back(loss.detach());
      (void)argmax(logits.detach(), 2);
      CHECK(fake::calls()["to_host"] == 0);
    }
    CHECK(std::isfinite(losses.back().cpu().item()));
    CHECK(fake::calls()["to_host"] == 1);  // the read just above is seen
  }
}

TEST_CASE("device models: gradient inspection gives the CPU's norms") {
  const Device dev = fake_device();
  for (const std::string kind : {"momentum", "softmax"}) {
    INFO(kind);
    const TransformerConfig c = device_model(kind, 0);
    TransformerLM on_cpu(c), on_dev(c);
    on_dev.to(dev);
    const Tensor tokens = token_pattern(2, 12, c.vocab, 1);
    const Tensor targets = token_pattern(2, 12, c.vocab, 3);
    for (TransformerLM* m : {&on_cpu, &on_dev}) (*m->layers)[0]->attention->inspect_gradients(true);
    loss_of(on_cpu, tokens, targets).backward();
    loss_of(on_dev, tokens.to(dev), targets.to(dev)).backward();
    const AttentionGradNorms& n_cpu = (*on_cpu.layers)[0]->attention->gradient_norms();
    const AttentionGradNorms& n_dev = (*on_dev.layers)[0]->attention->gradient_norms();
    CHECK(n_cpu.q > 0);
    CHECK(n_dev.backwards == n_cpu.backwards);
    CHECK(n_dev.q == doctest::Approx(n_cpu.q).epsilon(1e-4));
    CHECK(n_dev.k == doctest::Approx(n_cpu.k).epsilon(1e-4));
    CHECK(n_dev.v == doctest::Approx(n_cpu.v).epsilon(1e-4));
    CHECK(n_dev.out == doctest::Approx(n_cpu.out).epsilon(1e-4));
  }
}
