// HostExec: the executor (cuda/kernels/exec.h) that runs the device kernels' bodies on the
// host, on host memory — what the fake device (fake_device.h) computes with. for_each visits
// the indices in a scrambled order (a stride coprime with n), so a body that depends on the
// order of the others, or writes what another body reads, shows up as a wrong result rather
// than passing by luck; gemm is a plain triple loop in double, on operands rounded to bf16
// under autocast (core/autocast.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <vector>

#include "polyak/core/backend.h"
#include "polyak/core/bf16.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::testing {

// The fake device's graph capture (core/graph.h): while fake device `index` captures, its
// launches are recorded as host functions, in order, instead of run; a replay runs the
// record. The bodies keep the raw pointers they were launched with, as a captured CUDA
// kernel does, so a replay that reads freed memory, or arguments that should have changed,
// computes something else than the eager steps.
using Launches = std::vector<std::function<void()>>;
inline std::map<int, Launches*>& recording() {
  static std::map<int, Launches*> launches;
  return launches;
}
inline std::mutex& recording_mutex() {
  static std::mutex m;
  return m;
}
// Runs `launch` now, or records it when fake device `index` is capturing.
inline void run_or_record(int index, std::function<void()> launch) {
  {
    std::lock_guard<std::mutex> lock(recording_mutex());
    const auto it = recording().find(index);
    if (it != recording().end()) {
      it->second->push_back(std::move(launch));
      return;
    }
  }
  launch();
}

class HostExec {
 public:
  explicit HostExec(Device device) : index_(device.index) {}

  template <class F>
  void for_each(int64_t n, const F& f) const {
    run_or_record(index_, [n, f] { run(n, f); });
  }

  void gemm(const float* a, const float* b, float* out, const GemmArgs& args) const {
    const GemmArgs g = autocast(args);  // the precision of the launch, not of the replay
    run_or_record(index_, [a, b, out, g] { product(a, b, out, g); });
  }

 private:
  template <class F>
  static void run(int64_t n, const F& f) {
    if (n <= 0) return;
    int64_t stride = n / 2 + 1;  // coprime with n: every index exactly once
    while (std::gcd(stride, n) != 1) ++stride;
    int64_t i = n - 1;
    for (int64_t count = 0; count < n; ++count, i = (i + stride) % n) f(i);
  }

  static void product(const float* a, const float* b, float* out, const GemmArgs& g) {
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

  int index_;
};

}  // namespace polyak::testing
