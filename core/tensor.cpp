#include "polyak/core/tensor.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <ostream>
#include <type_traits>

#include "polyak/core/autograd.h"
#include "polyak/core/graph.h"
#include "polyak/core/rng.h"
#include "polyak/core/tensor_impl.h"

namespace polyak {
namespace {

const std::string kEmptyName;

void check_shape(const char* fn, const Shape& shape) {
  for (int64_t d : shape)
    POLYAK_CHECK(d >= 0, fn, ": shape ", shape, " has a negative extent, expected sizes ≥ 0");
}

std::shared_ptr<TensorImpl> make_impl(const Shape& shape, DType dtype, Device device) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage =
      std::make_shared<Storage>(static_cast<size_t>(shape.numel()) * itemsize(dtype), device);
  impl->shape = shape;
  impl->dtype = dtype;
  return impl;
}

// A view sharing `src`'s storage.
Tensor make_view(const Tensor& src, const Shape& shape, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = src.impl()->storage;
  impl->shape = shape;
  impl->offset = offset;
  impl->dtype = src.dtype();
  return Tensor(impl);
}

// Copies `bytes` between devices through the backend of the side that is not the CPU;
// between two backends, through a host buffer.
void copy_bytes(const char* fn, void* dst, Device dst_dev, const void* src, Device src_dev,
                size_t bytes) {
  if (!dst_dev.is_cpu() && !src_dev.is_cpu() && dst_dev.type != src_dev.type) {
    std::vector<char> host(bytes);
    device_backend(src_dev.type, fn).copy(host.data(), Device::cpu(), src, src_dev, bytes);
    device_backend(dst_dev.type, fn).copy(dst, dst_dev, host.data(), Device::cpu(), bytes);
    return;
  }
  const Device side = dst_dev.is_cpu() ? src_dev : dst_dev;
  if ((dst_dev.is_cpu() || src_dev.is_cpu()) && is_capturing(side))
    fail(fn, ": copying ", bytes, " bytes from ", src_dev, " to ", dst_dev, " while ", side,
         " is capturing a graph, expected no copy between the host and the device inside a "
         "capture (write inputs into the graph's buffers before replay(), read outputs after)");
  device_backend(side.type, fn).copy(dst, dst_dev, src, src_dev, bytes);
}

// Throws unless `count` values fill `shape`.
void check_values(const char* fn, size_t count, const Shape& shape) {
  check_shape(fn, shape);
  POLYAK_CHECK(static_cast<int64_t>(count) == shape.numel(), fn, ": ", count, " values for shape ",
               shape, ", expected ", shape.numel());
}

template <class T>
void fill_values(Tensor& t, const std::vector<double>& values) {
  T* p = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = static_cast<T>(values[i]);
}

}  // namespace

// ---- factories -------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape("Tensor::empty", shape);
  return Tensor(make_impl(shape, dtype, device));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  check_shape("Tensor::zeros", shape);
  Tensor t = empty(shape, dtype, device);
  device_backend(device.type, "Tensor::zeros").memset_zero(t.raw_data(), t.nbytes(), device.index);
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  check_shape("Tensor::full", shape);
  if (!device.is_cpu()) {
    // In the kernels' dtype, filled on the device (zeros, then + value): no copy from the
    // host, so that a step (the loss's seed gradient is a full()) never waits on one.
    const DeviceBackend& backend = device_backend(device.type, "Tensor::full");
    if (dtype != backend.kernel_dtype || !backend.binary_scalar)
      return full(shape, value, dtype).to(device);
    Tensor t = zeros(shape, dtype, device);
    if (value != 0 && t.numel() > 0) backend.binary_scalar(BinaryOp::add, t, value, false, t);
    return t;
  }
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype) {
  check_shape("Tensor::randn", shape);
  POLYAK_CHECK(is_floating(dtype), "Tensor::randn: dtype is ", dtype, ", expected f32 or f64");
  Tensor t = empty(shape, dtype);
  int64_t n = t.numel();
  // Each block of four words gives two normals (Box–Muller on two pairs).
  uint64_t first = gen.advance(static_cast<uint64_t>((n + 1) / 2));
  dispatch(dtype, [&]<class T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; i += 2) {
      auto w = gen.block(first + static_cast<uint64_t>(i / 2));
      double r = std::sqrt(-2.0 * std::log(uint_to_unit(w[0])));
      double a = 2.0 * M_PI * uint_to_unit(w[1]);
      p[i] = static_cast<T>(r * std::cos(a));
      if (i + 1 < n) p[i + 1] = static_cast<T>(r * std::sin(a));
    }
  });
  return t;
}

