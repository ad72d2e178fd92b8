// The nn kernel group on CUDA devices: the bodies and drivers of cuda/kernels/nn.h run by
// CudaExec.
#include "polyak/cuda/cuda.h"
#include "polyak/cuda/kernels/nn.h"
#include "polyak/cuda/launch.cuh"

namespace polyak::cuda {

const NnKernels& nn_kernels() {
  static const NnKernels table = kernels::nn_kernels<CudaExec>();
  return table;
}

}  // namespace polyak::cuda
