// Elementwise arithmetic with NumPy broadcasting, scalar forms, and unary functions.
#pragma once

#include "polyak/core/tensor.h"

namespace polyak {

// Broadcasting binary ops: shapes align from the right; extents equal or 1.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
// Scalar forms.
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor rsub(double a, const Tensor& b);  // a − b
Tensor rdiv(double a, const Tensor& b);  // a / b
Tensor neg(const Tensor& a);

inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator+(const Tensor& a, double b) {
  return add(a, b);
}
inline Tensor operator+(double a, const Tensor& b) {
  return add(b, a);
}
inline Tensor operator-(const Tensor& a, double b) {
  return add(a, -b);
}
inline Tensor operator-(double a, const Tensor& b) {
  return rsub(a, b);
}
inline Tensor operator*(const Tensor& a, double b) {
  return mul(a, b);
}
inline Tensor operator*(double a, const Tensor& b) {
  return mul(b, a);
}
inline Tensor operator/(const Tensor& a, double b) {
  return mul(a, 1.0 / b);
}
inline Tensor operator/(double a, const Tensor& b) {
  return rdiv(a, b);
}
inline Tensor operator-(const Tensor& a) {
  return neg(a);
}

// Unary.
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
Tensor square(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact: x·Φ(x)
Tensor elu(const Tensor& x, double alpha = 1.0);
Tensor silu(const Tensor& x);
Tensor clamp(const Tensor& x, double lo, double hi);  // gradient 0 outside [lo, hi]

// Sums `grad` over broadcast axes so that it has `shape` (the backward of broadcasting).
Tensor sum_to(const Tensor& grad, const Shape& shape);
// The broadcast shape of a and b; throws naming `fn` when they do not broadcast.
Shape broadcast_shapes(const char* fn, const Shape& a, const Shape& b);

}  // namespace polyak
