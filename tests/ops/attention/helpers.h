// Input builders and comparisons shared by the attention suites.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
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

// Two ops meant to compute one function of q, k, v, each called on fresh leaves holding the
// values of q, k, v: their outputs, and the gradients of each input for the cotangent dy,
// agree within tol.
using QkvOp = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;
inline void check_same_function(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dy,
                                const QkvOp& op, const QkvOp& reference, double tol) {
  Tensor qa = as_leaf(q, q.dtype()), ka = as_leaf(k, k.dtype()), va = as_leaf(v, v.dtype());
  Tensor qb = as_leaf(q, q.dtype()), kb = as_leaf(k, k.dtype()), vb = as_leaf(v, v.dtype());
  Tensor y = op(qa, ka, va), y_ref = reference(qb, kb, vb);
  CHECK(max_abs_diff(y, y_ref) <= tol);
  y.backward(dy);
  y_ref.backward(dy);
  CHECK(max_abs_diff(qa.grad(), qb.grad()) <= tol);
  CHECK(max_abs_diff(ka.grad(), kb.grad()) <= tol);
  CHECK(max_abs_diff(va.grad(), vb.grad()) <= tol);
}

// `op` in f32 against f64 on the values of q, k, v and the cotangent dy (f64): the output
// and each input's gradient agree within tol, relative to the largest f64 value.
inline void check_f32_against_f64(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& dy, const QkvOp& op, double tol) {
  Tensor q64 = as_leaf(q, DType::f64), k64 = as_leaf(k, DType::f64), v64 = as_leaf(v, DType::f64);
  Tensor q32 = as_leaf(q, DType::f32), k32 = as_leaf(k, DType::f32), v32 = as_leaf(v, DType::f32);
  Tensor y64 = op(q64, k64, v64), y32 = op(q32, k32, v32);
  CHECK(y32.dtype() == DType::f32);
  y64.backward(dy.to(DType::f64));
  y32.backward(dy.to(DType::f32));
  CHECK(relative_error(y32.to_vector(), y64.to_vector()) <= tol);
  CHECK(relative_error(q32.grad().to_vector(), q64.grad().to_vector()) <= tol);
  CHECK(relative_error(k32.grad().to_vector(), k64.grad().to_vector()) <= tol);
  CHECK(relative_error(v32.grad().to_vector(), v64.grad().to_vector()) <= tol);
}

}  // namespace polyak::testing
