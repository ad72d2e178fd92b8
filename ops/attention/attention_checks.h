// Boundary checks shared by the attention ops (internal to ops/attention).
//
// Every attention op takes q [B,H,N,D], k [B,H,M,D], v [B,H,M,Dv] on the CPU, one dtype.
// A failed check throws polyak::Error naming the op, the argument, the shape seen and the
// layout expected, e.g.
//   causal_linear_attention: v has shape [2,4,128,16], expected [B,H,N,Dv] matching
//   q [2,4,64,32] in B,H,N
#pragma once

#include <cstdint>

#include "polyak/core/tensor.h"

namespace polyak::detail {

// Dimension legend: B batch, H heads, N query positions, M key positions, D query/key
// width, Dv value width.
struct AttentionDims {
  int64_t B = 0, H = 0, N = 0, M = 0, D = 0, Dv = 0;
};

// Validates q, k, v. With `same_length` (causal ops) k and v must have q's length N;
// otherwise k and v share their own length M. On the CPU unless `on_device` (an op with a
// device branch: one device for all three).
AttentionDims check_attention_inputs(const char* fn, const Tensor& q, const Tensor& k,
                                     const Tensor& v, bool same_length, bool on_device = false);

// eps must be finite and ≥ 0: "<fn>: eps is <eps>, expected a finite value >= 0".
void check_eps(const char* fn, double eps);

// ---- recurrent steps: one position against a state ----

struct StepDims {
  int64_t B = 0, H = 0, D = 0, Dv = 0;
};

// q, k of one rank-3 shape (`qk_layout`, e.g. "[B,N,D]"), v (`v_layout`) matching q in
// the first two axes (named `leading`, e.g. "B,N"): one dtype, on the CPU.
void check_rank3_qkv(const char* fn, const Tensor& q, const Tensor& k, const Tensor& v,
                     const char* qk_layout, const char* v_layout, const char* leading,
                     bool on_device = false);

// q, k [B,H,D], v [B,H,Dv]: one dtype, on the CPU.
StepDims check_step_inputs(const char* fn, const Tensor& q, const Tensor& k, const Tensor& v,
                           bool on_device = false);

// A (defined) state tensor must have `expected` shape (`layout` names its axes in the
// message, e.g. "[B,H,D,Dv]"), `dtype` (q's) and live on `device` (q's).
void check_state(const char* fn, const char* arg, const Tensor& state, const Shape& expected,
                 const char* layout, DType dtype, Device device = Device::cpu());

// As check_state, except that an undefined state is created as zeros (on `device`): the
// empty prefix.
void check_or_init_state(const char* fn, const char* arg, Tensor& state, const Shape& expected,
                         const char* layout, DType dtype, Device device = Device::cpu());

// KV caches [..., C, W] (rows along the next-to-last axis) that `length` rows fill
// (length == C) are replaced by zeroed copies with capacity max(2C, min_capacity) that keep
// rows [0, length) of every leading index; otherwise they are left as they are.
void grow_when_full(Tensor& k_cache, Tensor& v_cache, int64_t length, int64_t min_capacity);

}  // namespace polyak::detail