Tensor Tensor::rand(const Shape& shape, Generator& gen, DType dtype) {
  check_shape("Tensor::rand", shape);
  POLYAK_CHECK(is_floating(dtype), "Tensor::rand: dtype is ", dtype, ", expected f32 or f64");
  Tensor t = empty(shape, dtype);
  int64_t n = t.numel();
  uint64_t first = gen.advance(static_cast<uint64_t>((n + 3) / 4));
  dispatch(dtype, [&]<class T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      auto w = gen.block(first + static_cast<uint64_t>(i / 4));
      p[i] = static_cast<T>(uint_to_unit(w[static_cast<size_t>(i % 4)]) - 1.0 / 4294967296.0);
    }
  });
  return t;
}

Tensor Tensor::arange(int64_t n, DType dtype) {
  POLYAK_CHECK(n >= 0, "Tensor::arange: n is ", n, ", expected n ≥ 0");
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<double>(i);
  return from(v, Shape{n}, dtype);
}

Tensor Tensor::from(std::initializer_list<double> values, DType dtype) {
  return from(std::vector<double>(values), Shape{static_cast<int64_t>(values.size())}, dtype);
}

Tensor Tensor::from(const std::vector<double>& values, const Shape& shape, DType dtype) {
  check_values("Tensor::from", values.size(), shape);
  Tensor t = empty(shape, dtype);
  dispatch_any(dtype, [&]<class T>() { fill_values<T>(t, values); });
  return t;
}

Tensor Tensor::from(const std::vector<float>& values, const Shape& shape) {
  check_values("Tensor::from", values.size(), shape);
  Tensor t = empty(shape, DType::f32);
  std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::from_ints(const std::vector<int64_t>& values, const Shape& shape, DType dtype) {
  check_values("Tensor::from_ints", values.size(), shape);
  Tensor t = empty(shape, dtype);
  dispatch_any(dtype, [&]<class T>() {
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size(); ++i) {
      if constexpr (std::is_same_v<T, int32_t>) {
        POLYAK_CHECK(values[i] >= std::numeric_limits<int32_t>::min() &&
                         values[i] <= std::numeric_limits<int32_t>::max(),
                     "Tensor::from_ints: value ", values[i], " at index ", i, " does not fit i32");
      }
      p[i] = static_cast<T>(values[i]);
    }
  });
  return t;
}

Tensor Tensor::scalar(double value, DType dtype) {
  return full(Shape{}, value, dtype);
}

// ---- metadata --------------------------------------------------------------------------

const Shape& Tensor::shape() const {
  POLYAK_CHECK(impl_, "Tensor::shape: the tensor is undefined, expected a defined tensor");
  return impl_->shape;
}

int64_t Tensor::size(int64_t axis) const {
  return shape()[normalize_axis("Tensor::size", axis, dim())];
}

DType Tensor::dtype() const {
  POLYAK_CHECK(impl_, "Tensor::dtype: the tensor is undefined, expected a defined tensor");
  return impl_->dtype;
}

Device Tensor::device() const {
  POLYAK_CHECK(impl_, "Tensor::device: the tensor is undefined, expected a defined tensor");
  return impl_->storage->device();
}

bool Tensor::shares_storage(const Tensor& other) const {
  return impl_ && other.impl_ && impl_->storage == other.impl_->storage;
}

void* Tensor::raw_data() const {
  POLYAK_CHECK(impl_, "Tensor::data: the tensor is undefined, expected a defined tensor");
  return static_cast<char*>(impl_->storage->data()) +
         impl_->offset * static_cast<int64_t>(itemsize(impl_->dtype));
}

