// The conversion autocast's bf16 GEMMs read their operands through (cuda/gemm.cpp): one
// body per element, rounding as core/bf16.h does on the host.
#include "polyak/core/bf16.h"
#include "polyak/cuda/launch.cuh"

namespace polyak::cuda {
namespace {

struct ToBf16 {
  const float* x;
  uint16_t* y;
  POLYAK_HD void operator()(int64_t i) const { y[i] = bf16_bits(x[i]); }
};

}  // namespace

void to_bf16(const float* x, uint16_t* y, int64_t count, int index) {
  const CudaExec ex(Device::cuda(index));
  ex.for_each(count, ToBf16{x, y});
}

}  // namespace polyak::cuda
