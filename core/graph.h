// Device graphs: a device's work captured once and replayed, one launch for a whole step.
//
//   DeviceGraph step = DeviceGraph::capture(device, [&] { run_step(); });
//   for (...) { fill_inputs(); step.replay(); read_outputs(); }
//
// While `fn` runs under capture, the device executes nothing: every kernel, copy between
// device buffers and cuBLAS call it queues is recorded, and each replay runs the record
// again on the device's stream (CUDA: cudaStreamBeginCapture in relaxed mode,
// cudaGraphInstantiate, cudaGraphLaunch). The host code of `fn` runs once, at capture.
//
// What that asks of `fn` and of its caller (as for any captured stream):
//   - No copy between the host and the device, and so no read of a device value, inside
//     `fn`: both are errors naming the graph (Tensor.to, item, …), raised at capture.
//   - Its launch arguments are frozen. A value that changes from step to step lives in a
//     replay value (replay_value below): device memory that a host function refreshes
//     before each replay, which the kernels read. The optimizers' step counts, bias
//     corrections and learning rate, and the dropout streams' Philox offsets, travel that
//     way; so each replay advances the optimizers and the generators as an eager step would.
//   - Its inputs and outputs are fixed buffers: tensors made before the capture and read by
//     `fn` (the batch) must stay alive, and the caller writes each step's input into them;
//     tensors made inside `fn` (the loss, the gradients) keep their memory, which each
//     replay overwrites.
//   - Memory allocated inside `fn` comes from the graph's own pool in the caching allocator:
//     blocks freed during the capture are handed only to later requests of the same capture
//     (the replay reuses them in the same order), and no block of the pool goes to anyone
//     else while the graph lives.
//   - Host state that `fn` changes (the autograd graph, p.grad()) is what the capture left;
//     the device values of those tensors are those of the last replay.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "polyak/core/dtype.h"

namespace polyak {

class Generator;

class DeviceGraph {
 public:
  DeviceGraph();
  ~DeviceGraph();
  DeviceGraph(DeviceGraph&&) noexcept;
  DeviceGraph& operator=(DeviceGraph&&) noexcept;
  DeviceGraph(const DeviceGraph&) = delete;
  DeviceGraph& operator=(const DeviceGraph&) = delete;

  // Captures the work `fn` queues on `device` (not the CPU; its backend must support
  // graphs). Throws naming `fn`'s failure, after undoing the capture, when `fn` throws; one
  // capture per device at a time.
  static DeviceGraph capture(Device device, const std::function<void()>& fn);

  // Refreshes the replay values, then queues the captured work on the device; returns
  // without waiting for it.
  void replay();

  bool defined() const { return state_ != nullptr; }
  Device device() const;
  // Replays so far, and bytes of replay values copied before each.
  int64_t replays() const;
  size_t replay_value_bytes() const;

  struct State;  // core/graph.cpp

 private:
  std::unique_ptr<State> state_;
};

// Whether `device` is capturing a graph now.
bool is_capturing(Device device);

// During a capture on `device`: `bytes` (≤ 256) of device memory, 16-byte aligned, that
// `refresh` fills on the host (through the pointer it is given) before every replay, in the
// order the values were asked for. Returns the device address for a kernel to read.
const void* replay_value(Device device, size_t bytes, std::function<void(void*)> refresh);

// During a capture on `device`: `fn` runs on the host before every replay, in order with
// the refreshes of the replay values (state a replay advances, such as step counts).
void before_replay(Device device, std::function<void()> fn);

// During a capture on `device`: the draw at block `first` of `gen`, which the capture has
// just advanced, becomes block *base + delta at each replay, where *base (the returned
// device address) is the generator's offset when the replay starts, and `gen` moves on by as
// many blocks as the capture drew from it. `gen` must outlive the graph. Outside a capture
// *delta = first and the result is null.
const uint64_t* replay_offset(Device device, Generator& gen, uint64_t first, uint64_t* delta);

}  // namespace polyak
