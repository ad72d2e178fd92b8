// HostExec: the executor (cuda/kernels/exec.h) that runs the device kernels' bodies on the
// host, on host memory — what the fake device (fake_device.h) computes with. for_each visits
// the indices in a scrambled order (a stride coprime with n), so a body that depends on the
// order of the others, or writes what another body reads, shows up as a wrong result rather
// than passing by luck; gemm is a plain triple loop in double, on operands rounded to bf16
// under autocast (core/autocast.h).
#pragma once

#include <cstdint>
#include <numeric>

#include "polyak/core/backend.h"
#include "polyak/core/bf16.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::testing {

class HostExec {
 public:
  explicit HostExec(Device) {}

  template <class F>
  void for_each(int64_t n, const F& f) const {
    if (n <= 0) return;
    int64_t stride = n / 2 + 1;  // coprime with n: every index exactly once
    while (std::gcd(stride, n) != 1) ++stride;
    int64_t i = n - 1;
    for (int64_t count = 0; count < n; ++count, i = (i + stride) % n) f(i);
  }

  void gemm(const float* a, const float* b, float* out, const GemmArgs& args) const {
    const GemmArgs g = autocast(args);
    // bf16: each operand rounded as the CUDA side rounds it before cuBLAS reads it.
    auto in = [&](float v) { return g.precision == Precision::bf16 ? round_bf16(v) : v; };
    for (int64_t e = 0; e < g.batch; ++e) {
      const float* ae = a + e * g.a_stride;
      const float* be = b + e * g.b_stride;
      float* oe = out + e * g.out_stride;
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j) {
          double s = 0;
          for (int64_t p = 0; p < g.k; ++p) {
            const float av = in(g.trans_a ? ae[p * g.m + i] : ae[i * g.k + p]);
            const float bv = in(g.trans_b ? be[j * g.k + p] : be[p * g.n + j]);
            s += static_cast<double>(av) * bv;
          }
          float& o = oe[i * g.n + j];
          o = static_cast<float>(g.alpha * s + (g.beta == 0.0f ? 0.0 : g.beta * o));
        }
    }
  }
};

}  // namespace polyak::testing