void Tensor::check_data_access(DType requested) const {
  POLYAK_CHECK(impl_, "Tensor::data: the tensor is undefined, expected a defined tensor");
  POLYAK_CHECK(impl_->dtype == requested, "Tensor::data: the tensor is ", impl_->dtype,
               ", expected ", requested, " (the requested element type)");
  // A device pointer dereferenced on the host is a crash or garbage, never an answer.
  POLYAK_CHECK(impl_->storage->device().is_cpu(), "Tensor::data: the tensor is on ",
               impl_->storage->device(),
               ", expected cpu (host access needs a copy: t.cpu().data<T>(); device kernels take "
               "raw_data())");
}

double Tensor::item() const {
  POLYAK_CHECK(numel() == 1, "Tensor::item: the tensor has shape ", shape(),
               ", expected exactly one element");
  return to_vector()[0];
}

std::vector<double> Tensor::to_vector() const {
  Tensor c = device().is_cpu() ? *this : to(Device::cpu());
  std::vector<double> out(static_cast<size_t>(c.numel()));
  dispatch_any(c.dtype(), [&]<class T>() {
    const T* p = c.data<T>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(p[i]);
  });
  return out;
}

// ---- conversion ------------------------------------------------------------------------

Tensor Tensor::to(Device target) const {
  Device source = device();
  if (source == target) return *this;
  Tensor out = empty(shape(), dtype(), target);
  copy_bytes("Tensor::to", out.raw_data(), target, raw_data(), source, nbytes());
  if (GradMode::enabled() && requires_grad()) {
    record(out, "ToDeviceBackward", {*this},
           [source](const Tensor& g) -> std::vector<Tensor> { return {g.to(source)}; });
  }
  return out;
}

Tensor Tensor::to(DType target) const {
  if (dtype() == target) return *this;
  check_cpu("Tensor::to", "self", *this);
  Tensor out = empty(shape(), target);
  int64_t n = numel();
  dispatch_any(dtype(), [&]<class S>() {
    dispatch_any(target, [&]<class D>() {
      const S* src = data<S>();
      D* dst = out.data<D>();
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<D>(src[i]);
    });
  });
  DType source = dtype();
  if (is_floating(target))  // integers carry no gradient
    record(out, "ToDTypeBackward", {*this},
           [source](const Tensor& g) -> std::vector<Tensor> { return {g.to(source)}; });
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  copy_bytes("Tensor::clone", out.raw_data(), device(), raw_data(), device(), nbytes());
  record(out, "CloneBackward", {*this}, [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  return out;
}

// ---- views -----------------------------------------------------------------------------

Tensor Tensor::reshape(const Shape& target) const {
  std::vector<int64_t> dims = target.dims();
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == -1) {
      POLYAK_CHECK(infer < 0, "reshape: shape ", target,
                   " has more than one -1, expected at most one");
      infer = static_cast<int64_t>(i);
    } else {
      POLYAK_CHECK(dims[i] >= 0, "reshape: shape ", target,
                   " has a negative extent, expected sizes ≥ 0 or one -1");
      known *= dims[i];
    }
  }
  if (infer >= 0) {
    POLYAK_CHECK(known > 0 && numel() % known == 0, "reshape: cannot infer the -1 in ", target,
                 " for a tensor of shape ", shape(), " (", numel(), " elements)");
    dims[static_cast<size_t>(infer)] = numel() / known;
  }
  Shape resolved(dims);
  POLYAK_CHECK(resolved.numel() == numel(), "reshape: shape ", target, " has ", resolved.numel(),
               " elements, expected ", numel(), " to match the tensor's shape ", shape());
  Tensor out = make_view(*this, resolved, impl_->offset);
  Shape original = shape();
  record(out, "ReshapeBackward", {*this},
         [original](const Tensor& g) -> std::vector<Tensor> { return {g.reshape(original)}; });
  return out;
}

