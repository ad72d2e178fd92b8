// Dropout: zeroes each element with probability p and scales the rest by 1/(1−p) in
// training mode; the identity in eval mode or when p = 0.
#pragma once

#include "polyak/core/rng.h"
#include "polyak/nn/module.h"

namespace polyak {

class Dropout : public Module {
 public:
  // Owns a stream forked from `gen` (always, even when p = 0, so that the draws of the
  // modules built after it do not depend on p).
  Dropout(double p, Generator& gen);

  Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }
  // residual + forward(x), in one pass when training (dropout_add: the same draws).
  Tensor forward_add(const Tensor& x, const Tensor& residual);

  double p;
  Generator generator;
};

}  // namespace polyak
