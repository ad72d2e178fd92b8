// The optim kernel group on CUDA devices: the bodies and drivers of cuda/kernels/optim.h run by
// CudaExec.
#include "polyak/cuda/cuda.h"
#include "polyak/cuda/kernels/optim.h"
#include "polyak/cuda/launch.cuh"

namespace polyak::cuda {

const OptimKernels& optim_kernels() {
  static const OptimKernels table = kernels::optim_kernels<CudaExec>();
  return table;
}

}  // namespace polyak::cuda
