// gradcheck: analytic gradients against central differences, in double precision.
//
// For a random normal cotangent c (non-uniform, so that e.g. a softmax backward that
// ignores its incoming gradient cannot pass), the scalar L = Σ fn(x) ⊙ c has
//   analytic ∂L/∂x  from one backward(c), and
//   numeric  ∂L/∂x_i ≈ (L(x + eps·e_i) − L(x − eps·e_i)) / (2 eps).
#include <cmath>
#include <sstream>

#include "polyak/core/autograd.h"
#include "polyak/core/rng.h"

namespace polyak {
namespace {
double weighted_sum(const Tensor& y, const Tensor& c) {
  const double* a = y.data<double>();
  const double* b = c.data<double>();
  double s = 0;
  for (int64_t i = 0; i < y.numel(); ++i) s += a[i] * b[i];
  return s;
}
}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  bool any = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_defined("gradcheck", "inputs", inputs[i]);
    POLYAK_CHECK(inputs[i].dtype() == DType::f64 && inputs[i].device().is_cpu(),
                 "gradcheck: input ", i, " is ", inputs[i].dtype(), " on ", inputs[i].device(),
                 ", expected f64 on cpu (finite differences need double precision)");
    any = any || inputs[i].requires_grad();
  }
  POLYAK_CHECK(any, "gradcheck: no input requires grad, expected at least one");

  // Analytic.
  for (const Tensor& x : inputs) x.zero_grad();
  Tensor y = fn(inputs);
  check_defined("gradcheck", "fn(inputs)", y);
  POLYAK_CHECK(y.dtype() == DType::f64, "gradcheck: fn returned ", y.dtype(), ", expected f64");
  POLYAK_CHECK(y.requires_grad(), "gradcheck: fn's output (shape ", y.shape(),
               ") has no gradient path to the inputs, expected a differentiable op "
               "(the op has no grad, or it was called under NoGradGuard)");
  Generator gen(options.seed);
  Tensor cotangent = Tensor::randn(y.shape(), gen, DType::f64);
  y.backward(cotangent);
  std::vector<Tensor> analytic;
  for (const Tensor& x : inputs) {
    Tensor g = x.grad();
    analytic.push_back(g.defined() ? g.detach() : Tensor::zeros(x.shape(), DType::f64));
    x.zero_grad();
  }

  // Numeric, under no-grad.
  GradcheckResult result;
  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].requires_grad()) continue;
    double* p = inputs[k].data<double>();
    const double* a = analytic[k].data<double>();
    for (int64_t i = 0; i < inputs[k].numel(); ++i) {
      double saved = p[i];
      p[i] = saved + options.eps;
      double plus = weighted_sum(fn(inputs), cotangent);
      p[i] = saved - options.eps;
      double minus = weighted_sum(fn(inputs), cotangent);
      p[i] = saved;
      double numeric = (plus - minus) / (2 * options.eps);
      double err = std::abs(a[i] - numeric);
      result.max_abs_error = std::max(result.max_abs_error, err);
      if (!(err <= options.atol + options.rtol * std::abs(numeric)) && result.ok) {
        result.ok = false;
        std::ostringstream os;
        os << "input " << k << " " << inputs[k].shape() << " element " << i << ": analytic " << a[i]
           << ", numeric " << numeric << " (|diff| " << err << ")";
        result.message = os.str();
      }
    }
  }
  if (result.ok) {
    std::ostringstream os;
    os << "ok, max |analytic − numeric| = " << result.max_abs_error;
    result.message = os.str();
  }
  return result;
}

}  // namespace polyak
