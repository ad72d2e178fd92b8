// Device graphs (core/graph.h): a captured step replayed equals the eager steps — bit for bit
// on the fake device, whose capture records the launches with their frozen arguments and
// raw pointers as CUDA's does — for the elementwise core, the dropout streams, the
// optimizers' per-step arguments and whole training steps of every model kind; the graph's
// memory pool; and the errors of what a capture cannot hold.
#include <cmath>
#include <string>
#include <vector>

#include "device_models.h"
#include "kernel_devices.h"
#include "polyak/core/graph.h"
#include "polyak/core/rng.h"
#include "polyak/core/storage.h"
#include "polyak/models/transformer.h"
#include "polyak/nn/kinds.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/nn_ops.h"
#include "polyak/ops/reduce.h"
#include "polyak/optim/adam.h"
#include "polyak/optim/clip.h"
#include "polyak/optim/radam.h"
#include "polyak/optim/sgd.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

// Exactly equal on the fake device (the same bodies in the same order); within f32
// rounding on a GPU, where nothing promises the same reduction order.
void check_same(const Tensor& graph, const Tensor& eager, const std::string& what) {
  if (graph.device().type == DeviceType::ext) {
    INFO(what);
    CHECK(graph.cpu().to_vector() == eager.cpu().to_vector());
  } else {
    check_close(graph, eager.cpu(), 1e-6, 64, what);
  }
}

}  // namespace

TEST_CASE("graphs: a replay recomputes from the input buffers it was captured with") {
  for (const Device dev : kernel_devices()) {
    INFO(dev);
    Tensor x = Tensor::from(std::vector<double>{0.5, -1.0, 2.0, 0.25}, {4}).to(dev);
    Tensor y;
    DeviceGraph g = DeviceGraph::capture(dev, [&] { y = add(mul(exp(x), 2.0), x); });
    CHECK(!is_capturing(dev));
    g.replay();
    check_close(y, add(mul(exp(x.cpu()), 2.0), x.cpu()), 0, 4, "first replay");
    x.copy_(Tensor::from(std::vector<double>{3.0, 0.0, -2.0, 1.0}, {4}));
    g.replay();
    check_close(y,
                Tensor::from(std::vector<double>{2 * std::exp(3.0) + 3, 2.0, 2 * std::exp(-2.0) - 2,
                                                 2 * std::exp(1.0) + 1},
                             {4}),
                0, 4, "after writing the input");
    CHECK(g.replays() == 2);
    CHECK(g.replay_value_bytes() == 0);
  }
}

TEST_CASE("graphs: the graph's pool keeps its blocks while the graph lives") {
  const Device dev = fake_device();
  const Shape odd{12347};  // a size no other test allocates: its bucket starts empty
  void* first = nullptr;
  void* second = nullptr;
  DeviceGraph g = DeviceGraph::capture(dev, [&] {
    {
      Tensor a = Tensor::empty(odd, DType::f32, dev);
      first = a.raw_data();
    }
    Tensor b = Tensor::empty(odd, DType::f32, dev);  // freed inside the capture: reused
    second = b.raw_data();
  });
  CHECK(second == first);
  {
    // Outside the capture the block is the graph's, not the cache's.
    const Tensor c = Tensor::empty(odd, DType::f32, dev);
    CHECK(c.raw_data() != first);
  }
  // Released: the pool's free blocks go back to the device (freeing allocates nothing, so
  // a released pool's blocks are not moved into the shared cache's buckets).
  const size_t cached = allocator_stats(dev).cached_bytes;
  g = DeviceGraph();
  CHECK(allocator_stats(dev).cached_bytes + static_cast<size_t>(odd.numel()) * sizeof(float) <=
        cached);
}

