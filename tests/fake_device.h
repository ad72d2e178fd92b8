// A fake device for tests: a backend registered as DeviceType::ext whose "device" memory is
// host memory and whose kernels copy their operands into CPU tensors, run the CPU ops and
// copy the results back. It stands in for a GPU on machines without one, so that what sits
// between an op and a device (core's kernel table, the dispatch in ops, the errors, where
// optimizer state lives) is tested everywhere. Its kernels compute in f32, like CUDA's.
//
// Its kernel groups (core/kernels_*.h) are CUDA's own: the bodies and drivers of
// cuda/kernels/*.h, run on the host by HostExec (host_exec.h). So a test on this device
// runs the CUDA kernels' logic through the ops' device branches, on any machine.
//
//   const Device dev = testing::fake_device();   // ext:0 (ext:1 is a second one)
//   Tensor x = Tensor::ones({3}).to(dev);         // x.data<float>() throws: not on the CPU
//   Tensor y = exp(x);                            // runs the fake's unary kernel
#pragma once

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <span>
#include <string>

#include "host_exec.h"
#include "polyak/core/backend.h"
#include "polyak/core/bf16.h"
#include "polyak/core/error.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/attention.h"
#include "polyak/cuda/kernels/nn.h"
#include "polyak/cuda/kernels/optim.h"
#include "polyak/cuda/kernels/random.h"
#include "polyak/cuda/kernels/shape.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/matmul.h"
#include "polyak/ops/reduce.h"

namespace polyak::testing {
namespace fake {

// Kernel calls by name, so that a test can see that an op reached the device.
inline std::map<std::string, int>& calls() {
  static std::map<std::string, int> counts;
  return counts;
}
inline void count(const char* kernel) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  ++calls()[kernel];
}

inline void check(const char* fn, const char* arg, const Tensor& t, const Tensor& ref) {
  POLYAK_CHECK(t.device().type == DeviceType::ext, fn, ": ", arg, " is on ", t.device(),
               ", expected an ext device");
  POLYAK_CHECK(t.device() == ref.device(), fn, ": ", arg, " is on ", t.device(), ", expected ",
               ref.device());
  POLYAK_CHECK(t.dtype() == DType::f32, fn, ": ", arg, " is ", t.dtype(), ", expected f32");
}

// A CPU copy of a fake-device tensor (its memory is host memory).
inline Tensor host(const Tensor& t) {
  Tensor h = Tensor::empty(t.shape(), t.dtype());
  std::memcpy(h.raw_data(), t.raw_data(), t.nbytes());
  return h;
}
// Writes the CPU tensor `h` into the fake-device tensor `out` (same number of elements).
inline void store(Tensor& out, const Tensor& h) {
  POLYAK_CHECK(h.numel() == out.numel(), "fake: result has ", h.numel(), " elements, expected ",
               out.numel());
  std::memcpy(out.raw_data(), h.raw_data(), out.nbytes());
}

inline Tensor apply(BinaryOp op, const Tensor& a, const Tensor& b) {
  switch (op) {
    case BinaryOp::add:
      return add(a, b);
    case BinaryOp::sub:
      return sub(a, b);
    case BinaryOp::mul:
      return mul(a, b);
    case BinaryOp::div:
      return div(a, b);
  }
  return Tensor();
}

inline Tensor apply(UnaryOp op, UnaryParams p, const Tensor& x) {
  switch (op) {
    case UnaryOp::neg:
      return neg(x);
    case UnaryOp::exp:
      return exp(x);
    case UnaryOp::log:
      return log(x);
    case UnaryOp::sqrt:
      return sqrt(x);
    case UnaryOp::square:
      return square(x);
    case UnaryOp::abs:
      return abs(x);
    case UnaryOp::tanh:
      return tanh(x);
    case UnaryOp::sigmoid:
      return sigmoid(x);
    case UnaryOp::relu:
      return relu(x);
    case UnaryOp::gelu:
      return gelu(x);
    case UnaryOp::silu:
      return silu(x);
    case UnaryOp::pow:
      return pow(x, p.a);
    case UnaryOp::elu:
      return elu(x, p.a);
    case UnaryOp::clamp:
      return clamp(x, p.a, p.b);
  }
  return Tensor();
}

inline void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  count("binary");
  check("fake::binary", "a", a, a);
  check("fake::binary", "b", b, a);
  check("fake::binary", "out", out, a);
  const int64_t n = a.numel(), nb = b.numel();
  POLYAK_CHECK(nb > 0 && n % nb == 0, "fake::binary: b has shape ", b.shape(),
               ", expected a trailing part of a's shape ", a.shape());
  run_or_record(a.device().index, [=]() mutable {
    store(out, apply(op, host(a).reshape({n / nb, nb}), host(b).reshape({nb})));
  });
}

