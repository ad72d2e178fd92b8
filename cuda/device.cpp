// Device discovery, allocation and copies, and the DeviceBackend table that core and ops
// use for cuda tensors (core/backend.h). Allocation is plain cudaMalloc/cudaFree; the caching lives
// in core's allocator in front of it, which calls allocate() only when its free lists have no block
// of the rounded size, and deallocate() only from empty_cache().
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "polyak/cuda/common.h"
#include "polyak/cuda/cuda.h"

namespace polyak::cuda {

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // no driver or no device: report 0, never throw
      n = 0;
    }
    return n;
  }();
  return count;
}

bool is_available() {
  return device_count() > 0;
}

// All work of a device runs on one stream of its own, created on first use with
// cudaStreamNonBlocking (so it never waits for work other libraries put on the legacy default
// stream): every kernel, copy and cuBLAS call of the device is ordered with every other, with
// no host synchronisation between them. That ordering is what makes core's cache safe: a block
// freed and handed at once to the next tensor is written only by work queued after the last
// reader of its old contents. Reads to the host wait for this stream alone. More streams (to
// overlap copies with compute) would need the cache to record an event per freed block.
// The streams live as long as the process (storages may be freed during static destruction).
cudaStream_t stream(int index) {
  static const int count = device_count();
  static std::atomic<cudaStream_t>* streams =
      new std::atomic<cudaStream_t>[static_cast<size_t>(std::max(count, 1))]();
  static std::mutex creating;
  if (index < 0 || index >= count)
    fail("cuda::stream: device cuda:", index, " does not exist (", count, " CUDA devices present)");
  std::atomic<cudaStream_t>& slot = streams[index];
  cudaStream_t s = slot.load(std::memory_order_acquire);
  if (s != nullptr) return s;
  std::lock_guard<std::mutex> lock(creating);
  s = slot.load(std::memory_order_relaxed);
  if (s == nullptr) {
    DeviceGuard guard(index);
    POLYAK_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    slot.store(s, std::memory_order_release);
  }
  return s;
}

namespace {

void check_index(const char* fn, int index) {
  const int n = device_count();
  if (n == 0) fail(fn, ": no CUDA device is present (cuda:", index, " requested)");
  if (index < 0 || index >= n)
    fail(fn, ": device cuda:", index, " does not exist (", n, " CUDA devices present)");
}

void* allocate(size_t bytes, int index) {
  check_index("cuda::allocate", index);
  if (bytes == 0) return nullptr;
  DeviceGuard guard(index);
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, bytes);
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    (void)cudaMemGetInfo(&free_bytes, &total_bytes);
    fail("cuda::allocate: out of memory allocating ", bytes, " bytes on cuda:", index, " (",
         free_bytes, " of ", total_bytes, " bytes free)");
  }
  POLYAK_CUDA_CHECK(status);
  return ptr;
}

// cudaFree waits for the device to finish its work, so a block is never freed while a
// kernel still uses it.
void deallocate(void* ptr, size_t /*bytes*/, int index) {
  if (ptr == nullptr) return;
  DeviceGuard guard(index);
  POLYAK_CUDA_CHECK(cudaFree(ptr));
}

void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, bytes);
  } else if (src_dev.is_cpu()) {
    check_index("cuda::copy", dst_dev.index);
    DeviceGuard guard(dst_dev.index);
    // From pageable memory the call returns once the source has been staged, so the caller
    // may free it at once; the copy itself is ordered on the stream.
    POLYAK_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream(dst_dev.index)));
  } else if (dst_dev.is_cpu()) {
    check_index("cuda::copy", src_dev.index);
    DeviceGuard guard(src_dev.index);
    POLYAK_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream(src_dev.index)));
    POLYAK_CUDA_CHECK(cudaStreamSynchronize(stream(src_dev.index)));
  } else if (dst_dev.index == src_dev.index) {
    check_index("cuda::copy", dst_dev.index);
    DeviceGuard guard(dst_dev.index);
    POLYAK_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream(dst_dev.index)));
  } else {
    check_index("cuda::copy", dst_dev.index);
    check_index("cuda::copy", src_dev.index);
    // The source's stream is not ordered with the destination's: wait for its writes first.
    POLYAK_CUDA_CHECK(cudaStreamSynchronize(stream(src_dev.index)));
    DeviceGuard guard(dst_dev.index);
    POLYAK_CUDA_CHECK(
        cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, bytes, stream(dst_dev.index)));
  }
}