TEST_CASE("graphs: dropout draws the eager run's masks at every replay") {
  for (const Device dev : kernel_devices()) {
    INFO(dev);
    const Tensor x = Tensor::ones({3, 37}).to(dev);
    Generator eager_gen(11), graph_gen(11);
    (void)eager_gen.advance(5);
    (void)graph_gen.advance(5);
    std::vector<Tensor> eager;
    for (int step = 0; step < 3; ++step) {
      const Tensor h = dropout(x, 0.3, true, eager_gen);
      eager.push_back(relu_dropout(h, 0.5, true, eager_gen));
    }
    Tensor y;
    DeviceGraph g = DeviceGraph::capture(
        dev, [&] { y = relu_dropout(dropout(x, 0.3, true, graph_gen), 0.5, true, graph_gen); });
    CHECK(graph_gen.offset() == 5);  // the capture drew nothing
    for (int step = 0; step < 3; ++step) {
      g.replay();
      check_same(y, eager[static_cast<size_t>(step)], "step " + std::to_string(step));
    }
    CHECK(graph_gen.offset() == eager_gen.offset());
    CHECK(g.replay_value_bytes() == 16);  // one generator: one offset (aligned to 16 bytes)
  }
}

TEST_CASE("graphs: the optimizers' step counts, corrections and learning rate move per replay") {
  for (const Device dev : kernel_devices()) {
    for (const std::string name : {"RAdam", "Adam", "SGD"}) {
      INFO(dev << " " << name);
      auto make = [&](std::vector<Tensor> params) -> std::unique_ptr<Optimizer> {
        if (name == "RAdam") return std::make_unique<RAdam>(params, RAdam::Options{.lr = 0.1});
        if (name == "Adam")
          return std::make_unique<Adam>(params, Adam::Options{.lr = 0.1, .weight_decay = 0.01});
        return std::make_unique<SGD>(params, SGD::Options{.lr = 0.1, .momentum = 0.9});
      };
      const Tensor start = Tensor::from(std::vector<double>{0.3, -0.7, 1.1, 0.05, -0.4}, {5});
      const Tensor scale = Tensor::from(std::vector<double>{1.0, 2.0, 0.5, 3.0, 1.5}, {5}).to(dev);
      Tensor p_eager = start.to(dev).requires_grad_(), p_graph = start.to(dev).requires_grad_();
      auto opt_eager = make({p_eager});
      auto opt_graph = make({p_graph});
      auto step = [&](Tensor& p, Optimizer& opt) {
        opt.zero_grad();
        sum(square(mul(p, scale))).backward();
        opt.step();
      };
      const std::vector<double> lrs = {0.1, 0.08, 0.05, 0.05, 0.02, 0.01, 0.01, 0.005};
      for (double lr : lrs) {
        opt_eager->set_lr(lr);
        step(p_eager, *opt_eager);
      }
      // The first step eager (state allocated), then one capture and a replay per step.
      opt_graph->set_lr(lrs[0]);
      step(p_graph, *opt_graph);
      DeviceGraph g = DeviceGraph::capture(dev, [&] { step(p_graph, *opt_graph); });
      CHECK(opt_graph->step_count() == 1);  // the capture ran nothing
      for (size_t k = 1; k < lrs.size(); ++k) {
        opt_graph->set_lr(lrs[k]);
        g.replay();
      }
      CHECK(opt_graph->step_count() == opt_eager->step_count());
      CHECK(opt_graph->parameter_step(0) == static_cast<int64_t>(lrs.size()));
      check_same(p_graph.detach(), p_eager.detach(), "parameters");
    }
  }
}

