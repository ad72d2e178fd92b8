// The shape kernel group (core/kernels_shape.h) as kernel bodies and drivers
// (cuda/kernels/exec.h): compiled by nvcc for CUDA devices (cuda/shape.cu) and by the host
// compiler for the tests' fake device (tests/fake_device.h). Each body has its CPU
// reference in ops/.
#pragma once

#include <cstdint>

#include "polyak/core/kernels_shape.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::kernels {

template <class Exec>
ShapeKernels shape_kernels() {
  ShapeKernels k;
  return k;
}

}  // namespace polyak::kernels
