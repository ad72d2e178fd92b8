// The engine: one topological pass over the graph that produced the roots.
//
//   1. collect the nodes reachable from the roots and count, for each, how many edges
//      point at it (its consumers);
//   2. seed the roots' gradients; run a node once every consumer has contributed its
//      gradient (gradients reaching one node are summed in its buffer);
//   3. a node turns its output gradient into one gradient per input and hands each to the
//      producing node (or to the leaf's AccumulateGrad sink);
//   4. unless retain_graph, release every node's saved tensors.
#include "polyak/core/autograd.h"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <queue>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "polyak/core/backend.h"
#include "polyak/core/files.h"
#include "polyak/core/tensor_impl.h"
#include "polyak/core/threads.h"

namespace polyak {
namespace {
std::atomic<uint64_t> g_next_sequence_nr{0};
}  // namespace

Node::Node(std::string name) : sequence_nr(g_next_sequence_nr++), name_(std::move(name)) {}

FunctionNode::FunctionNode(std::string name, Backward backward)
    : Node(std::move(name)), backward_(std::move(backward)) {}

std::vector<Tensor> FunctionNode::apply(const Tensor& grad_output) {
  POLYAK_CHECK(backward_, "backward: the saved tensors of ", name(),
               " were already freed by an earlier backward, expected backward(grad, "
               "retain_graph=true) on the first call to backpropagate through the graph twice");
  return backward_(grad_output);
}

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> leaf)
    : Node("AccumulateGrad"), leaf_(std::move(leaf)) {}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad_output) {
  Tensor g = grad_output;
  AutogradMeta& meta = leaf_->meta();
  for (const GradHook& hook : meta.hooks) {
    Tensor replaced = hook(g);
    if (replaced.defined()) g = replaced;
  }
  // The first gradient is copied so that later in-place accumulation cannot alias a
  // tensor the graph handed out.
  meta.grad = meta.grad.defined() ? sum_gradients(meta.grad, g) : g.detach().clone();
  return {};
}

Tensor sum_gradients(const Tensor& a, const Tensor& b) {
  POLYAK_CHECK(a.shape() == b.shape(), "backward: gradients of shapes ", a.shape(), " and ",
               b.shape(), " reach one tensor, expected equal shapes");
  check_same_dtype("backward", "gradient", a, "gradient", b);
  check_same_device("backward", "gradient", a, "gradient", b);
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (!a.device().is_cpu()) {
    device_kernels("backward", "gradient", a).binary(BinaryOp::add, a, b, out);
    return out;
  }
  dispatch(a.dtype(), [&]<class T>() {
    const T* x = a.data<T>();
    const T* y = b.data<T>();
    T* z = out.data<T>();
    parallel_for(a.numel(), 1, [=](int64_t begin, int64_t end) {
      const T* __restrict px = x;
      const T* __restrict py = y;
      T* __restrict pz = z;
      for (int64_t i = begin; i < end; ++i) pz[i] = px[i] + py[i];
    });
  });
  return out;
}

namespace {

// True when `t` is the only handle on its elements (no other tensor, view or hook shares
// them), so that the engine may add into it.
bool sole_handle(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.impl()->storage.use_count() == 1;
}

// slot ← slot + g for the gradient buffer of one node. On the CPU the sum goes into
// whichever side is the sole handle on its elements, saving a fresh buffer and the memory
// traffic of writing one; otherwise (or when neither is) into a new tensor.
void accumulate(Tensor& slot, Tensor g) {
  if (!slot.defined()) {
    slot = std::move(g);
    return;
  }
  if (!slot.device().is_cpu() || slot.shape() != g.shape() || slot.dtype() != g.dtype() ||
      slot.device() != g.device() || !(sole_handle(slot) || sole_handle(g))) {
    slot = sum_gradients(slot, g);
    return;
  }
  if (!sole_handle(slot)) std::swap(slot, g);
  dispatch(slot.dtype(), [&]<class T>() {
    T* x = slot.data<T>();
    const T* y = g.data<T>();
    parallel_for(slot.numel(), 1, [=](int64_t begin, int64_t end) {
      T* __restrict px = x;
      const T* __restrict py = y;
      for (int64_t i = begin; i < end; ++i) px[i] += py[i];
    });
  });
}

}  // namespace

