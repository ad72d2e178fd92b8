// Position encodings added to the token embeddings x [B, N, d].
//
// `offset` is the position of x's first row, so that recurrent generation can add the
// encoding of step t to a single-position input: forward(x_t [B,1,d], t).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "polyak/core/rng.h"
#include "polyak/nn/module.h"

namespace polyak {

class Positions : public Module {
 public:
  // x [B, N, dim] → x + P[offset : offset + N].
  virtual Tensor forward(const Tensor& x, int64_t offset = 0) = 0;
  Tensor operator()(const Tensor& x, int64_t offset = 0) { return forward(x, offset); }
};

// Fixed sin/cos encodings (Vaswani et al. 2017): P[t, 2i] = sin(t / 10000^(2i/d)),
// P[t, 2i+1] = cos(t / 10000^(2i/d)). The table is a non-persistent buffer (a function of
// the shape, so not saved); it is built for max_len positions and extended on demand, so
// sinusoidal positions have no length limit.
class SinusoidalPositions : public Positions {
 public:
  SinusoidalPositions(int64_t max_len, int64_t dim);
  Tensor forward(const Tensor& x, int64_t offset = 0) override;

  Tensor table;  // [len, dim]

 private:
  int64_t dim_;
};

// A trained table [max_len, dim] drawn from N(0, stddev²); positions ≥ max_len are an error.
class LearnedPositions : public Positions {
 public:
  LearnedPositions(int64_t max_len, int64_t dim, Generator& gen, double stddev = 0.02);
  Tensor forward(const Tensor& x, int64_t offset = 0) override;

  Tensor weight;  // [max_len, dim]
};

// The sin/cos table for positions [0, len) as f64 [len, dim].
Tensor sinusoidal_table(int64_t len, int64_t dim);

// "sinusoidal" | "learned".
const std::vector<std::string>& positions_kinds();
std::shared_ptr<Positions> make_positions(const std::string& kind, int64_t max_len, int64_t dim,
                                          Generator& gen);

}  // namespace polyak