inline void binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_first, Tensor& out) {
  count("binary_scalar");
  check("fake::binary_scalar", "a", a, a);
  check("fake::binary_scalar", "out", out, a);
  run_or_record(a.device().index, [=]() mutable {
    const Tensor h = host(a);
    Tensor r;
    switch (op) {
      case BinaryOp::add:
        r = add(h, s);
        break;
      case BinaryOp::mul:
        r = mul(h, s);
        break;
      case BinaryOp::sub:
        r = scalar_first ? rsub(s, h) : add(h, -s);
        break;
      case BinaryOp::div:
        r = scalar_first ? rdiv(s, h) : div(h, Tensor::scalar(s));
        break;
    }
    store(out, r);
  });
}

inline void unary(UnaryOp op, UnaryParams p, const Tensor& x, Tensor& out) {
  count("unary");
  check("fake::unary", "x", x, x);
  check("fake::unary", "out", out, x);
  run_or_record(x.device().index, [=]() mutable { store(out, apply(op, p, host(x))); });
}

// dx = dy · f'(x) through the CPU op's own backward (kernels run under the engine's no-grad
// mode, so grad mode is switched back on for this one graph).
inline void unary_backward(UnaryOp op, UnaryParams p, const Tensor& x, const Tensor& dy,
                           Tensor& dx) {
  count("unary_backward");
  check("fake::unary_backward", "x", x, x);
  check("fake::unary_backward", "dy", dy, x);
  check("fake::unary_backward", "dx", dx, x);
  run_or_record(x.device().index, [=]() mutable {
    const bool was = GradMode::enabled();
    GradMode::set_enabled(true);
    Tensor leaf = host(x).requires_grad_();
    apply(op, p, leaf).backward(host(dy));
    GradMode::set_enabled(was);
    store(dx, leaf.grad());
  });
}

inline void sum_rows(const Tensor& x, int64_t rows, int64_t cols, Tensor& out) {
  count("sum_rows");
  check("fake::sum_rows", "x", x, x);
  check("fake::sum_rows", "out", out, x);
  run_or_record(x.device().index, [=]() mutable {
    store(out, sum(host(x).reshape({rows, cols}), 0));
  });
}

inline void sum_all(const Tensor& x, Tensor& out) {
  count("sum_all");
  check("fake::sum_all", "x", x, x);
  check("fake::sum_all", "out", out, x);
  run_or_record(x.device().index, [=]() mutable { store(out, sum(host(x))); });
}

// A GEMM operand's CPU copy, flat; rounded to bf16 (as the CUDA side does) when `bf16`.
inline Tensor host_operand(const Tensor& t, bool bf16) {
  Tensor h = host(t).reshape({t.numel()});
  if (bf16)
    for (float& v : std::span(h.data<float>(), static_cast<size_t>(h.numel()))) v = round_bf16(v);
  return h;
}

inline void gemm_now(const Tensor& a, const Tensor& b, Tensor& out, const GemmArgs& g);
// Under bf16 the CPU's f32 matmul of the rounded operands: what cuBLAS computes from bf16
// inputs with f32 accumulation, up to the order of the sums.
inline void gemm(const Tensor& a, const Tensor& b, Tensor& out, const GemmArgs& g) {
  count("gemm");
  check("fake::gemm", "a", a, a);
  check("fake::gemm", "b", b, a);
  check("fake::gemm", "out", out, a);
  run_or_record(a.device().index, [=]() mutable { gemm_now(a, b, out, g); });
}
inline void gemm_now(const Tensor& a, const Tensor& b, Tensor& out, const GemmArgs& g) {
  const bool bf16 = g.precision == Precision::bf16;
  const Tensor ha = host_operand(a, bf16), hb = host_operand(b, bf16);
  Tensor ho = host(out).reshape({out.numel()});
  for (int64_t i = 0; i < g.batch; ++i) {
    const Tensor ai = ha.narrow0(i * g.a_stride, i * g.a_stride + g.m * g.k)
                          .reshape(g.trans_a ? Shape{g.k, g.m} : Shape{g.m, g.k});
    const Tensor bi = hb.narrow0(i * g.b_stride, i * g.b_stride + g.k * g.n)
                          .reshape(g.trans_b ? Shape{g.n, g.k} : Shape{g.k, g.n});
    Tensor oi = ho.narrow0(i * g.out_stride, i * g.out_stride + g.m * g.n);
    Tensor product = mul(matmul(ai, bi, g.trans_a, g.trans_b), static_cast<double>(g.alpha));
    product = product.reshape({g.m * g.n});
    oi.copy_(g.beta == 0.0f ? product : add(product, mul(oi, static_cast<double>(g.beta))));
  }
  store(out, ho);
}