Tensor Tensor::narrow0(int64_t begin, int64_t end) const {
  POLYAK_CHECK(dim() >= 1, "narrow0: the tensor has shape ", shape(), ", expected rank ≥ 1");
  int64_t n = size(0);
  POLYAK_CHECK(0 <= begin && begin <= end && end <= n, "narrow0: rows [", begin, ", ", end,
               ") are out of range, expected 0 ≤ begin ≤ end ≤ ", n);
  Shape s = shape();
  s[0] = end - begin;
  int64_t row = shape().numel(1, dim());
  Tensor out = make_view(*this, s, impl_->offset + begin * row);
  Shape full_shape = shape();
  DType dt = dtype();
  record(out, "Narrow0Backward", {*this},
         [full_shape, dt, begin, end](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = Tensor::zeros(full_shape, dt, g.device());
           dx.narrow0(begin, end).copy_(g);
           return {dx};
         });
  return out;
}

Tensor Tensor::operator[](int64_t i) const {
  POLYAK_CHECK(dim() >= 1, "Tensor[]: the tensor has shape ", shape(), ", expected rank ≥ 1");
  POLYAK_CHECK(i >= 0 && i < size(0), "Tensor[]: index ", i, " is out of range, expected [0, ",
               size(0), ")");
  std::vector<int64_t> rest(shape().dims().begin() + 1, shape().dims().end());
  return narrow0(i, i + 1).reshape(Shape(rest));
}

// ---- in place --------------------------------------------------------------------------

Tensor& Tensor::fill_(double value) {
  if (!device().is_cpu()) {
    copy_(full(shape(), value, dtype()));
    return *this;
  }
  int64_t n = numel();
  dispatch_any(dtype(), [&]<class T>() {
    T* p = data<T>();
    T v = static_cast<T>(value);
    for (int64_t i = 0; i < n; ++i) p[i] = v;
  });
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_defined("copy_", "src", src);
  POLYAK_CHECK(src.shape() == shape(), "copy_: src has shape ", src.shape(), ", expected ",
               shape());
  check_same_dtype("copy_", "self", *this, "src", src);
  copy_bytes("copy_", raw_data(), device(), src.raw_data(), src.device(), nbytes());
  return *this;
}

// ---- autograd --------------------------------------------------------------------------

bool Tensor::requires_grad() const {
  return impl_ && impl_->autograd && impl_->autograd->requires_grad;
}

Tensor& Tensor::requires_grad_(bool value) {
  check_defined("requires_grad_", "self", *this);
  POLYAK_CHECK(is_leaf(), "requires_grad_: the tensor is the output of ", grad_fn()->name(),
               ", expected a leaf (use detach() to make one)");
  POLYAK_CHECK(!value || is_floating(dtype()), "requires_grad_: the tensor is ", dtype(),
               ", expected f32 or f64 (integer tensors carry no gradient)");
  impl_->meta().requires_grad = value;
  return *this;
}

bool Tensor::is_leaf() const {
  return !(impl_ && impl_->autograd && impl_->autograd->grad_fn);
}

Tensor Tensor::grad() const {
  return impl_ && impl_->autograd ? impl_->autograd->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) const {
  check_defined("set_grad", "self", *this);
  if (grad.defined()) {
    POLYAK_CHECK(grad.shape() == shape(), "set_grad: grad has shape ", grad.shape(),
                 ", expected the tensor's shape ", shape());
    check_same_dtype("set_grad", "self", *this, "grad", grad);
    check_same_device("set_grad", "self", *this, "grad", grad);
  }
  impl_->meta().grad = grad;
}

void Tensor::zero_grad() const {
  if (impl_ && impl_->autograd) impl_->autograd->grad = Tensor();
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> kNone;
  return impl_ && impl_->autograd ? impl_->autograd->grad_fn : kNone;
}

void Tensor::set_grad_fn(std::shared_ptr<Node> node) const {
  AutogradMeta& m = impl_->meta();
  m.grad_fn = std::move(node);
  m.requires_grad = m.grad_fn != nullptr;
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  run_backward({*this}, {grad}, retain_graph);
}

void Tensor::retain_grad() const {
  POLYAK_CHECK(requires_grad(),
               "retain_grad: the tensor does not require grad, expected a tensor "
               "that is part of a graph");
  if (is_leaf()) return;  // leaves keep their gradient anyway
  AutogradMeta& m = impl_->meta();
  if (m.retains_grad) return;
  m.retains_grad = true;
  std::weak_ptr<TensorImpl> weak = impl_;
  grad_fn()->retain_grad_hook = [weak](const Tensor& g) -> Tensor {
    if (auto impl = weak.lock()) {
      AutogradMeta& meta = impl->meta();
      meta.grad = meta.grad.defined() ? sum_gradients(meta.grad, g) : g.detach().clone();
    }
    return Tensor();
  };
}

