// Parameter initialisers (in place, outside autograd) and generator forking.
//
// Every module that needs randomness takes a Generator& at construction and draws from it
// in construction order, so a model is a pure function of its config and seed.
#pragma once

#include "polyak/core/rng.h"
#include "polyak/core/tensor.h"

namespace polyak {

// Fills `t` (CPU) with U(lo, hi).
void uniform_(Tensor& t, double lo, double hi, Generator& gen);
// Fills `t` (CPU) with N(mean, stddev²).
void normal_(Tensor& t, double mean, double stddev, Generator& gen);
// A new, independent stream seeded from one draw of `parent` (advances it by one block):
// how a module gets its own dropout stream.
Generator fork(Generator& parent);

}  // namespace polyak
