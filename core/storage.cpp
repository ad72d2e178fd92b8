// Storage and the caching allocators.
//
// Blocks are rounded up (to 512 bytes, then to a multiple of 1/8 of their power of two) so
// that slightly different sizes share a bucket; a freed block is parked in its bucket and
// handed to the next request of the same rounded size.
#include "polyak/core/storage.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
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
//
// Freeing never allocates, so that ~Storage cannot fail while a failed allocation unwinds:
// each bucket reserves room to park every block it took from the system before taking
// one, and a block with no room (its graph pool was released) goes back to the system.
class CachingAllocator {
 public:
  explicit CachingAllocator(DeviceType type) : type_(type) {}

  void* allocate(size_t bytes, int index, size_t* capacity) {
    *capacity = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    AllocatorStats& stats = stats_[index];
    const auto capturing = capturing_.find(index);
    const int pool = capturing == capturing_.end() ? 0 : capturing->second;
    Bucket& bucket = pool != 0 ? pools_[pool][*capacity] : free_[{index, *capacity}];
    void* p;
    if (!bucket.parked.empty()) {
      p = bucket.parked.back();
      bucket.parked.pop_back();
      stats.cached_bytes -= *capacity;
    } else {
      bucket.parked.reserve(bucket.owned + 1);
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
      if (pool != 0) {
        try {
          pool_of_.emplace(p, pool);
        } catch (...) {
          backend.deallocate(p, *capacity, index);
          throw;
        }
      }
      ++bucket.owned;
      ++stats.system_allocations;
    }
    stats.allocated_bytes += *capacity;
    stats.peak_allocated_bytes = std::max(stats.peak_allocated_bytes, stats.allocated_bytes);
    return p;
  }

  void deallocate(void* p, size_t capacity, int index) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    Bucket* bucket = nullptr;
    bool foreign = false;  // from a released pool: no bucket counts it
    if (const auto owner = pool_of_.find(p); owner != pool_of_.end()) {
      const auto pool = pools_.find(owner->second);
      if (pool != pools_.end()) {
        bucket = &pool->second.find(capacity)->second;
      } else {
        pool_of_.erase(owner);
        foreign = true;
      }
    }
    if (bucket == nullptr) {
      const auto it = free_.find({index, capacity});
      if (it != free_.end()) bucket = &it->second;
    }
    AllocatorStats& stats = stats_.find(index)->second;
    stats.allocated_bytes -= capacity;
    if (bucket != nullptr && bucket->parked.size() < bucket->parked.capacity()) {
      bucket->parked.push_back(p);  // within the reserved room: no allocation
      if (foreign) ++bucket->owned;
      stats.cached_bytes += capacity;
    } else {
      if (bucket != nullptr && !foreign) --bucket->owned;
      return_to_system(p, capacity, index);
    }
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
  // Returns the pool's free blocks to the system; its blocks still in use go to the shared
  // cache when they are freed, where it has room for them. Called from destructors: no
  // allocation, no throw.
  void release_pool(int index, int pool) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = pools_.find(pool);
    if (it == pools_.end()) return;
    const auto stats = stats_.find(index);
    for (auto& [capacity, bucket] : it->second) {
      for (void* p : bucket.parked) {
        pool_of_.erase(p);
        return_to_system(p, capacity, index);
        if (stats != stats_.end()) stats->second.cached_bytes -= capacity;
      }
    }
    pools_.erase(it);
  }

  size_t cached_bytes(int index) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = stats_.find(index);
    return it == stats_.end() ? 0 : it->second.cached_bytes;
  }

  void reset_peak(int index) {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_[index].peak_allocated_bytes = stats_[index].allocated_bytes;
  }

 private:
  // The parked blocks of one rounded size, and how many blocks of that size the bucket has
  // taken from the system and not returned: `parked` always has room for all of them.
  struct Bucket {
    std::vector<void*> parked;
    size_t owned = 0;
  };

  void return_to_system(void* p, size_t capacity, int index) noexcept {
    try {
      device_backend(type_, "deallocate").deallocate(p, capacity, index);
    } catch (...) {
      // A device that cannot free now (a failed context) keeps the block: nothing else to do
      // in a destructor.
    }
  }

  // Returns the cached blocks of device `index` (all devices when -1) to the system.
  void release_cached_locked(int index) {
    for (auto& [key, bucket] : free_) {
      if (index >= 0 && key.first != index) continue;
      for (void* p : bucket.parked) return_to_system(p, key.second, key.first);
      stats_[key.first].cached_bytes -= key.second * bucket.parked.size();
      bucket.owned -= bucket.parked.size();
      bucket.parked.clear();
    }
  }

  DeviceType type_;
  std::mutex mutex_;
  std::map<std::pair<int, size_t>, Bucket> free_;
  std::map<int, AllocatorStats> stats_;  // by device index
  // Graph pools: each one's buckets by size, the pool of every block allocated in one, and
  // the pool that takes a capturing device's allocations.
  std::map<int, std::map<size_t, Bucket>> pools_;
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

// The first number in `path` after `key` (the whole file when `key` is empty); empty when
// the file or the key is missing or the value is not a number ("max").
std::optional<size_t> read_number(const char* path, const std::string& key = "") {
  std::ifstream in(path);
  std::string word;
  while (in >> word) {
    if (!key.empty() && word != key) continue;
    if (!key.empty() && !(in >> word)) return std::nullopt;
    char* end = nullptr;
    const unsigned long long value = std::strtoull(word.c_str(), &end, 10);
    if (end == word.c_str() || *end != '\0') return std::nullopt;
    return static_cast<size_t>(value);
  }
  return std::nullopt;
}

std::optional<size_t> host_memory_available() {
  std::optional<size_t> available;
  const auto least = [&](std::optional<size_t> bytes) {
    if (bytes) available = available ? std::min(*available, *bytes) : *bytes;
  };
  if (const auto kib = read_number("/proc/meminfo", "MemAvailable:")) least(*kib * 1024);
  // cgroup v2, then v1: the limit less what the group already uses.
  for (const auto& [limit_path, usage_path] :
       {std::pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
        std::pair{"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                  "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const auto limit = read_number(limit_path), usage = read_number(usage_path);
    if (limit && usage) least(*limit > *usage ? *limit - *usage : 0);
  }
  rlimit as{};
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
    const auto pages = read_number("/proc/self/statm");
    const size_t used = pages ? *pages * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
    least(as.rlim_cur > used ? as.rlim_cur - used : 0);
  }
  return available;
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
std::optional<size_t> available_memory(Device device) {
  std::optional<size_t> free;
  if (device.is_cpu()) {
    free = host_memory_available();
  } else {
    const DeviceBackend& backend = device_backend(device.type, "available_memory");
    if (backend.memory_info && device.index >= 0 && device.index < backend.device_count()) {
      size_t bytes = 0, total = 0;
      backend.memory_info(device.index, &bytes, &total);
      free = bytes;
    }
  }
  if (!free) return std::nullopt;
  return *free + allocator(device.type).cached_bytes(device.index);
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
