// The attention kernel group on CUDA devices: the bodies and drivers of cuda/kernels/attention.h
// run by CudaExec.
#include "polyak/cuda/cuda.h"
#include "polyak/cuda/kernels/attention.h"
#include "polyak/cuda/launch.cuh"

namespace polyak::cuda {

const AttentionKernels& attention_kernels() {
  static const AttentionKernels table = kernels::attention_kernels<CudaExec>();
  return table;
}

}  // namespace polyak::cuda
