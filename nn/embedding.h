// Embedding: a lookup table of token vectors.
#pragma once

#include "polyak/core/rng.h"
#include "polyak/nn/module.h"

namespace polyak {

class Embedding : public Module {
 public:
  // weight [num, dim] drawn from N(0, stddev²) (PyTorch's default stddev = 1).
  Embedding(int64_t num, int64_t dim, Generator& gen, double stddev = 1.0);

  // ids, an integer tensor (i32 or i64) of any shape with values in [0, num) →
  // [ids.shape..., dim].
  Tensor forward(const Tensor& ids) const;
  Tensor operator()(const Tensor& ids) const { return forward(ids); }

  int64_t num() const { return weight.size(0); }
  int64_t dim() const { return weight.size(1); }

  Tensor weight;  // [num, dim]
};

}  // namespace polyak
