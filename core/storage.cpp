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
#include <vector>

#ifdef POLYAK_WITH_CUDA
#include "polyak/cuda/cuda.h"
#endif

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

const DeviceBackend kCpuBackend{cpu_allocate, cpu_deallocate, cpu_copy, cpu_memset_zero,
                                cpu_device_count};

struct Registry {
  std::mutex mutex;
  const DeviceBackend* backends[2] = {&kCpuBackend, nullptr};
};
Registry& registry() {
  static Registry r;
  return r;
}

size_t round_size(size_t bytes) {
  if (bytes <= 512) return 512;
  size_t p = 1;
  while (p < bytes) p <<= 1;
  size_t step = std::max<size_t>(p / 8, 512);
  return (bytes + step - 1) / step * step;
}

// One caching allocator per device.
class CachingAllocator {
 public:
  explicit CachingAllocator(DeviceType type) : type_(type) {}

  void* allocate(size_t bytes, int index, size_t* capacity) {
    *capacity = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    auto& bucket = free_[{index, *capacity}];
    void* p;
    if (!bucket.empty()) {
      p = bucket.back();
      bucket.pop_back();
      stats_.cached_bytes -= *capacity;
    } else {
      const DeviceBackend& backend = device_backend(type_, "allocate");
      try {
        p = backend.allocate(*capacity, index);
      } catch (const Error&) {
        // Out of memory with blocks parked in the cache: return them and try once more.
        release_cached_locked(index);
        p = backend.allocate(*capacity, index);
      }
      ++stats_.system_allocations;
    }
    stats_.allocated_bytes += *capacity;
    stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
    return p;
  }

  void deallocate(void* p, size_t capacity, int index) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_[{index, capacity}].push_back(p);
    stats_.allocated_bytes -= capacity;
    stats_.cached_bytes += capacity;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [key, blocks] : free_) {
      for (void* p : blocks)
        device_backend(type_, "empty_cache").deallocate(p, key.second, key.first);
      stats_.cached_bytes -= key.second * blocks.size();
      blocks.clear();
    }
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
  }

 private:
  // Returns the cached blocks of device `index` (all devices when -1) to the system.
  void release_cached_locked(int index) {
    for (auto& [key, blocks] : free_) {
      if (index >= 0 && key.first != index) continue;
      for (void* p : blocks)
        device_backend(type_, "empty_cache").deallocate(p, key.second, key.first);
      stats_.cached_bytes -= key.second * blocks.size();
      blocks.clear();
    }
  }

  DeviceType type_;
  std::mutex mutex_;
  std::map<std::pair<int, size_t>, std::vector<void*>> free_;
  AllocatorStats stats_;
};

CachingAllocator& allocator(DeviceType type) {
  // Leaked on purpose: storages may be freed during static destruction.
  static CachingAllocator* cpu = new CachingAllocator(DeviceType::cpu);
  static CachingAllocator* cuda = new CachingAllocator(DeviceType::cuda);
  return type == DeviceType::cpu ? *cpu : *cuda;
}

}  // namespace

void register_device_backend(DeviceType type, const DeviceBackend* backend) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().backends[static_cast<int>(type)] = backend;
}

bool has_device_backend(DeviceType type) {
#ifdef POLYAK_WITH_CUDA
  if (type == DeviceType::cuda && !registry().backends[1])
    register_device_backend(DeviceType::cuda, &cuda::device_backend());
#endif
  std::lock_guard<std::mutex> lock(registry().mutex);
  return registry().backends[static_cast<int>(type)] != nullptr;
}

const DeviceBackend& device_backend(DeviceType type, const char* fn) {
  POLYAK_CHECK(has_device_backend(type), fn,
               ": device cuda is not available, expected a build with the CUDA backend "
               "(configure with POLYAK_CUDA=ON where a CUDA compiler is installed)");
  std::lock_guard<std::mutex> lock(registry().mutex);
  return *registry().backends[static_cast<int>(type)];
}

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device.is_cuda()) {
    const DeviceBackend& backend = device_backend(DeviceType::cuda, "Tensor");
    int count = backend.device_count();
    POLYAK_CHECK(device.index >= 0 && device.index < count, "Tensor: device ", device.str(),
                 " is not present, expected one of ", count, " cuda device(s)");
  }
  data_ = allocator(device.type).allocate(bytes, device.index, &capacity_);
}

Storage::~Storage() {
  allocator(device_.type).deallocate(data_, capacity_, device_.index);
}

AllocatorStats allocator_stats(Device device) {
  return allocator(device.type).stats();
}
void reset_peak_allocated(Device device) {
  allocator(device.type).reset_peak();
}
void empty_cache(Device device) {
  allocator(device.type).empty_cache();
}

}  // namespace polyak