inline void* allocate(size_t bytes, int) {
  void* p = std::aligned_alloc(64, bytes);
  if (!p) fail("fake::allocate: out of memory requesting ", bytes, " bytes");
  return p;
}
inline void deallocate(void* p, size_t, int) {
  std::free(p);
}
// Copies to the host are counted as "to_host": on a real device each one waits for the
// device's queued work, so a test can check that a training step makes none.
inline void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (dst_dev.is_cpu() && !src_dev.is_cpu()) count("to_host");
  if (!dst_dev.is_cpu() && src_dev.is_cpu()) count("from_host");
  if (bytes == 0) return;
  if (!dst_dev.is_cpu() && !src_dev.is_cpu()) {  // between device buffers: a capture records it
    run_or_record(dst_dev.index, [=] { std::memcpy(dst, src, bytes); });
  } else {
    std::memcpy(dst, src, bytes);
  }
}
inline void memset_zero(void* p, size_t bytes, int index) {
  if (bytes > 0) run_or_record(index, [=] { std::memset(p, 0, bytes); });
}

// Graphs: the launches recorded between capture_begin and capture_end (host_exec.h).
inline void capture_begin(int index) {
  count("capture_begin");
  std::lock_guard<std::mutex> lock(recording_mutex());
  POLYAK_CHECK(!recording().contains(index), "fake::capture_begin: ext:", index,
               " is capturing already");
  recording()[index] = new Launches();
}
inline void* capture_end(int index, bool discard) {
  Launches* launches;
  {
    std::lock_guard<std::mutex> lock(recording_mutex());
    launches = recording().at(index);
    recording().erase(index);
  }
  if (!discard) return launches;
  delete launches;
  return nullptr;
}
inline void graph_launch(void* graph, int) {
  count("graph_launch");
  for (const auto& launch : *static_cast<Launches*>(graph)) launch();
}
inline void graph_destroy(void* graph, int) {
  delete static_cast<Launches*>(graph);
}
inline int device_count() {
  return 2;
}
inline void synchronize(int) {}

// The kernel groups: CUDA's bodies and drivers on the host.
inline const NnKernels nn_table = kernels::nn_kernels<HostExec>();
inline const RandomKernels random_table = kernels::random_kernels<HostExec>();
inline const ShapeKernels shape_table = kernels::shape_kernels<HostExec>();
inline const AttentionKernels attention_table = kernels::attention_kernels<HostExec>();
inline const OptimKernels optim_table = kernels::optim_kernels<HostExec>();

}  // namespace fake

// Registers the fake backend (once) and returns its device `index` (0 or 1).
inline Device fake_device(int index = 0) {
  static const DeviceBackend backend{.name = "fake",
                                     .kernel_dtype = DType::f32,
                                     .allocate = fake::allocate,
                                     .deallocate = fake::deallocate,
                                     .copy = fake::copy,
                                     .memset_zero = fake::memset_zero,
                                     .device_count = fake::device_count,
                                     .synchronize = fake::synchronize,
                                     .binary = fake::binary,
                                     .binary_scalar = fake::binary_scalar,
                                     .unary = fake::unary,
                                     .unary_backward = fake::unary_backward,
                                     .sum_rows = fake::sum_rows,
                                     .sum_all = fake::sum_all,
                                     .gemm = fake::gemm,
                                     .nn = &fake::nn_table,
                                     .random = &fake::random_table,
                                     .shape = &fake::shape_table,
                                     .attention = &fake::attention_table,
                                     .optim = &fake::optim_table,
                                     .capture_begin = fake::capture_begin,
                                     .capture_end = fake::capture_end,
                                     .graph_launch = fake::graph_launch,
                                     .graph_destroy = fake::graph_destroy};
  static const bool registered = (register_device_backend(DeviceType::ext, &backend), true);
  (void)registered;
  return Device::ext(index);
}

}  // namespace polyak::testing
