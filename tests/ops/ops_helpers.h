// Input builders and reference helpers for the op suites.
#pragma once

#include <cmath>
#include <functional>
#include <vector>

#include "testing.h"

namespace polyak::testing {

// A leaf of `shape` in f64 whose values are f(z), z standard normal: keeps gradcheck
// inputs in a function's domain and away from its kinks.
inline Tensor shaped_input(const Shape& shape, Generator& gen,
                           const std::function<double(double)>& f) {
  std::vector<double> v = Tensor::randn(shape, gen, DType::f64).to_vector();
  for (double& x : v) x = f(x);
  return Tensor::from(v, shape, DType::f64).requires_grad_();
}

inline double positive(double z) {
  return 0.5 + std::abs(z);
}
// At least 0.1 away from 0.
inline double off_zero(double z) {
  return z >= 0 ? z + 0.1 : z - 0.1;
}

// Distinct values at least 0.05 apart (keeps max off ties): a shuffled ramp.
inline Tensor distinct_input(const Shape& shape, Generator& gen) {
  const int64_t n = shape.numel();
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = 0.1 * static_cast<double>(i) - 1.0;
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(v[static_cast<size_t>(i)], v[gen.integer(static_cast<uint64_t>(i + 1))]);
  return Tensor::from(v, shape, DType::f64).requires_grad_();
}

inline void check_values(const Tensor& t, const std::vector<double>& expected, double tol = 1e-12) {
  std::vector<double> v = t.to_vector();
  REQUIRE(v.size() == expected.size());
  for (size_t i = 0; i < v.size(); ++i) {
    INFO("element " << i);
    CHECK(v[i] == doctest::Approx(expected[i]).epsilon(tol).scale(1.0));
  }
}

}  // namespace polyak::testing