void memset_zero(void* ptr, size_t bytes, int index) {
  if (bytes == 0) return;
  check_index("cuda::memset_zero", index);
  DeviceGuard guard(index);
  POLYAK_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, stream(index)));
}

void memory_info(int index, size_t* free, size_t* total) {
  check_index("cuda::memory_info", index);
  DeviceGuard guard(index);
  POLYAK_CUDA_CHECK(cudaMemGetInfo(free, total));
}

void synchronize(int index) {
  check_index("cuda::synchronize", index);
  DeviceGuard guard(index);
  POLYAK_CUDA_CHECK(cudaStreamSynchronize(stream(index)));
}

// Graphs: the device's stream captured in relaxed mode (cudaMalloc stays allowed, for the
// allocator's graph pool), the graph instantiated once and launched on the same stream.
void capture_begin(int index) {
  check_index("cuda::capture_begin", index);
  DeviceGuard guard(index);
  POLYAK_CUDA_CHECK(cudaStreamBeginCapture(stream(index), cudaStreamCaptureModeRelaxed));
}

void* capture_end(int index, bool discard) {
  DeviceGuard guard(index);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream(index), &graph);
  if (discard) {
    (void)cudaGetLastError();  // the capture failed already; its error is the one reported
    if (graph) (void)cudaGraphDestroy(graph);
    return nullptr;
  }
  POLYAK_CUDA_CHECK(ended);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  POLYAK_CUDA_CHECK(made);
  return exec;
}

void graph_launch(void* graph, int index) {
  DeviceGuard guard(index);
  POLYAK_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), stream(index)));
}

void graph_destroy(void* graph, int index) {
  DeviceGuard guard(index);
  (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph));
}

}  // namespace

const DeviceBackend& device_backend() {
  static const DeviceBackend backend{.name = "cuda",
                                     .kernel_dtype = DType::f32,
                                     .allocate = &allocate,
                                     .deallocate = &deallocate,
                                     .copy = &copy,
                                     .memset_zero = &memset_zero,
                                     .device_count = &polyak::cuda::device_count,
                                     .synchronize = &synchronize,
                                     .memory_info = &memory_info,
                                     .binary = &binary,
                                     .binary_scalar = &binary_scalar,
                                     .unary = &unary,
                                     .unary_backward = &unary_backward,
                                     .sum_rows = &sum_rows,
                                     .sum_all = &sum_all,
                                     .gemm = &gemm,
                                     .nn = &nn_kernels(),
                                     .random = &random_kernels(),
                                     .shape = &shape_kernels(),
                                     .attention = &attention_kernels(),
                                     .optim = &optim_kernels(),
                                     .capture_begin = &capture_begin,
                                     .capture_end = &capture_end,
                                     .graph_launch = &graph_launch,
                                     .graph_destroy = &graph_destroy};
  return backend;
}

// ---- argument checks shared by the kernels (common.h) ----------------------------------

void check_f32_cuda(const char* fn, const char* arg, const Tensor& t) {
  if (!t.defined()) fail(fn, ": ", arg, " is undefined, expected an f32 tensor on cuda");
  if (!t.device().is_cuda()) fail(fn, ": ", arg, " is on ", t.device(), ", expected a cuda device");
  if (t.dtype() != DType::f32)
    fail(fn, ": ", arg, " has dtype ", t.dtype(), ", expected f32 (the CUDA kernels are f32)");
}

void check_same_cuda_device(const char* fn, const char* arg, const Tensor& t, const char* ref_arg,
                            const Tensor& ref) {
  if (t.device() != ref.device())
    fail(fn, ": ", arg, " is on ", t.device(), " but ", ref_arg, " is on ", ref.device(),
         ", expected one device");
}

void check_numel(const char* fn, const char* arg, const Tensor& t, int64_t expected) {
  if (t.numel() != expected)
    fail(fn, ": ", arg, " has shape ", t.shape(), " (", t.numel(), " elements), expected ",
         expected, " elements");
}

}  // namespace polyak::cuda
