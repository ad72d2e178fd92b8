// Device backends: what a device other than the CPU provides to core and ops, and the
// registry that holds one backend per device type.
//
// The CPU is built in: its memory functions are here, its kernels are the ops' own loops.
// Any other device is reached only through its registered DeviceBackend: memory (the
// caching allocator in core/storage.cpp sits in front of allocate/deallocate) and the
// kernels that ops call for tensors on that device. cuda/ fills one for CUDA devices and
// registers it at start-up; a test can register a fake one (DeviceType::ext) that keeps
// its "device" memory on the host. Core includes no backend's header: an op asks
// device_kernels(), which names the op when the device has no backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "polyak/core/autocast.h"
#include "polyak/core/dtype.h"

namespace polyak {

class Tensor;

// The elementwise functions a backend computes: one list, for the CPU loops (ops/) and for
// every device's kernels.
enum class BinaryOp : uint8_t { add, sub, mul, div };
enum class UnaryOp : uint8_t {
  neg,
  exp,
  log,
  sqrt,
  square,
  abs,
  tanh,
  sigmoid,
  relu,
  gelu,
  silu,
  pow,
  elu,
  clamp
};
const char* name(BinaryOp op);
const char* name(UnaryOp op);

// The parameters of the unary functions that have some: pow's exponent (a), elu's α (a),
// clamp's bounds (a = lo, b = hi).
struct UnaryParams {
  double a = 0, b = 0;
};

// One (batched) product of row-major operands, as matmul describes it:
//   out[i] = alpha · op(a[i]) · op(b[i]) + beta · out[i]   for i < batch
// a[i] [m,k] (stored [k,m] when trans_a), b[i] [k,n] (stored [n,k] when trans_b), out[i]
// [m,n]; the strides are in elements between batch entries; b_stride = 0 shares b across
// the batch; beta = 0 overwrites out (even where it holds NaN). Under Precision::bf16 the
// product reads a and b rounded to bf16 and accumulates and writes in f32 (core/autocast.h).
struct GemmArgs {
  int64_t batch, m, n, k;
  bool trans_a, trans_b;
  int64_t a_stride, b_stride, out_stride;
  float alpha = 1.0f, beta = 0.0f;
  Precision precision = Precision::f32;
};

// `args` in this thread's autocast precision where that is bf16: what the ops and the
// executors do to every GEMM they send to a device.
inline GemmArgs autocast(GemmArgs args) {
  if (autocast_precision() == Precision::bf16) args.precision = Precision::bf16;
  return args;
}

// Kernel groups beyond the elementwise core below: each group's table is declared in its own
// header (core/kernels_<group>.h) and filled by the backend. A group, or an entry of one,
// that a backend does not provide is null; ops reach an entry through device_kernel(),
// which names the op and the device when it is missing.
struct NnKernels;         // core/kernels_nn.h: embedding, norms, softmax, cross-entropy, argmax
struct RandomKernels;     // core/kernels_random.h: dropout and its fused forms
struct ShapeKernels;      // core/kernels_shape.h: copies, heads, reductions, broadcasting
struct AttentionKernels;  // core/kernels_attention.h: the attention ops and their steps
struct OptimKernels;      // core/kernels_optim.h: the fused optimizer updates and clipping

struct DeviceBackend {
  const char* name;    // "cuda": errors name it
  DType kernel_dtype;  // the one dtype its kernels compute in (memory holds any dtype)

