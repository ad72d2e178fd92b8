// Reverse-mode autograd: nodes, edges and the engine.
//
// Every op that sees an input with requires_grad (while GradMode is enabled) records one
// Node on its output. A Node knows the nodes that produced its inputs (`next`, one per
// input; null where that input needs no gradient) and turns the gradient of its output
// into one gradient per input. Leaves end in an AccumulateGrad sink.
//
// The rules, in one place:
//   - gradients that reach one tensor along several paths are summed before its node runs;
//   - leaf gradients accumulate (+=) across backward calls until zero_grad();
//   - backward formulas run under NoGradGuard (no double backward);
//   - after backward the graph's saved tensors are released unless retain_graph.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "polyak/core/tensor.h"

namespace polyak {

class Node : public std::enable_shared_from_this<Node> {
 public:
  explicit Node(std::string name);
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return name_; }
  // Gradient of the output in, one gradient per entry of `next` out (undefined = none).
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Drops saved tensors; apply() afterwards throws.
  virtual void release() {}
  virtual bool released() const { return false; }

  std::vector<std::shared_ptr<Node>> next;  // producers of the inputs (null: no grad)
  std::vector<GradHook> pre_hooks;          // run on the summed output gradient
  GradHook retain_grad_hook;                // retain_grad(): sees the gradient after hooks
  uint64_t sequence_nr;                     // creation order: later nodes run first

 private:
  std::string name_;
};

// A node whose backward is a closure written next to its forward (see ops/).
class FunctionNode final : public Node {
 public:
  using Backward = std::function<std::vector<Tensor>(const Tensor& grad_output)>;
  FunctionNode(std::string name, Backward backward);
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  void release() override { backward_ = nullptr; }
  bool released() const override { return !backward_; }

 private:
  Backward backward_;
};

// Sink of a leaf: runs the leaf's hooks, then grad += incoming.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf);
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  Tensor leaf() const { return Tensor(leaf_); }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// a + b for two gradients of one shape (CPU or CUDA); used wherever gradients are summed.
Tensor sum_gradients(const Tensor& a, const Tensor& b);

// True when an op with these inputs must record a node.
bool any_requires_grad(std::initializer_list<Tensor> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Records `backward` as the producer of `out` when any input requires grad. `backward`
// returns one gradient per input, in order, each of that input's shape (or undefined).
// The closure captures what it needs, and nothing more.
void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs,
            FunctionNode::Backward backward);

// Runs backward from `roots` with gradients `grads` (same length; undefined entries need
// a one-element root). Used by Tensor::backward.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph);

// Graphviz DOT of the graph that produced `root`: one box per node, leaves named.
std::string export_dot(const Tensor& root);
// Writes export_dot(root) to `path` atomically.
void write_dot(const Tensor& root, const std::string& path);

// ---- gradcheck -------------------------------------------------------------------------
struct GradcheckOptions {
  double eps = 1e-6;   // central-difference step
  double atol = 1e-5;  // pass when |analytic − numeric| ≤ atol + rtol·|numeric|
  double rtol = 1e-3;
  uint64_t seed = 0;  // of the random cotangent
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;
  std::string message;  // the worst element when not ok
};

// Inputs' existing gradients are dropped (gradcheck runs its own backward).
// Compares the analytic gradient of sum(fn(inputs) ⊙ c), for a random normal cotangent c,
// with central differences over every element of every input that requires grad.
// Inputs must be f64 on the CPU. Throws polyak::Error when fn's output has no gradient
// path to any input (an op without grad) or the inputs are not f64.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

}  // namespace polyak
