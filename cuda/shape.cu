// The shape kernel group on CUDA devices: the bodies and drivers of cuda/kernels/shape.h run by
// CudaExec.
#include "polyak/cuda/cuda.h"
#include "polyak/cuda/kernels/shape.h"
#include "polyak/cuda/launch.cuh"

namespace polyak::cuda {

const ShapeKernels& shape_kernels() {
  static const ShapeKernels table = kernels::shape_kernels<CudaExec>();
  return table;
}

}  // namespace polyak::cuda