TEST_CASE("graphs: every kind's training step replayed equals the eager steps") {
  for (const Device dev : kernel_devices()) {
    for (const std::string& kind : model_kinds()) {
      INFO(dev << " " << kind);
      TransformerConfig c = device_model(kind);
      if (kind == "performer") c.attention_params.set("redraw", int64_t{2});  // redraws in place
      TransformerLM eager(c), graphed(c);
      eager.to(dev);
      graphed.to(dev);
      std::vector<Tensor> eager_params = eager.parameters(), graph_params = graphed.parameters();
      RAdam opt_eager(eager_params, {.lr = 3e-3, .weight_decay = 0.01});
      RAdam opt_graph(graph_params, {.lr = 3e-3, .weight_decay = 0.01});
      // Fixed input buffers, written before each step.
      Tensor tokens = token_pattern(2, 12, c.vocab, 0).to(dev);
      Tensor targets = token_pattern(2, 12, c.vocab, 1).to(dev);
      const Tensor mask = Tensor::ones({2, 12}).to(dev);
      auto step = [&](TransformerLM& m, RAdam& opt, std::vector<Tensor>& params) {
        opt.zero_grad();
        const Tensor loss = cross_entropy(m.forward(tokens), targets, mask);
        loss.backward();
        (void)clip_grad_norm_per_parameter_tensor(params, 0.5);
        opt.step();
        return loss.detach();
      };
      auto feed = [&](int64_t s) {
        tokens.copy_(token_pattern(2, 12, c.vocab, s));
        targets.copy_(token_pattern(2, 12, c.vocab, s + 1));
      };
      const int64_t steps = 6;
      std::vector<Tensor> eager_losses;
      for (int64_t s = 0; s < steps; ++s) {
        feed(s);
        opt_eager.set_lr(3e-3 / static_cast<double>(s + 1));
        eager_losses.push_back(step(eager, opt_eager, eager_params));
      }
      feed(0);
      opt_graph.set_lr(3e-3);
      const Tensor first = step(graphed, opt_graph, graph_params);
      check_same(first, eager_losses[0], "the eager first step");
      Tensor loss;
      DeviceGraph g =
          DeviceGraph::capture(dev, [&] { loss = step(graphed, opt_graph, graph_params); });
      for (int64_t s = 1; s < steps; ++s) {
        feed(s);
        opt_graph.set_lr(3e-3 / static_cast<double>(s + 1));
        g.replay();
        check_same(loss, eager_losses[static_cast<size_t>(s)], "loss of step " + std::to_string(s));
      }
      for (size_t i = 0; i < graph_params.size(); ++i)
        check_same(graph_params[i].detach(), eager_params[i].detach(), graph_params[i].name());
      // The parameters' gradients are the replay's, in the tensors the capture left.
      for (size_t i = 0; i < graph_params.size(); ++i)
        if (graph_params[i].grad().defined())
          check_same(graph_params[i].grad(), eager_params[i].grad(),
                     "gradient of " + graph_params[i].name());
      CHECK(g.replays() == steps - 1);
    }
  }
}

TEST_CASE("graphs: what a capture cannot hold is an error that leaves the device usable") {
  const Device dev = fake_device();
  const Tensor x = Tensor::ones({4}).to(dev);
  CHECK_THROWS_WITH_AS(DeviceGraph::capture(Device::cpu(), [] {}),
                       doctest::Contains("device is cpu, expected a device"), Error);
  Generator gen(3);
  auto reads = [&] {
    (void)dropout(x, 0.5, true, gen);
    (void)sum(x).item();
  };
  CHECK_THROWS_WITH_AS(DeviceGraph::capture(dev, reads),
                       doctest::Contains("while ext:0 is capturing a graph, expected no copy "
                                         "between the host and the device inside a capture"),
                       Error);
  CHECK(!is_capturing(dev));
  CHECK(gen.offset() == 0);  // the failed capture's draw is undone
  CHECK_THROWS_WITH_AS(
      DeviceGraph::capture(dev, [&] { (void)Tensor::from(std::vector<double>{1.0}, {1}).to(dev); }),
      doctest::Contains("Tensor"), Error);
  CHECK_THROWS_WITH_AS(
      DeviceGraph::capture(dev, [&] { (void)DeviceGraph::capture(dev, [] {}); }),
      doctest::Contains("ext:0 is capturing another graph, expected one capture per device"),
      Error);
  CHECK_THROWS_WITH_AS(DeviceGraph().replay(), doctest::Contains("the graph is empty"), Error);
  CHECK_THROWS_WITH_AS((void)replay_value(dev, 8, [](void*) {}),
                       doctest::Contains("ext:0 is not capturing a graph"), Error);
  // The device still captures and replays after all that.
  Tensor y;
  DeviceGraph g = DeviceGraph::capture(dev, [&] { y = mul(x, 3.0); });
  g.replay();
  CHECK(y.cpu().to_vector() == std::vector<double>{3, 3, 3, 3});
}
