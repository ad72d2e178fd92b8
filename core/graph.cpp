// Device graphs (see graph.h): the capture's bookkeeping on the host — the allocator's pool,
// the replay values and the generators a capture drew from.
#include "polyak/core/graph.h"

#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "polyak/core/backend.h"
#include "polyak/core/error.h"
#include "polyak/core/rng.h"
#include "polyak/core/storage.h"

namespace polyak {

namespace {
constexpr size_t kArenaBytes = 64 * 1024;  // replay values of one arena
constexpr size_t kMaxValueBytes = 256;
constexpr size_t kAlign = 16;

// A generator the capture drew from: its offset when the capture first drew, the device
// word that holds its offset at each replay, and the blocks one replay draws.
struct DrawnGenerator {
  Generator* gen;
  uint64_t start;
  uint64_t* base;  // device address
  uint64_t blocks = 0;
};
}  // namespace

struct DeviceGraph::State {
  Device device;
  const DeviceBackend* backend = nullptr;
  void* graph = nullptr;
  int pool = 0;
  int64_t replays = 0;
  // Replay values: arenas of device memory with their host images, and the refreshers in
  // the order they were asked for, each with the host address it fills.
  std::vector<std::shared_ptr<Storage>> arenas;
  std::vector<std::vector<unsigned char>> images;
  size_t used = 0;  // bytes of the last arena
  std::vector<std::pair<std::function<void(void*)>, void*>> refreshers;
  std::vector<DrawnGenerator> generators;

  ~State() {
    if (graph) backend->graph_destroy(graph, device.index);
    if (pool) detail::release_graph_pool(device, pool);
  }

