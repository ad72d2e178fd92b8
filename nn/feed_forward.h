// Position-wise feed-forward block: Linear d→ff, activation, dropout, Linear ff→d, dropout.
//
// The output dropout lives here (not in the layer) so that the block's output is what the
// residual adds, as the attention module's output is.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "polyak/core/rng.h"
#include "polyak/nn/dropout.h"
#include "polyak/nn/linear.h"
#include "polyak/nn/module.h"

namespace polyak {

// "relu" | "gelu" (exact, x·Φ(x)).
const std::vector<std::string>& activation_kinds();
// Applies the activation named `kind` (one of activation_kinds()).
Tensor activate(const std::string& kind, const Tensor& x);

class FeedForward : public Module {
 public:
  FeedForward(int64_t dim, int64_t hidden, const std::string& activation, double dropout_p,
              Generator& gen);

  // x [..., dim] → [..., dim].
  Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }
  // residual + forward(x), the closing dropout and the sum in one pass.
  Tensor forward_residual(const Tensor& residual, const Tensor& x);

  std::shared_ptr<Linear> linear1;  // dim → hidden
  std::shared_ptr<Linear> linear2;  // hidden → dim
  std::shared_ptr<Dropout> dropout;
  std::string activation;

 private:
  Tensor sublayer(const Tensor& x);  // the block before its closing dropout
  bool relu_;                        // activation == "relu" (else gelu), decided once
};

}  // namespace polyak
