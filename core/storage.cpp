// Storage and the caching allocators.
//
// Blocks are rounded up (to 512 bytes, then to a multiple of 1/8 of their power of two) so
// that slightly different sizes share a bucket; a freed block is parked in its bucket and
// handed to the next request of the same rounded size.
#include "polyak/core/storage.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace polyak {
namespace {

size_t round_size(size_t bytes) {
  if (bytes <= 512) return 512;
  size_t p = 1;
  while (p < bytes) p <<= 1;
  size_t step = std::max<size_t>(p / 8, 512);
  return (bytes + step - 1) / step * step;
}

// One caching allocator per device type; its blocks and figures (allocator_stats, the peak,
// empty_cache) are per device index: cuda:1's tensors do not count in cuda:0's.
class CachingAllocator {
 public:
  explicit CachingAllocator(DeviceType type) : type_(type) {}

  void* allocate(size_t bytes, int index, size_t* capacity) {
    *capacity = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    const auto capturing = capturing_.find(index);
    const int pool = capturing == capturing_.end() ? 0 : capturing->second;
    auto& bucket = pool != 0 ? pools_[pool][*capacity] : free_[{index, *capacity}];
    void* p;
    if (!bucket.empty()) {
      p = bucket.back();
      bucket.pop_back();
      stats_[index].cached_bytes -= *capacity;
    } else {
      const DeviceBackend& backend = device_backend(type_, "allocate");
      try {
        p = backend.allocate(*capacity, index);
      } catch (const Error&) {
        // Out of memory with blocks parked in the cache: return them and try once more (not
        // while capturing a graph, where freeing device memory is not allowed).
        if (pool != 0) throw;
        release_cached_locked(index);
        p = backend.allocate(*capacity, index);
      }
      ++stats_[index].system_allocations;
    }
    if (pool != 0) pool_of_[p] = pool;
    AllocatorStats& stats = stats_[index];
    stats.allocated_bytes += *capacity;
    stats.peak_allocated_bytes = std::max(stats.peak_allocated_bytes, stats.allocated_bytes);
    return p;
  }

  void deallocate(void* p, size_t capacity, int index) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto owner = pool_of_.empty() ? pool_of_.end() : pool_of_.find(p);
    const auto pool = owner == pool_of_.end() ? pools_.end() : pools_.find(owner->second);
    if (pool != pools_.end()) {
      pool->second[capacity].push_back(p);
    } else {
      if (owner != pool_of_.end()) pool_of_.erase(owner);  // its pool was released
      free_[{index, capacity}].push_back(p);
    }
    stats_[index].allocated_bytes -= capacity;
    stats_[index].cached_bytes += capacity;
  }

  void empty_cache(int index) {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached_locked(index);
  }

  AllocatorStats stats(int index) {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_[index];
  }
  int begin_pool(int index) {
    std::lock_guard<std::mutex> lock(mutex_);
    const int pool = next_pool_++;
    pools_[pool];
    capturing_[index] = pool;
    return pool;
  }
  void end_pool(int index) {
    std::lock_guard<std::mutex> lock(mutex_);
    capturing_.erase(index);
  }
  void release_pool(int index, int pool) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = pools_.find(pool);
    if (it == pools_.end()) return;
    for (auto& [capacity, blocks] : it->second) {
      for (void* p : blocks) {
        pool_of_.erase(p);
        free_[{index, capacity}].push_back(p);
      }
    }
    pools_.erase(it);
  }

  void reset_peak(int index) {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_[index].peak_allocated_bytes = stats_[index].allocated_bytes;
  }

 private:
  // Returns the cached blocks of device `index` (all devices when -1) to the system.
  void release_cached_locked(int index) {
    for (auto& [key, blocks] : free_) {
      if (index >= 0 && key.first != index) continue;
      for (void* p : blocks)
        device_backend(type_, "empty_cache").deallocate(p, key.second, key.first);
      stats_[key.first].cached_bytes -= key.second * blocks.size();
      blocks.clear();
    }
  }

  DeviceType type_;
  std::mutex mutex_;
  std::map<std::pair<int, size_t>, std::vector<void*>> free_;
  std::map<int, AllocatorStats> stats_;  // by device index
  // Graph pools: each one's free blocks by size, the pool of every block allocated in one,
  // and the pool that takes a capturing device's allocations.
  std::map<int, std::map<size_t, std::vector<void*>>> pools_;
  std::unordered_map<void*, int> pool_of_;
  std::map<int, int> capturing_;  // device index → pool
  int next_pool_ = 1;
};

CachingAllocator& allocator(DeviceType type) {
  // Leaked on purpose: storages may be freed during static destruction.
  static CachingAllocator** allocators = [] {
    auto** all = new CachingAllocator*[kDeviceTypes];
    for (int t = 0; t < kDeviceTypes; ++t)
      all[t] = new CachingAllocator(static_cast<DeviceType>(t));
    return all;
  }();
  return *allocators[static_cast<int>(type)];
}

}  // namespace

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (!device.is_cpu()) {
    const DeviceBackend& backend = device_backend(device.type, "Tensor");
    int count = backend.device_count();
    POLYAK_CHECK(device.index >= 0 && device.index < count, "Tensor: device ", device.str(),
                 " is not present, expected one of ", count, " ", name(device.type), " device(s)");
  }
  data_ = allocator(device.type).allocate(bytes, device.index, &capacity_);
}

Storage::~Storage() {
  allocator(device_.type).deallocate(data_, capacity_, device_.index);
}

AllocatorStats allocator_stats(Device device) {
  return allocator(device.type).stats(device.index);
}
void reset_peak_allocated(Device device) {
  allocator(device.type).reset_peak(device.index);
}
void empty_cache(Device device) {
  allocator(device.type).empty_cache(device.index);
}

namespace detail {
int begin_graph_pool(Device device) {
  return allocator(device.type).begin_pool(device.index);
}
void end_graph_pool(Device device) {
  allocator(device.type).end_pool(device.index);
}
void release_graph_pool(Device device, int pool) {
  allocator(device.type).release_pool(device.index, pool);
}
}  // namespace detail

}  // namespace polyak