void Tensor::register_hook(GradHook hook) const {
  POLYAK_CHECK(requires_grad(),
               "register_hook: the tensor does not require grad, expected a "
               "tensor that is part of a graph");
  if (is_leaf())
    impl_->meta().hooks.push_back(std::move(hook));
  else
    grad_fn()->pre_hooks.push_back(std::move(hook));
}

Tensor Tensor::detach() const {
  check_defined("detach", "self", *this);
  Tensor out = make_view(*this, shape(), impl_->offset);
  return out;
}

std::shared_ptr<Node> Tensor::grad_accumulator() const {
  POLYAK_CHECK(is_leaf() && requires_grad(),
               "grad_accumulator: expected a leaf that requires grad");
  AutogradMeta& m = impl_->meta();
  if (auto existing = m.grad_accumulator.lock()) return existing;
  auto sink = std::make_shared<AccumulateGrad>(impl_);
  m.grad_accumulator = sink;
  return sink;
}

const std::string& Tensor::name() const {
  return impl_ && impl_->autograd ? impl_->autograd->name : kEmptyName;
}

Tensor& Tensor::set_name(std::string n) {
  check_defined("set_name", "self", *this);
  impl_->meta().name = std::move(n);
  return *this;
}

// ---- printing --------------------------------------------------------------------------

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "Tensor(undefined)";
  std::vector<double> v = t.to_vector();
  os << "Tensor(" << t.shape() << ", " << t.dtype();
  if (!t.device().is_cpu()) os << ", " << t.device();
  os << ") [";
  const size_t limit = 64;
  for (size_t i = 0; i < std::min(v.size(), limit); ++i)
    os << (i ? ", " : "") << std::setprecision(6) << v[i];
  if (v.size() > limit) os << ", … (" << v.size() << " values)";
  return os << "]";
}

// ---- grad mode and checks ----------------------------------------------------------------

namespace {
thread_local bool g_grad_enabled = true;
}
bool GradMode::enabled() {
  return g_grad_enabled;
}
void GradMode::set_enabled(bool enabled) {
  g_grad_enabled = enabled;
}

void check_defined(const char* fn, const char* arg, const Tensor& t) {
  POLYAK_CHECK(t.defined(), fn, ": ", arg, " is undefined, expected a tensor");
}

void check_same_dtype(const char* fn, const char* arg_a, const Tensor& a, const char* arg_b,
                      const Tensor& b) {
  POLYAK_CHECK(a.dtype() == b.dtype(), fn, ": ", arg_b, " is ", b.dtype(), " but ", arg_a, " is ",
               a.dtype(), ", expected one dtype (convert with to(DType))");
}

void check_same_device(const char* fn, const char* arg_a, const Tensor& a, const char* arg_b,
                       const Tensor& b) {
  POLYAK_CHECK(a.device() == b.device(), fn, ": ", arg_b, " is on ", b.device(), " but ", arg_a,
               " is on ", a.device(), ", expected one device (move with to(Device))");
}

void check_rank(const char* fn, const char* arg, const Tensor& t, int64_t rank,
                const char* expected_layout) {
  check_defined(fn, arg, t);
  POLYAK_CHECK(t.dim() == rank, fn, ": ", arg, " has shape ", t.shape(), " (rank ", t.dim(),
               "), expected rank ", rank, " ", expected_layout);
}

void check_floating(const char* fn, const char* arg, const Tensor& t) {
  POLYAK_CHECK(is_floating(t.dtype()), fn, ": ", arg, " is ", t.dtype(),
               ", expected f32 or f64 (integer tensors hold ids and targets, which ", fn,
               " does not take)");
}

void check_cpu(const char* fn, const char* arg, const Tensor& t) {
  POLYAK_CHECK(t.device().is_cpu(), fn, ": ", arg, " is on ", t.device(),
               ", expected cpu (this op has no device kernel yet)");
}

}  // namespace polyak
