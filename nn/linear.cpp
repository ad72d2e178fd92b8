#include "polyak/nn/linear.h"

#include <cmath>

#include "polyak/nn/init.h"
#include "polyak/ops/matmul.h"

namespace polyak {

Linear::Linear(int64_t in_features, int64_t out_features, Generator& gen, bool with_bias) {
  POLYAK_CHECK(in_features > 0 && out_features > 0, "Linear: in_features = ", in_features,
               ", out_features = ", out_features, ", expected both positive");
  double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight = Tensor::empty({out_features, in_features});
  uniform_(weight, -bound, bound, gen);
  register_parameter("weight", weight);
  if (with_bias) {
    bias = Tensor::empty({out_features});
    uniform_(bias, -bound, bound, gen);
    register_parameter("bias", bias);
  }
}

Tensor Linear::forward(const Tensor& x) const {
  return linear(x, weight, bias);
}

}  // namespace polyak
