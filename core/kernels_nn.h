// The nn kernel group of a device backend (core/backend.h, DeviceBackend::nn): embedding (forward
// and its deterministic backward), layer/RMS/SRMS norm, softmax and log-softmax, masked
// cross-entropy with the loss kept on the device, argmax. Entries left null are not provided; ops
// reach them through device_kernel(), which names the op and the device then. Every entry checks
// nothing that its op has checked: the op validates shapes, dtypes and devices on the host before
// it calls the kernel, allocates the outputs on the device and passes them in.
#pragma once

#include "polyak/core/backend.h"

namespace polyak {

struct NnKernels {
  // out [ids.shape..., C] = the rows weight[ids, :] of weight [V, C]; ids i32 or i64 on the
  // same device. An id outside [0, V) gives a row of NaN (a kernel cannot throw; the
  // loss then names it), where the CPU op throws.
  void (*embedding)(const Tensor& weight, const Tensor& ids, Tensor& out) = nullptr;
  // dweight [V, C] += Σ_{i : ids[i] = v} grad[i, :], summed in the order of i (deterministic:
  // the same bits every run); dweight arrives zeroed.
  void (*embedding_backward)(const Tensor& grad, const Tensor& ids, Tensor& dweight) = nullptr;
};

}  // namespace polyak