  // ---- memory ---------------------------------------------------------------------------
  void* (*allocate)(size_t bytes, int index);
  void (*deallocate)(void* ptr, size_t bytes, int index);
  // Copies `bytes` from `src` (on device `src_dev`) to `dst` (on `dst_dev`); one side may
  // be the CPU.
  void (*copy)(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
  void (*memset_zero)(void* ptr, size_t bytes, int index);
  // Devices present (0 when the driver or the hardware is missing; never throws).
  int (*device_count)();
  // Waits until every kernel and copy queued on device `index` has finished (timing; the
  // ops never need it: reading a tensor back to the host waits by itself).
  void (*synchronize)(int index);
  // The free and total memory of device `index` in bytes (null: the backend cannot tell;
  // available_memory() in core/storage.h then has no figure for it).
  void (*memory_info)(int index, size_t* free, size_t* total) = nullptr;

  // ---- kernels --------------------------------------------------------------------------
  // Every tensor on one device of this backend, in kernel_dtype; the kernels validate that
  // and overwrite `out` (or `dx`), which the caller preallocates; an elementwise `out` may
  // alias its first input.
  //
  // out[i] = a[i] op b[i % b.numel()]: same shapes, or b repeating along a's leading axes
  // (a bias row, a scalar).
  void (*binary)(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
  // out = a op scalar (scalar op a when `scalar_first`).
  void (*binary_scalar)(BinaryOp op, const Tensor& a, double scalar, bool scalar_first,
                        Tensor& out);
  void (*unary)(UnaryOp op, UnaryParams p, const Tensor& x, Tensor& out);
  // dx = dy · f'(x).
  void (*unary_backward)(UnaryOp op, UnaryParams p, const Tensor& x, const Tensor& dy, Tensor& dx);
  // x viewed as [rows, cols] → out [cols]: the column sums (bias gradients).
  void (*sum_rows)(const Tensor& x, int64_t rows, int64_t cols, Tensor& out);
  void (*sum_all)(const Tensor& x, Tensor& out);  // out [] (one element)
  void (*gemm)(const Tensor& a, const Tensor& b, Tensor& out, const GemmArgs& args);

  // ---- kernel groups (null: not provided) --------------------------------------------------
  const NnKernels* nn = nullptr;
  const RandomKernels* random = nullptr;
  const ShapeKernels* shape = nullptr;
  const AttentionKernels* attention = nullptr;
  const OptimKernels* optim = nullptr;

  // ---- graphs (null: the backend cannot capture; core/graph.h) ----------------------------
  // From capture_begin to capture_end, the work queued on device `index` is recorded, not
  // run. capture_end returns the replayable graph, or discards the record and returns null
  // when `discard` (a capture that failed); graph_launch queues one replay on the device;
  // graph_destroy frees the graph.
  void (*capture_begin)(int index) = nullptr;
  void* (*capture_end)(int index, bool discard) = nullptr;
  void (*graph_launch)(void* graph, int index) = nullptr;
  void (*graph_destroy)(void* graph, int index) = nullptr;
};

// Registers the backend of `type` (not the CPU's), replacing any earlier one; every field
// must be set. `backend` must outlive every tensor of that type. A backend built into the
// library registers itself when the program starts.
void register_device_backend(DeviceType type, const DeviceBackend* backend);
bool has_device_backend(DeviceType type);
// The backend of `type`; throws naming `fn` when none is registered (for cuda: polyak was
// built without its CUDA backend).
const DeviceBackend& device_backend(DeviceType type, const char* fn);

// The device `text` names: "cpu", "cuda" (cuda:0), "cuda:N", "ext", "ext:N". Throws naming
// `what` (a function or a flag) for anything else; does not look for the device.
Device parse_device(const std::string& text, const char* what);
// Throws naming `what` unless tensors can live on `device` here: the CPU always; another
// device when its backend is registered (for cuda: a build with CUDA) and it is present
// (index < device_count()).
void check_device_available(Device device, const char* what);
// Waits for `device`'s queued work (nothing to wait for on the CPU).
void synchronize(Device device);

// The kernels of `device` (not the CPU) for op `fn`: throws naming `fn` and the device when
// it has no backend.
const DeviceBackend& device_kernels(Device device, const char* fn);
// The same, and checks that `t` (argument `arg` of `fn`, on that device) has the dtype the
// kernels compute in.
const DeviceBackend& device_kernels(const char* fn, const char* arg, const Tensor& t);

// Throws: op `fn` has no kernel on `device`, whose backend `backend` lacks it.
[[noreturn]] void fail_no_kernel(const char* fn, Device device, const char* backend);
// t.device() (here, where Tensor is only declared).
Device device_of(const Tensor& t);

// The kernel `entry` of group `group` on `device`, for op `fn`:
//   device_kernel("embedding", w.device(), &DeviceBackend::nn, &NnKernels::embedding)(w, ids, y);
// Throws naming fn and the device when the device has no backend, or its backend lacks the
// group or the entry. The group's header must be included where this is called.
template <class Group, class Fn>
Fn device_kernel(const char* fn, Device device, const Group* DeviceBackend::*group,
                 Fn Group::*entry) {
  const DeviceBackend& backend = device_kernels(device, fn);
  const Group* table = backend.*group;
  Fn kernel = table ? table->*entry : nullptr;
  if (!kernel) fail_no_kernel(fn, device, backend.name);
  return kernel;
}

// The same, and checks that `t` (argument `arg` of `fn`) is defined and has the dtype the
// backend's kernels compute in.
template <class Group, class Fn>
Fn device_kernel(const char* fn, const char* arg, const Tensor& t,
                 const Group* DeviceBackend::*group, Fn Group::*entry) {
  const DeviceBackend& backend = device_kernels(fn, arg, t);
  const Group* table = backend.*group;
  Fn kernel = table ? table->*entry : nullptr;
  if (!kernel) fail_no_kernel(fn, device_of(t), backend.name);
  return kernel;
}

}  // namespace polyak
