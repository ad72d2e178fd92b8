// Autocast: the precision device GEMMs compute in, chosen for a scope, as
// torch.autocast(dtype=bfloat16) does for matmuls.
//
//   {
//     Autocast bf16(Precision::bf16);   // this thread's device GEMMs round A and B to bf16
//     Tensor loss = cross_entropy(model(tokens), targets);
//     loss.backward();
//   }                                   // f32 again
//   opt.step();                         // the optimizer's update is never a GEMM: f32
//
// Under bf16 every device GEMM (matmul, linear, the products inside the attention kernels'
// drivers: whatever reaches DeviceBackend::gemm or an executor's gemm) rounds its operands
// A and B to bf16, round to nearest even (core/bf16.h), and accumulates and writes in f32.
// Nothing else changes: parameters, gradients, optimizer state, activations and every
// other op stay f32 (f32 master weights), so only the products' inputs lose mantissa bits.
//
// The setting is per thread and scoped (RAII, nestable: a guard restores what it found).
// The CPU ignores it: its GEMMs are always f32, and the CLI rejects bf16 with --device cpu.
#pragma once

#include <cstdint>

namespace polyak {

enum class Precision : uint8_t {
  f32,   // true f32 products (no TF32): the default
  bf16,  // bf16 operands, f32 accumulation and output
};
const char* name(Precision p);

// The precision of this thread's device GEMMs now (f32 outside every Autocast).
Precision autocast_precision();

class Autocast {
 public:
  explicit Autocast(Precision p);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  Precision previous_;
};

}  // namespace polyak
