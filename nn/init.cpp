#include "polyak/nn/init.h"

#include "polyak/core/error.h"

namespace polyak {

namespace {
// Maps every element x of `t` to f(x): on the CPU in place; a device tensor through a host
// copy (initialisation happens once, outside any step).
template <class F>
void transform_(Tensor& t, F&& f) {
  Tensor host = t.device().is_cpu() ? t : t.cpu();
  dispatch(host.dtype(), [&]<class T>() {
    T* p = host.data<T>();
    for (int64_t i = 0, n = host.numel(); i < n; ++i)
      p[i] = static_cast<T>(f(static_cast<double>(p[i])));
  });
  if (!t.device().is_cpu()) t.copy_(host);
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