bool any_requires_grad(std::initializer_list<Tensor> inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

namespace {
std::shared_ptr<Node> edge_of(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  return t.is_leaf() ? t.grad_accumulator() : t.grad_fn();
}
}  // namespace

void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs,
            FunctionNode::Backward backward) {
  if (!any_requires_grad(inputs)) return;
  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next.push_back(edge_of(t));
  out.set_grad_fn(std::move(node));
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph) {
  POLYAK_CHECK(roots.size() == grads.size(), "backward: ", roots.size(), " roots and ",
               grads.size(), " gradients, expected one gradient per root");
  std::unordered_map<Node*, Tensor> buffer;
  std::vector<std::shared_ptr<Node>> root_nodes;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& root = roots[i];
    check_defined("backward", "tensor", root);
    POLYAK_CHECK(root.requires_grad(), "backward: the tensor of shape ", root.shape(),
                 " does not require grad, expected the output of ops on tensors with "
                 "requires_grad (and grad mode enabled)");
    Tensor g = grads[i];
    if (!g.defined()) {
      POLYAK_CHECK(root.numel() == 1, "backward: the tensor has shape ", root.shape(),
                   ", expected a single element when no gradient is given (pass a gradient "
                   "of the tensor's shape)");
      g = Tensor::ones(root.shape(), root.dtype(), root.device());
    } else {
      POLYAK_CHECK(g.shape() == root.shape(), "backward: grad has shape ", g.shape(),
                   ", expected the tensor's shape ", root.shape());
      check_same_dtype("backward", "tensor", root, "grad", g);
      check_same_device("backward", "tensor", root, "grad", g);
    }
    std::shared_ptr<Node> node = root.is_leaf() ? root.grad_accumulator() : root.grad_fn();
    Tensor& slot = buffer[node.get()];
    slot = slot.defined() ? sum_gradients(slot, g) : g;
    root_nodes.push_back(node);
  }

  // 1. reachable nodes and their consumer counts
  std::unordered_map<Node*, int> consumers;
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  for (auto& n : root_nodes)
    if (seen.insert(n.get()).second) stack.push_back(n.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& next : n->next) {
      if (!next) continue;
      ++consumers[next.get()];
      if (seen.insert(next.get()).second) stack.push_back(next.get());
    }
  }

  // 2–3. run nodes in dependency order; later-created nodes first among the ready ones
  auto later_first = [](Node* a, Node* b) { return a->sequence_nr < b->sequence_nr; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(later_first)> ready(later_first);
  for (auto& n : root_nodes)
    if (consumers[n.get()] == 0) ready.push(n.get());
  std::unordered_set<Node*> queued;
  {
    NoGradGuard no_grad;
    while (!ready.empty()) {
      Node* node = ready.top();
      ready.pop();
      if (!queued.insert(node).second) continue;
      Tensor grad = std::move(buffer[node]);
      buffer.erase(node);
      std::vector<Tensor> input_grads;
      if (grad.defined()) {
        for (const GradHook& hook : node->pre_hooks) {
          Tensor replaced = hook(grad);
          if (replaced.defined()) {
            POLYAK_CHECK(replaced.shape() == grad.shape(), "backward: a hook on the output of ",
                         node->name(), " returned shape ", replaced.shape(), ", expected ",
                         grad.shape());
            grad = replaced;
          }
        }
        if (node->retain_grad_hook) node->retain_grad_hook(grad);
        input_grads = node->apply(grad);
      }
      for (size_t i = 0; i < node->next.size(); ++i) {
        Node* next = node->next[i].get();
        if (!next) continue;
        if (i < input_grads.size() && input_grads[i].defined())
          accumulate(buffer[next], std::move(input_grads[i]));
        if (--consumers[next] == 0) ready.push(next);
      }
    }
  }

  // 4. free saved tensors
  if (!retain_graph)
    for (Node* n : seen) n->release();
}

// ---- DOT export --------------------------------------------------------------------------

std::string export_dot(const Tensor& root) {
  check_defined("export_dot", "root", root);
  std::ostringstream os;
  os << "digraph polyak {\n  rankdir=BT;\n  node [shape=box, fontname=\"monospace\"];\n";
  std::unordered_map<const Node*, int> ids;
  std::vector<const Node*> stack;
  auto id_of = [&](const Node* n) {
    auto [it, inserted] = ids.emplace(n, static_cast<int>(ids.size()));
    if (inserted) stack.push_back(n);
    return it->second;
  };
  os << "  out [label=\"output " << root.shape() << "\", shape=ellipse];\n";
  if (root.grad_fn()) os << "  n" << id_of(root.grad_fn().get()) << " -> out;\n";
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    std::string label = n->name();
    if (auto* acc = dynamic_cast<const AccumulateGrad*>(n)) {
      Tensor leaf = acc->leaf();
      label = (leaf.name().empty() ? std::string("leaf") : leaf.name()) + " " + leaf.shape().str();
      os << "  n" << ids[n] << " [label=\"" << label << "\", style=filled, fillcolor=lightblue];\n";
    } else {
      os << "  n" << ids[n] << " [label=\"" << label << "\"];\n";
    }
    for (const auto& next : n->next)
      if (next) os << "  n" << id_of(next.get()) << " -> n" << ids[n] << ";\n";
  }
  os << "}\n";
  return os.str();
}

void write_dot(const Tensor& root, const std::string& path) {
  write_text_file_atomically(path, export_dot(root), "write_dot");
}

}  // namespace polyak
