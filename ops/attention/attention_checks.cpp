// Boundary checks shared by the attention ops; see attention_checks.h.
#include "polyak/ops/attention/attention_checks.h"

#include <algorithm>
#include <cmath>

#include "polyak/core/error.h"
#include "polyak/core/kernels_shape.h"

namespace polyak::detail {

AttentionDims check_attention_inputs(const char* fn, const Tensor& q, const Tensor& k,
                                     const Tensor& v, bool same_length, bool on_device) {
  check_rank(fn, "q", q, 4, "[B,H,N,D]");
  check_rank(fn, "k", k, 4, same_length ? "[B,H,N,D]" : "[B,H,M,D]");
  check_rank(fn, "v", v, 4, same_length ? "[B,H,N,Dv]" : "[B,H,M,Dv]");
  check_same_dtype(fn, "q", q, "k", k);
  check_same_dtype(fn, "q", q, "v", v);
  check_same_device(fn, "q", q, "k", k);
  check_same_device(fn, "q", q, "v", v);
  if (!on_device) check_cpu(fn, "q", q);

  const Shape& qs = q.shape();
  const Shape& ks = k.shape();
  const Shape& vs = v.shape();
  if (same_length) {
    POLYAK_CHECK(ks[0] == qs[0] && ks[1] == qs[1] && ks[2] == qs[2] && ks[3] == qs[3], fn,
                 ": k has shape ", ks, ", expected [B,H,N,D] matching q ", qs, " in B,H,N,D");
    POLYAK_CHECK(vs[0] == qs[0] && vs[1] == qs[1] && vs[2] == qs[2], fn, ": v has shape ", vs,
                 ", expected [B,H,N,Dv] matching q ", qs, " in B,H,N");
  } else {
    POLYAK_CHECK(ks[0] == qs[0] && ks[1] == qs[1] && ks[3] == qs[3], fn, ": k has shape ", ks,
                 ", expected [B,H,M,D] matching q ", qs, " in B,H,D");
    POLYAK_CHECK(vs[0] == ks[0] && vs[1] == ks[1] && vs[2] == ks[2], fn, ": v has shape ", vs,
                 ", expected [B,H,M,Dv] matching k ", ks, " in B,H,M");
  }
  return AttentionDims{qs[0], qs[1], qs[2], ks[2], qs[3], vs[3]};
}

void check_eps(const char* fn, double eps) {
  POLYAK_CHECK(std::isfinite(eps) && eps >= 0, fn, ": eps is ", eps,
               ", expected a finite value >= 0");
}

void check_rank3_qkv(const char* fn, const Tensor& q, const Tensor& k, const Tensor& v,
                     const char* qk_layout, const char* v_layout, const char* leading,
                     bool on_device) {
  check_rank(fn, "q", q, 3, qk_layout);
  check_rank(fn, "k", k, 3, qk_layout);
  check_rank(fn, "v", v, 3, v_layout);
  check_same_dtype(fn, "q", q, "k", k);
  check_same_dtype(fn, "q", q, "v", v);
  check_same_device(fn, "q", q, "k", k);
  check_same_device(fn, "q", q, "v", v);
  if (!on_device) check_cpu(fn, "q", q);
  const Shape& qs = q.shape();
  POLYAK_CHECK(k.shape() == qs, fn, ": k has shape ", k.shape(), ", expected ", qk_layout, " = ",
               qs, " matching q");
  const Shape& vs = v.shape();
  POLYAK_CHECK(vs[0] == qs[0] && vs[1] == qs[1], fn, ": v has shape ", vs, ", expected ", v_layout,
               " matching q ", qs, " in ", leading);
}

StepDims check_step_inputs(const char* fn, const Tensor& q, const Tensor& k, const Tensor& v,
                           bool on_device) {
  check_rank3_qkv(fn, q, k, v, "[B,H,D]", "[B,H,Dv]", "B,H", on_device);
  return StepDims{q.size(0), q.size(1), q.size(2), v.size(2)};
}

void check_state(const char* fn, const char* arg, const Tensor& state, const Shape& expected,
                 const char* layout, DType dtype, Device device) {
  POLYAK_CHECK(state.shape() == expected, fn, ": ", arg, " has shape ", state.shape(),
               ", expected ", layout, " = ", expected);
  POLYAK_CHECK(state.dtype() == dtype, fn, ": ", arg, " has dtype ", state.dtype(), ", expected ",
               dtype, " (q's dtype)");
  if (device.is_cpu())
    check_cpu(fn, arg, state);
  else
    POLYAK_CHECK(state.device() == device, fn, ": ", arg, " is on ", state.device(),
                 " but q is on ", device, ", expected one device");
}

void check_or_init_state(const char* fn, const char* arg, Tensor& state, const Shape& expected,
                         const char* layout, DType dtype, Device device) {
  if (state.defined())
    check_state(fn, arg, state, expected, layout, dtype, device);
  else
    state = Tensor::zeros(expected, dtype, device);
}

namespace {

Tensor grow_cache(const Tensor& cache, int64_t capacity, int64_t length) {
  Shape shape = cache.shape();
  const int64_t C = shape[-2], W = shape[-1], leading = shape.numel(0, shape.rank() - 2);
  shape[-2] = capacity;
  Tensor grown = Tensor::zeros(shape, cache.dtype(), cache.device());
  if (!cache.device().is_cpu()) {  // the rows move on the device
    device_kernel("KV cache growth", cache.device(), &DeviceBackend::shape,
                  &ShapeKernels::copy_blocks)(cache, C * W, 0, grown, capacity * W, 0, leading,
                                              length * W);
    return grown;
  }
  const size_t row_bytes = static_cast<size_t>(W) * itemsize(cache.dtype());
  const auto* from = static_cast<const char*>(cache.raw_data());
  auto* to = static_cast<char*>(grown.raw_data());
  for (int64_t l = 0; l < leading; ++l)
    std::copy_n(from + static_cast<size_t>(l * C) * row_bytes,
                static_cast<size_t>(length) * row_bytes,
                to + static_cast<size_t>(l * capacity) * row_bytes);
  return grown;
}

}  // namespace

void grow_when_full(Tensor& k_cache, Tensor& v_cache, int64_t length, int64_t min_capacity) {
  const int64_t C = k_cache.shape()[-2];
  if (length < C) return;
  const int64_t capacity = std::max(2 * C, min_capacity);
  k_cache = grow_cache(k_cache, capacity, length);
  v_cache = grow_cache(v_cache, capacity, length);
}

}  // namespace polyak::detail
