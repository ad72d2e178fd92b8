// The state behind a Tensor handle. Internal to core/.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "polyak/core/tensor.h"

namespace polyak {

// Allocated only for tensors that take part in autograd.
struct AutogradMeta {
  bool requires_grad = false;
  bool retains_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;         // producer (non-leaves)
  std::weak_ptr<Node> grad_accumulator;  // sink (leaves); owned by the graph
  std::vector<GradHook> hooks;           // leaf hooks (non-leaves use grad_fn's)
  std::string name;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  std::unique_ptr<AutogradMeta> autograd;

  AutogradMeta& meta() {
    if (!autograd) autograd = std::make_unique<AutogradMeta>();
    return *autograd;
  }
};

}  // namespace polyak
