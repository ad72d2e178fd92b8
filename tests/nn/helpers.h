// Helpers shared by the nn suites.
#pragma once

#include <string>
#include <vector>

#include "testing.h"

namespace polyak::testing {

// A fresh leaf holding a copy of `t` that requires grad: a gradcheck input standing in for
// a parameter.
inline Tensor leaf_copy(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor c = t.clone().detach();
  c.requires_grad_(true);
  return c;
}

// Gradcheck of `forward(x)` with respect to the input x and the module parameters at
// `paths` (substituted with set_parameter). The module must be f64.
template <class M, class Forward>
GradcheckResult gradcheck_module(M& module, const Tensor& x, const std::vector<std::string>& paths,
                                 Forward forward, const GradcheckOptions& options = {}) {
  std::vector<Tensor> inputs;
  if (x.defined()) inputs.push_back(leaf_copy(x));
  for (const std::string& p : paths) inputs.push_back(leaf_copy(module.parameter(p)));
  size_t first = x.defined() ? 1 : 0;
  auto fn = [&](const std::vector<Tensor>& in) {
    for (size_t i = 0; i < paths.size(); ++i) module.set_parameter(paths[i], in[first + i]);
    return forward(x.defined() ? in[0] : Tensor());
  };
  // A substitution that forward() did not see would pass gradcheck trivially (zero
  // analytic and zero numeric gradient): require a non-zero gradient at every input.
  {
    Tensor y = fn(inputs);
    Generator gen(options.seed + 1);
    y.backward(Tensor::randn(y.shape(), gen, DType::f64));
    for (size_t i = 0; i < inputs.size(); ++i) {
      Tensor g = inputs[i].grad();
      double norm = 0;
      if (g.defined())
        for (double v : g.to_vector()) norm += v * v;
      INFO("input " << i << (i >= first ? " = " + paths[i - first] : std::string(" = x")));
      CHECK(norm > 0);
      inputs[i].zero_grad();
    }
  }
  return gradcheck(fn, inputs, options);
}

}  // namespace polyak::testing
