// Storage: a block of memory on one device, shared by every tensor that views it, and the
// caching allocators behind it.
//
// Freed blocks go back to a per-device cache keyed by rounded size, so that a training
// loop that allocates the same shapes every step stops calling malloc/cudaMalloc after
// its first step. `empty_cache()` returns cached blocks to the system.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "polyak/core/dtype.h"

namespace polyak {

// What a device backend provides to core. The CPU backend is built in; the CUDA backend
// registers itself when polyak is built with CUDA (see cuda/).
struct DeviceBackend {
  void* (*allocate)(size_t bytes, int index);
  void (*deallocate)(void* ptr, size_t bytes, int index);
  // Copies `bytes` from `src` (on device `src_dev`) to `dst` (on `dst_dev`); one side may
  // be the CPU.
  void (*copy)(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
  void (*memset_zero)(void* ptr, size_t bytes, int index);
  int (*device_count)();
};

// The backend for `type`; throws naming `fn` when polyak was built without it.
const DeviceBackend& device_backend(DeviceType type, const char* fn);
// Called by a backend at start-up.
void register_device_backend(DeviceType type, const DeviceBackend* backend);
bool has_device_backend(DeviceType type);

class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;     // requested
  size_t capacity_ = 0;  // rounded, as cached
  Device device_;
};

struct AllocatorStats {
  size_t allocated_bytes = 0;       // held by live storages
  size_t peak_allocated_bytes = 0;  // high-water mark of allocated_bytes
  size_t cached_bytes = 0;          // freed, kept for reuse
  size_t system_allocations = 0;    // calls that reached malloc / cudaMalloc
};

AllocatorStats allocator_stats(Device device = Device::cpu());
void reset_peak_allocated(Device device = Device::cpu());
// Returns every cached block of `device` to the system.
void empty_cache(Device device = Device::cpu());

}  // namespace polyak
