// Device backends: core's registry and kernel table, the CUDA backend's registration from a
// static library, and the fake device (tests/fake_device.h) standing in for a GPU.
#include <vector>

#include "fake_device.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::fake_device;

TEST_CASE("backend: the CUDA backend is registered exactly when polyak is built with it") {
#ifdef POLYAK_WITH_CUDA
  // Registered from a static initializer in a library linked whole: a plain static library
  // would have dropped it, and cuda tensors would claim a build without CUDA.
  REQUIRE(has_device_backend(DeviceType::cuda));
  const DeviceBackend& cuda = device_backend(DeviceType::cuda, "test");
  CHECK(std::string(cuda.name) == "cuda");
  const int count = cuda.device_count();
  // Without a GPU (or a driver) the backend reports none and refuses cleanly.
  check_error([&] { (void)Tensor::zeros({2}, DType::f32, Device::cuda(count)); },
              {"Tensor", "cuda:" + std::to_string(count), "not present",
               std::to_string(count) + " cuda device(s)"});
#else
  CHECK(!has_device_backend(DeviceType::cuda));
  check_error([&] { (void)Tensor::zeros({2}, DType::f32, Device::cuda()); },
              {"Tensor", "cuda:0", "no backend", "built without CUDA", "POLYAK_CUDA=ON"});
  check_error([&] { (void)Tensor::ones({2}).to(Device::cuda()); }, {"cuda:0", "no backend"});
  check_error([&] { (void)device_kernels(Device::cuda(), "exp"); },
              {"exp", "cuda:0", "no backend"});
#endif
}

TEST_CASE("backend: the registry refuses the cpu, a partial backend and a missing kernel table") {
  check_error([&] { (void)device_kernels(Device::cpu(), "exp"); }, {"exp", "cpu"});
  DeviceBackend partial{};  // memory and kernels all unset
  partial.name = "partial";
  check_error([&] { register_device_backend(DeviceType::ext, &partial); },
              {"register_device_backend", "ext", "field unset"});
  check_error([&] { register_device_backend(DeviceType::cpu, &partial); },
              {"register_device_backend", "cpu", "built in"});
  CHECK(std::string(name(UnaryOp::clamp)) == "clamp");
  CHECK(std::string(name(BinaryOp::div)) == "div");
}

TEST_CASE("backend: tensors move to the fake device and back through its memory functions") {
  const Device dev = fake_device(), other = fake_device(1);
  CHECK(dev.str() == "ext:0");
  const Tensor x = Tensor::from({1.5, -2.0, 3.25, 4.0, 0.5, -1.0}, DType::f32).reshape({2, 3});
  const Tensor d = x.to(dev);
  CHECK(d.device() == dev);
  CHECK(d.to_vector() == x.to_vector());
  CHECK(d.cpu().to_vector() == x.to_vector());
  CHECK(d.clone().to_vector() == x.to_vector());
  CHECK(d.to(other).device() == other);
  CHECK(d.to(other).to_vector() == x.to_vector());
  CHECK(d[1].to_vector() == std::vector<double>{4.0, 0.5, -1.0});
  CHECK(Tensor::zeros({3}, DType::f32, dev).to_vector() == std::vector<double>(3, 0.0));
  CHECK(Tensor::full({2}, 7.0, DType::f64, dev).to_vector() == std::vector<double>(2, 7.0));
  Tensor y = Tensor::empty({2, 3}, DType::f32, dev);
  y.copy_(x);
  CHECK(y.to_vector() == x.to_vector());
  y.fill_(2.5);
  CHECK(y.cpu().to_vector() == std::vector<double>(6, 2.5));
  CHECK(d[0][2].item() == 3.25);
  CHECK(allocator_stats(dev).allocated_bytes > 0);
  // Host access to device memory is refused, naming the device and the way to the host.
  check_error([&] { (void)d.data<float>(); }, {"Tensor::data", "ext:0", "expected cpu", ".cpu()"});
  check_error([&] { (void)d.data<double>(); }, {"Tensor::data", "f32", "f64"});
  CHECK(d.cpu().data<float>()[2] == 3.25f);
  // A device index past device_count() is refused, naming the backend's device count.
  check_error([&] { (void)x.to(Device::ext(2)); }, {"ext:2", "not present", "2 ext device(s)"});
}

TEST_CASE("backend: the allocator's figures are per device index") {
  const Device dev = fake_device(), other = fake_device(1);
  reset_peak_allocated(dev);
  reset_peak_allocated(other);
  const AllocatorStats before = allocator_stats(dev), other_before = allocator_stats(other);
  {
    const Tensor big = Tensor::zeros({1 << 16}, DType::f32, other);  // 256 KiB on ext:1 only
    CHECK(allocator_stats(other).allocated_bytes >= other_before.allocated_bytes + big.nbytes());
    CHECK(allocator_stats(dev).allocated_bytes == before.allocated_bytes);
  }
  CHECK(allocator_stats(other).peak_allocated_bytes >= other_before.allocated_bytes + (1 << 18));
  CHECK(allocator_stats(dev).peak_allocated_bytes == before.allocated_bytes);
  // Emptying ext:0's cache leaves ext:1's block parked.
  empty_cache(dev);
  CHECK(allocator_stats(dev).cached_bytes == 0);
  CHECK(allocator_stats(other).cached_bytes >= (1 << 18));
  empty_cache(other);
  CHECK(allocator_stats(other).cached_bytes == 0);
}

TEST_CASE("backend: the engine sums gradients on the device through its kernels") {
  const Device dev = fake_device();
  testing::fake::calls().clear();
  Tensor x = Tensor::from({0.5, -1.5, 2.0}, DType::f32).to(dev).requires_grad_();
  // Two paths into x: the engine adds their gradients (binary add on the device).
  Tensor y = add(mul(x, x), mul(x, 3.0));
  y.backward(Tensor::from({1.0, 2.0, -1.0}, DType::f32).to(dev));
  REQUIRE(x.grad().defined());
  CHECK(x.grad().device() == dev);
  // dy/dx = 2x + 3
  CHECK(x.grad().to_vector() == std::vector<double>{4.0, 0.0, -7.0});
  CHECK(testing::fake::calls()["binary"] > 0);
  check_error([&] { (void)add(x.detach(), Tensor::zeros({3}, DType::f32, fake_device(1))); },
              {"add", "ext:0", "ext:1", "one device"});
}
