// Input builders and comparisons shared by the attention suites.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "testing.h"

namespace polyak::testing {

// A leaf with values in [0.1, 1.1): positive features keep linear attention's denominators
// away from 0, as φ(x) = elu(x) + 1 does.
inline Tensor positive_leaf(const Shape& shape, Generator& gen, DType dtype = DType::f64) {
  std::vector<double> values = Tensor::rand(shape, gen, DType::f64).to_vector();
  for (double& x : values) x += 0.1;
  return Tensor::from(values, shape, dtype).requires_grad_();
}

inline Tensor normal_leaf(const Shape& shape, Generator& gen, DType dtype = DType::f64) {
  return Tensor::from(Tensor::randn(shape, gen, DType::f64).to_vector(), shape, dtype)
      .requires_grad_();
}

// max |a − b| / max(1, max |b|): an absolute error for values of order one, relative for
// large ones (the unnormalised causal dot product grows with N).
inline double scaled_error(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double err = 0, mag = 1;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(a[i] - b[i]));
    mag = std::max(mag, std::abs(b[i]));
  }
  return err / mag;
}

// max |a − b| / max |b| (0 when both vanish).
inline double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double err = 0, mag = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(a[i] - b[i]));
    mag = std::max(mag, std::abs(b[i]));
  }
  return mag > 0 ? err / mag : err;
}

// Row i along axis 2 of x [B,H,N,W] as a new tensor [B,H,W] (a recurrent step's input).
inline Tensor position(const Tensor& x, int64_t i) {
  const Shape& s = x.shape();
  const int64_t BH = s[0] * s[1], N = s[2], W = s[3];
  const std::vector<double> all = x.to_vector();
  std::vector<double> row(static_cast<size_t>(BH * W));
  for (int64_t h = 0; h < BH; ++h)
    for (int64_t c = 0; c < W; ++c)
      row[static_cast<size_t>(h * W + c)] = all[static_cast<size_t>((h * N + i) * W + c)];
  return Tensor::from(row, {s[0], s[1], W}, x.dtype());
}

// The same values in `dtype`, a fresh leaf requiring grad.
inline Tensor as_leaf(const Tensor& x, DType dtype) {
  return Tensor::from(x.to_vector(), x.shape(), dtype).requires_grad_();
}

}  // namespace polyak::testing
