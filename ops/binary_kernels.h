// The broadcasting binary ops' loops, compiled once per ISA (ops/binary_isa.cpp;
// ops/elementwise.cpp has the ops and builds the plan; internal to ops/).
#pragma once

#include <cstdint>
#include <vector>

#include "polyak/core/backend.h"
#include "polyak/core/cpu.h"

namespace polyak::detail {

// `dims` are the output's coalesced extents (extent-1 axes dropped, neighbouring axes
// merged when a and b broadcast the same way along both); sa/sb are element strides of a
// and b along them, 0 where that operand is broadcast.
struct BroadcastPlan {
  std::vector<int64_t> dims, sa, sb;
};

// out = a ∘ b over the plan's numel elements of out (contiguous). T is float or double.
#define POLYAK_BINARY_DECLARE(isa)                                                                 \
  template <class T>                                                                               \
  void binary_apply(IsaTag<Isa::isa>, BinaryOp op, const BroadcastPlan& p, const T* a, const T* b, \
                    T* out, int64_t numel);
POLYAK_FOR_EACH_ISA(POLYAK_BINARY_DECLARE)
#undef POLYAK_BINARY_DECLARE

}  // namespace polyak::detail
