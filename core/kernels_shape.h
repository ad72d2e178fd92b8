// The shape kernel group of a device backend (core/backend.h, DeviceBackend::shape): permute,
// slice, concat, split/merge heads, reductions over any axis, broadcasting binary ops, maximum, the
// feature maps (elu + 1, FAVOR+). Entries left null are not provided; ops reach them through
// device_kernel(), which names the op and the device then. Every entry checks nothing that its op
// has checked: the op validates shapes, dtypes and devices on the host before it calls the kernel,
// allocates the outputs on the device and passes them in.
#pragma once

#include "polyak/core/backend.h"

namespace polyak {

struct ShapeKernels {};

}  // namespace polyak
