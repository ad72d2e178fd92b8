// The registry of device backends and the CPU's memory functions (see backend.h).
#include "polyak/core/backend.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "polyak/core/error.h"
#include "polyak/core/tensor.h"

namespace polyak {
namespace {

void* cpu_allocate(size_t bytes, int) {
  void* p = std::aligned_alloc(64, bytes);
  if (!p) fail("allocate: out of host memory requesting ", bytes, " bytes");
  return p;
}
void cpu_deallocate(void* p, size_t, int) {
  std::free(p);
}
void cpu_copy(void* dst, Device, const void* src, Device, size_t bytes) {
  std::memcpy(dst, src, bytes);
}
void cpu_memset_zero(void* p, size_t bytes, int) {
  std::memset(p, 0, bytes);
}
int cpu_device_count() {
  return 1;
}

// Memory only: the CPU's kernels are the ops' own loops.
const DeviceBackend kCpuBackend{.name = "cpu",
                                .kernel_dtype = DType::f32,
                                .allocate = cpu_allocate,
                                .deallocate = cpu_deallocate,
                                .copy = cpu_copy,
                                .memset_zero = cpu_memset_zero,
                                .device_count = cpu_device_count,
                                .binary = nullptr,
                                .binary_scalar = nullptr,
                                .unary = nullptr,
                                .unary_backward = nullptr,
                                .sum_rows = nullptr,
                                .sum_all = nullptr,
                                .gemm = nullptr};

struct Registry {
  std::mutex mutex;
  const DeviceBackend* backends[kDeviceTypes] = {&kCpuBackend, nullptr, nullptr};
};
Registry& registry() {
  static Registry r;
  return r;
}

const DeviceBackend* find(DeviceType type) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  return registry().backends[static_cast<int>(type)];
}

[[noreturn]] void fail_missing(const char* fn, Device device) {
  if (device.is_cuda())
    fail(fn, ": device ", device,
         " has no backend: polyak was built without CUDA, expected a "
         "build with the CUDA backend (configure with POLYAK_CUDA=ON where a CUDA compiler is "
         "installed)");
  fail(fn, ": device ", device,
       " has no backend, expected one registered with "
       "register_device_backend(DeviceType::",
       name(device.type), ", …)");
}

}  // namespace

const char* name(BinaryOp op) {
  static const char* const kNames[] = {"add", "sub", "mul", "div"};
  return kNames[static_cast<int>(op)];
}

const char* name(UnaryOp op) {
  static const char* const kNames[] = {"neg",     "exp",  "log",  "sqrt", "square", "abs", "tanh",
                                       "sigmoid", "relu", "gelu", "silu", "pow",    "elu", "clamp"};
  return kNames[static_cast<int>(op)];
}

void register_device_backend(DeviceType type, const DeviceBackend* backend) {
  POLYAK_CHECK(type != DeviceType::cpu,
               "register_device_backend: type is cpu, expected another device type (the CPU "
               "backend is built in)");
  POLYAK_CHECK(backend && backend->name && backend->allocate && backend->deallocate &&
                   backend->copy && backend->memset_zero && backend->device_count &&
                   backend->synchronize && backend->binary && backend->binary_scalar &&
                   backend->unary && backend->unary_backward && backend->sum_rows &&
                   backend->sum_all && backend->gemm,
               "register_device_backend: the backend for ", name(type),
               " leaves a field unset, expected every memory function and kernel");
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().backends[static_cast<int>(type)] = backend;
}

bool has_device_backend(DeviceType type) {
  return find(type) != nullptr;
}

const DeviceBackend& device_backend(DeviceType type, const char* fn) {
  const DeviceBackend* backend = find(type);
  if (!backend) fail_missing(fn, Device{type, 0});
  return *backend;
}

const DeviceBackend& device_kernels(Device device, const char* fn) {
  POLYAK_CHECK(!device.is_cpu(), fn,
               ": asked for the kernels of the cpu, expected another device (the CPU's kernels "
               "are the ops' own loops)");
  const DeviceBackend* backend = find(device.type);
  if (!backend) fail_missing(fn, device);
  return *backend;
}

const DeviceBackend& device_kernels(const char* fn, const char* arg, const Tensor& t) {
  check_defined(fn, arg, t);
  const DeviceBackend& backend = device_kernels(t.device(), fn);
  POLYAK_CHECK(t.dtype() == backend.kernel_dtype, fn, ": ", arg, " is ", t.dtype(), " on ",
               t.device(), ", expected ", backend.kernel_dtype, " (the ", backend.name,
               " kernels compute in ", backend.kernel_dtype, ")");
  return backend;
}

Device parse_device(const std::string& text, const char* what) {
  for (const DeviceType type : {DeviceType::cpu, DeviceType::cuda, DeviceType::ext}) {
    const std::string prefix = name(type);
    if (text == prefix) return Device{type, 0};
    if (type == DeviceType::cpu || text.rfind(prefix + ":", 0) != 0) continue;
    const std::string digits = text.substr(prefix.size() + 1);
    const bool number = !digits.empty() && digits.size() <= 4 &&
                        digits.find_first_not_of("0123456789") == std::string::npos;
    if (number) return Device{type, std::stoi(digits)};
  }
  fail(what, ": device '", text, "' is not a device, expected cpu, cuda, cuda:N (N = 0, 1, …)");
}

void check_device_available(Device device, const char* what) {
  if (device.is_cpu()) return;
  const DeviceBackend* backend = find(device.type);
  if (!backend) fail_missing(what, device);
  const int count = backend->device_count();
  if (count == 0 && device.is_cuda())
    fail(what, ": device ", device,
         " was asked for, but no CUDA device is present (polyak is built with CUDA; the driver "
         "finds no GPU), expected --device cpu on this machine");
  POLYAK_CHECK(device.index < count, what, ": device ", device, " does not exist, expected ",
               name(device.type), ":0 … ", name(device.type), ":", count - 1, " (", count, " ",
               backend->name, " devices present)");
}

void synchronize(Device device) {
  if (device.is_cpu()) return;
  device_backend(device.type, "synchronize").synchronize(device.index);
}

Device device_of(const Tensor& t) {
  return t.device();
}

void fail_no_kernel(const char* fn, Device device, const char* backend) {
  fail(fn, ": no ", backend, " kernel for this op yet (a tensor is on ", device,
       "), expected the tensors on the CPU (.cpu()) or a backend that provides it");
}

}  // namespace polyak
