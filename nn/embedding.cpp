#include "polyak/nn/embedding.h"

#include "polyak/nn/init.h"
#include "polyak/ops/nn_ops.h"

namespace polyak {

Embedding::Embedding(int64_t num, int64_t dim, Generator& gen, double stddev) {
  POLYAK_CHECK(num > 0 && dim > 0, "Embedding: num = ", num, ", dim = ", dim,
               ", expected both positive");
  weight = Tensor::empty({num, dim});
  normal_(weight, 0.0, stddev, gen);
  register_parameter("weight", weight);
}

Tensor Embedding::forward(const Tensor& ids) const {
  return embedding(weight, ids);
}

}  // namespace polyak
