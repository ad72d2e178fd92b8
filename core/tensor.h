// Tensor: a handle to a contiguous, row-major block of f32, f64, i32 or i64 on one device.
//
// Copying a Tensor aliases it (like PyTorch). Views are made only where they are free:
// `reshape` and slicing along the first axis; everything else copies. Gradient metadata
// lives in a separate struct allocated only for tensors that take part in autograd.
#pragma once

#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "polyak/core/dtype.h"
#include "polyak/core/shape.h"
#include "polyak/core/storage.h"

namespace polyak {

class Node;
class Generator;
struct TensorImpl;

// A gradient hook sees the gradient reaching a tensor. Returning a defined tensor replaces
// that gradient (it must have the same shape); returning Tensor() keeps it.
class Tensor;
using GradHook = std::function<Tensor(const Tensor& grad)>;

class Tensor {
 public:
  Tensor() = default;  // undefined: holds nothing

  // ---- factories -------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu());
  // Standard normal / uniform [0, 1) from the counter-based generator `gen` (advances it).
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::f32);
  static Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::f32);
  // 0, 1, ..., n-1
  static Tensor arange(int64_t n, DType dtype = DType::f32);
  // A 1-D tensor holding `values`, or with `shape` (numel must match).
  static Tensor from(std::initializer_list<double> values, DType dtype = DType::f32);
  static Tensor from(const std::vector<double>& values, const Shape& shape,
                     DType dtype = DType::f32);
  static Tensor from(const std::vector<float>& values, const Shape& shape);
  // Integer data (token ids, targets): an i64 tensor, or i32 (or a float dtype) by `dtype`.
  static Tensor from_ints(const std::vector<int64_t>& values, const Shape& shape,
                          DType dtype = DType::i64);
  static Tensor scalar(double value, DType dtype = DType::f32);

  // ---- metadata --------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t dim() const { return shape().rank(); }
  int64_t size(int64_t axis) const;
  int64_t numel() const { return shape().numel(); }
  DType dtype() const;
  Device device() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * itemsize(dtype()); }
  // True when both handles alias the same storage and offset.
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }
  bool shares_storage(const Tensor& other) const;

  // ---- data ------------------------------------------------------------------------
  // Pointer to the first element, for host code: throws unless the dtype is T and the tensor
  // is on the CPU (copy it with .cpu() first). raw_data() is the unchecked pointer on any
  // device, for a backend's kernels.
  template <class T>
  T* data() const {
    check_data_access(dtype_of<T>());
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;
  // The value of a one-element tensor, converted to double (copies from a device).
  double item() const;
  // All elements converted to double (copies from a device): for tests and printing.
  std::vector<double> to_vector() const;

  // ---- conversion (explicit; copies) -----------------------------------------------
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor cpu() const { return to(Device::cpu()); }
  Tensor clone() const;  // differentiable copy

  // ---- views (share storage; differentiable) ---------------------------------------
  // One extent may be -1 (inferred).
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, end) along axis 0.
  Tensor narrow0(int64_t begin, int64_t end) const;
  Tensor operator[](int64_t i) const;  // row i along axis 0, rank reduced by one

  // ---- in-place, outside autograd (optimizers, initialisers) -----------------------
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  // Copies `src` (same shape and dtype; any device) into this tensor.
  Tensor& copy_(const Tensor& src);

  // ---- autograd --------------------------------------------------------------------
  bool requires_grad() const;
  // Marks a leaf as a parameter (or stops it being one); throws on a non-leaf.
  Tensor& requires_grad_(bool value = true);
  bool is_leaf() const;
  // The accumulated gradient of a leaf (or of a non-leaf after retain_grad()).
  Tensor grad() const;
  void set_grad(const Tensor& grad) const;
  void zero_grad() const;  // drops the gradient
  const std::shared_ptr<Node>& grad_fn() const;
  // Backpropagates from this tensor. A non-scalar needs an explicit `grad` of its shape.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  void retain_grad() const;
  void register_hook(GradHook hook) const;
  // Same data, cut from the graph.
  Tensor detach() const;
  // The AccumulateGrad sink of a leaf that requires grad (created on first use).
  std::shared_ptr<Node> grad_accumulator() const;
  // A name shown by export_dot and in error messages (e.g. a parameter's path).
  const std::string& name() const;
  Tensor& set_name(std::string name);

  // Internal: the op layer attaches the node that produced this tensor.
  void set_grad_fn(std::shared_ptr<Node> node) const;
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

 private:
  void check_data_access(DType requested) const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- grad mode ---------------------------------------------------------------------
class GradMode {
 public:
  static bool enabled();
  static void set_enabled(bool enabled);
};

// While alive, ops record no graph (thread-local).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// ---- checks shared by the ops --------------------------------------------------------
// Throws unless `t` is defined, of `dtype`... helpers used at op boundaries.
void check_defined(const char* fn, const char* arg, const Tensor& t);
void check_same_dtype(const char* fn, const char* arg_a, const Tensor& a, const char* arg_b,
                      const Tensor& b);
void check_same_device(const char* fn, const char* arg_a, const Tensor& a, const char* arg_b,
                       const Tensor& b);
void check_rank(const char* fn, const char* arg, const Tensor& t, int64_t rank,
                const char* expected_layout);
void check_cpu(const char* fn, const char* arg, const Tensor& t);
// Throws unless `t` has a floating dtype (f32, f64): the float ops reject integer tensors.
void check_floating(const char* fn, const char* arg, const Tensor& t);

}  // namespace polyak
