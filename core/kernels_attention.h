// The attention kernel group of a device backend (core/backend.h, DeviceBackend::attention):
// softmax attention (tiled), the chunked causal linear / decayed / momentum sweeps forward and
// backward, the non-causal forms, block softmax, the EMA scan, Mega's chunked attention, the
// sequence projection and the recurrent steps. Entries left null are not provided; ops reach them
// through device_kernel(), which names the op and the device then. Every entry checks nothing that
// its op has checked: the op validates shapes, dtypes and devices on the host before it calls the
// kernel, allocates the outputs on the device and passes them in.
#pragma once

#include "polyak/core/backend.h"

namespace polyak {

struct AttentionKernels {};

}  // namespace polyak
