#include "polyak/nn/dropout.h"

#include "polyak/nn/init.h"
#include "polyak/ops/nn_ops.h"

namespace polyak {

Dropout::Dropout(double p_, Generator& gen) : p(p_), generator(fork(gen)) {
  POLYAK_CHECK(p >= 0.0 && p < 1.0, "Dropout: p = ", p, ", expected in [0, 1)");
  register_generator("generator", generator);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p == 0.0) return x;
  return dropout(x, p, true, generator);
}

Tensor Dropout::forward_add(const Tensor& x, const Tensor& residual) {
  return dropout_add(x, residual, p, is_training(), generator);
}

}  // namespace polyak
