// The random kernel group of a device backend (core/backend.h, DeviceBackend::random): dropout,
// relu_dropout, dropout_add and the gate of relu_dropout_linear, drawing from the same
// counter-based Philox stream as the CPU (the same masks for the same seed). Entries left null are
// not provided; ops reach them through device_kernel(), which names the op and the device then.
// Every entry checks nothing that its op has checked: the op validates shapes, dtypes and devices
// on the host before it calls the kernel, allocates the outputs on the device and passes them in.
#pragma once

#include "polyak/core/backend.h"

namespace polyak {

struct RandomKernels {};

}  // namespace polyak
