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
#include <optional>

#include "polyak/core/backend.h"
#include "polyak/core/dtype.h"

namespace polyak {

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
// The bytes new tensors on `device` can count on: the cache's parked blocks plus, for the
// CPU, the least of the kernel's MemAvailable, the cgroup's limit less its usage and the
// address-space limit less the address space in use; for a device, the free memory its
// backend reports. Empty when none of these can be read.
std::optional<size_t> available_memory(Device device = Device::cpu());
void reset_peak_allocated(Device device = Device::cpu());
// Returns every cached block of `device` to the system.
void empty_cache(Device device = Device::cpu());

namespace detail {
// The caching allocator's graph pools (core/graph.h). begin_graph_pool routes every later
// allocation on `device` to a new pool of its own, whose freed blocks go back to that pool
// only, until end_graph_pool; release_graph_pool returns the pool's free blocks to the
// system, and its blocks still in use go to the shared cache when they are freed.
int begin_graph_pool(Device device);
void end_graph_pool(Device device);
void release_graph_pool(Device device, int pool);
}  // namespace detail

}  // namespace polyak
