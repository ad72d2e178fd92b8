#include "polyak/nn/init.h"

#include "polyak/core/error.h"

namespace polyak {

namespace {
// Maps every element x of `t` (CPU) to f(x).
template <class F>
void transform_(Tensor& t, F&& f) {
  check_cpu("init", "tensor", t);
  dispatch(t.dtype(), [&]<class T>() {
    T* p = t.data<T>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i)
      p[i] = static_cast<T>(f(static_cast<double>(p[i])));
  });
}
}  // namespace

void uniform_(Tensor& t, double lo, double hi, Generator& gen) {
  POLYAK_CHECK(lo <= hi, "uniform_: lo = ", lo, " exceeds hi = ", hi);
  NoGradGuard no_grad;
  Tensor u = Tensor::rand(t.shape(), gen, t.dtype());
  t.copy_(u);
  transform_(t, [&](double x) { return lo + (hi - lo) * x; });
}

void normal_(Tensor& t, double mean, double stddev, Generator& gen) {
  POLYAK_CHECK(stddev >= 0, "normal_: stddev = ", stddev, ", expected ≥ 0");
  NoGradGuard no_grad;
  Tensor z = Tensor::randn(t.shape(), gen, t.dtype());
  t.copy_(z);
  transform_(t, [&](double x) { return mean + stddev * x; });
}

Generator fork(Generator& parent) {
  std::array<uint32_t, 4> w = parent.block(parent.advance(1));
  return Generator((static_cast<uint64_t>(w[0]) << 32) | w[1]);
}

}  // namespace polyak
