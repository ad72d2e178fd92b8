// The devices the kernel tests of tests/cuda run on, and the comparison with the CPU.
//
// Every kernel of cuda/kernels/ is tested on the fake device (fake_device.h), which runs
// CUDA's own bodies and drivers on the host, and — when a CUDA device is present — on
// cuda:0 too: the same test case compares each device's result with the CPU op's.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>
#include <vector>

#include "fake_device.h"
#include "polyak/cuda/cuda.h"
#include "testing.h"

namespace polyak::testing {

inline std::vector<Device> kernel_devices() {
  std::vector<Device> devices = {fake_device()};
  if (cuda::is_available()) devices.push_back(Device::cuda(0));
  return devices;
}

// |device − cpu| ≤ atol + k·eps·|cpu| elementwise (eps = f32 epsilon); reports the first
// offender and the count.
inline void check_close(const Tensor& on_device, const Tensor& cpu, double atol, double k,
                        const std::string& what) {
  INFO(what << " on " << on_device.device());
  REQUIRE(!on_device.device().is_cpu());
  REQUIRE(cpu.device().is_cpu());
  REQUIRE(on_device.shape() == cpu.shape());
  const std::vector<double> d = on_device.cpu().to_vector(), c = cpu.to_vector();
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < d.size(); ++i) {
    if (!(std::abs(d[i] - c[i]) <= atol + k * FLT_EPSILON * std::abs(c[i]))) {
      if (first < 0) first = static_cast<int64_t>(i);
      ++bad;
    }
  }
  INFO("first mismatch at " << first << ": device "
                            << (first >= 0 ? d[static_cast<size_t>(first)] : 0.0) << ", cpu "
                            << (first >= 0 ? c[static_cast<size_t>(first)] : 0.0));
  CHECK(bad == 0);
}

inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double x : t.to_vector()) m = std::max(m, std::abs(x));
  return m;
}

// f32 sums of n terms: |device − cpu| ≤ 4 n eps · max(max|cpu|, floor) + 64 eps |cpu|.
inline void check_sum_close(const Tensor& on_device, const Tensor& cpu, int64_t n,
                            const std::string& what, double floor = 0) {
  const double scale = std::max(max_abs(cpu), floor);
  check_close(on_device, cpu, 4.0 * static_cast<double>(n) * FLT_EPSILON * scale, 64, what);
}

// A random non-uniform cotangent of `shape` (f32, on the CPU).
inline Tensor cotangent(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return Tensor::randn(shape, gen);
}

}  // namespace polyak::testing
