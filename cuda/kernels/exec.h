// One kernel source, two launchers.
//
// A device kernel of polyak is written once, in plain C++17, as a function object whose
// operator() computes the outputs of one index (an element, a row, a (head, chunk) pair):
//
//   struct Scale {
//     const float* x; float* y; float a;
//     POLYAK_HD void operator()(int64_t i) const { y[i] = a * x[i]; }
//   };
//
// and a driver, templated on an executor, that allocates what it needs and runs the bodies:
//
//   template <class Exec> void scale(Exec& ex, const float* x, float* y, float a, int64_t n) {
//     ex.for_each(n, Scale{x, y, a});
//   }
//
// An executor provides:
//   ex.for_each(n, f)          f(i) for every i in [0, n), in any order and in parallel: the
//                              bodies of one launch must write disjoint outputs and read
//                              nothing another body of the same launch writes;
//   ex.gemm(a, b, out, args)   out = alpha · op(a) · op(b) + beta · out on raw pointers, as
//                              core's GemmArgs describes it (batched, strided).
// Launches run in order: a launch sees everything the launches before it wrote.
//
// Two executors exist. CudaExec (cuda/launch.cuh, nvcc only) runs each for_each as one
// grid-stride kernel on the device's stream and each gemm through cuBLAS; HostExec
// (tests/host_exec.h) runs the same bodies on the host, in a scrambled order, on host
// memory. The fake device of the tests (tests/fake_device.h) is built from HostExec, so
// the logic of every kernel — the bodies, the drivers, the Tensor-level entry points and
// the ops' device branches — is tested on machines without a GPU; only the launch itself
// and cuBLAS are left to a machine with one.
//
// The bodies use only what both compilers accept on both sides: arithmetic, the C math
// functions of <cmath> in their float forms (::expf, ::logf, ::sqrtf, …), no exceptions,
// no allocation, no library calls. Arguments are checked before a driver runs, on the host.
#pragma once

#include <cstdint>

#include "polyak/core/hd.h"
