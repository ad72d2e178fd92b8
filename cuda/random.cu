// The random kernel group on CUDA devices: the bodies and drivers of cuda/kernels/random.h run by
// CudaExec.
#include "polyak/cuda/cuda.h"
#include "polyak/cuda/kernels/random.h"
#include "polyak/cuda/launch.cuh"

namespace polyak::cuda {

const RandomKernels& random_kernels() {
  static const RandomKernels table = kernels::random_kernels<CudaExec>();
  return table;
}

}  // namespace polyak::cuda