  void* value(size_t bytes, std::function<void(void*)> refresh) {
    bytes = (bytes + kAlign - 1) / kAlign * kAlign;
    if (arenas.empty() || used + bytes > kArenaBytes) {
      // From the graph's pool, like everything else the capture allocates; the copies
      // before each replay write it.
      arenas.push_back(std::make_shared<Storage>(kArenaBytes, device));
      images.emplace_back(kArenaBytes);
      used = 0;
    }
    void* device_address = static_cast<unsigned char*>(arenas.back()->data()) + used;
    refreshers.emplace_back(std::move(refresh), images.back().data() + used);
    used += bytes;
    return device_address;
  }
};

namespace {

std::pair<int, int> key(Device device) {
  return {static_cast<int>(device.type), device.index};
}

std::mutex& captures_mutex() {
  static std::mutex m;
  return m;
}
// The state of each device's capture in progress, by (device type, index).
std::map<std::pair<int, int>, DeviceGraph::State*>& captures() {
  static auto* m = new std::map<std::pair<int, int>, DeviceGraph::State*>();
  return *m;
}

}  // namespace

DeviceGraph::DeviceGraph() = default;
DeviceGraph::~DeviceGraph() = default;
DeviceGraph::DeviceGraph(DeviceGraph&&) noexcept = default;
DeviceGraph& DeviceGraph::operator=(DeviceGraph&&) noexcept = default;

DeviceGraph DeviceGraph::capture(Device device, const std::function<void()>& fn) {
  constexpr const char* name = "DeviceGraph::capture";
  POLYAK_CHECK(!device.is_cpu(), name,
               ": device is cpu, expected a device whose work can be captured (cuda)");
  check_device_available(device, name);
  const DeviceBackend& backend = device_backend(device.type, name);
  POLYAK_CHECK(
      backend.capture_begin && backend.capture_end && backend.graph_launch && backend.graph_destroy,
      name, ": the ", backend.name, " backend of ", device,
      " cannot capture graphs, expected a backend with graph support");
  DeviceGraph graph;
  graph.state_ = std::make_unique<State>();
  State& s = *graph.state_;
  s.device = device;
  s.backend = &backend;
  {
    std::lock_guard<std::mutex> lock(captures_mutex());
    POLYAK_CHECK(!captures().contains(key(device)), name, ": ", device,
                 " is capturing another graph, expected one capture per device at a time");
    captures()[key(device)] = &s;
  }
  s.pool = detail::begin_graph_pool(device);
  auto finish = [&](bool discard) {
    detail::end_graph_pool(device);
    {
      std::lock_guard<std::mutex> lock(captures_mutex());
      captures().erase(key(device));
    }
    // The capture ran nothing: each generator goes back to where it stood, and a replay
    // moves it on by what the capture drew.
    for (DrawnGenerator& g : s.generators) {
      g.blocks = g.gen->offset() - g.start;
      g.gen->set_offset(g.start);
    }
    return backend.capture_end(device.index, discard);
  };
  backend.capture_begin(device.index);
  try {
    fn();
  } catch (...) {
    (void)finish(true);
    throw;
  }
  s.graph = finish(false);
  POLYAK_CHECK(s.graph != nullptr, name, ": the ", backend.name, " backend returned no graph for ",
               device);
  return graph;
}

void DeviceGraph::replay() {
  POLYAK_CHECK(state_, "DeviceGraph::replay: the graph is empty, expected one from capture()");
  State& s = *state_;
  for (auto& [refresh, host] : s.refreshers) refresh(host);
  for (size_t a = 0; a < s.arenas.size(); ++a) {
    const size_t bytes = a + 1 == s.arenas.size() ? s.used : kArenaBytes;
    s.backend->copy(s.arenas[a]->data(), s.device, s.images[a].data(), Device::cpu(), bytes);
  }
  s.backend->graph_launch(s.graph, s.device.index);
  ++s.replays;
}

Device DeviceGraph::device() const {
  return state_ ? state_->device : Device::cpu();
}
int64_t DeviceGraph::replays() const {
  return state_ ? state_->replays : 0;
}
size_t DeviceGraph::replay_value_bytes() const {
  if (!state_ || state_->arenas.empty()) return 0;
  return (state_->arenas.size() - 1) * kArenaBytes + state_->used;
}

bool is_capturing(Device device) {
  if (device.is_cpu()) return false;
  std::lock_guard<std::mutex> lock(captures_mutex());
  return captures().contains(key(device));
}

namespace {
DeviceGraph::State& capture_of(Device device, const char* fn) {
  std::lock_guard<std::mutex> lock(captures_mutex());
  const auto it = captures().find(key(device));
  POLYAK_CHECK(it != captures().end(), fn, ": ", device,
               " is not capturing a graph, expected a call inside DeviceGraph::capture");
  return *it->second;
}
}  // namespace

const void* replay_value(Device device, size_t bytes, std::function<void(void*)> refresh) {
  POLYAK_CHECK(bytes > 0 && bytes <= kMaxValueBytes, "replay_value: bytes = ", bytes,
               ", expected 1 to ", kMaxValueBytes);
  return capture_of(device, "replay_value").value(bytes, std::move(refresh));
}

void before_replay(Device device, std::function<void()> fn) {
  capture_of(device, "before_replay")
      .refreshers.emplace_back([fn = std::move(fn)](void*) { fn(); }, nullptr);
}

const uint64_t* replay_offset(Device device, Generator& gen, uint64_t first, uint64_t* delta) {
  if (!is_capturing(device)) {
    *delta = first;
    return nullptr;
  }
  DeviceGraph::State& s = capture_of(device, "replay_offset");
  DrawnGenerator* drawn = nullptr;
  for (DrawnGenerator& g : s.generators)
    if (g.gen == &gen) drawn = &g;
  if (!drawn) {
    // First draw of this capture from gen: it stood at `first` before it.
    DrawnGenerator g{&gen, first, nullptr};
    const size_t slot = s.generators.size();
    g.base = static_cast<uint64_t*>(s.value(sizeof(uint64_t), [&s, slot](void* host) {
      DrawnGenerator& d = s.generators[slot];
      const uint64_t base = d.gen->offset();
      std::memcpy(host, &base, sizeof base);
      d.gen->set_offset(base + d.blocks);
    }));
    s.generators.push_back(g);
    drawn = &s.generators.back();
  }
  *delta = first - drawn->start;
  return drawn->base;
}

}  // namespace polyak
