// Boundary checks shared by the attention ops (internal to ops/attention).
//
// Every attention op takes q [B,H,N,D], k [B,H,M,D], v [B,H,M,Dv] on the CPU, one dtype.
// A failed check throws polyak::Error naming the op, the argument, the shape seen and the
// layout expected, e.g.
//   causal_linear_attention: v has shape [2,4,128,16], expected [B,H,N,Dv] matching
//   q [2,4,64,32] in B,H,N
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace polyak::detail {

// Dimension legend: B batch, H heads, N query positions, M key positions, D query/key
// width, Dv value width.
struct AttentionDims {
  int64_t B = 0, H = 0, N = 0, M = 0, D = 0, Dv = 0;
};

// Validates q, k, v. With `same_length` (causal ops) k and v must have q's length N;
// otherwise k and v share their own length M.
AttentionDims check_attention_inputs(const char* fn, const Tensor& q, const Tensor& k,
                                     const Tensor& v, bool same_length);

}  // namespace polyak::detail
