// The device seam of the elementwise ops, reductions and products: on a device they must
// agree with the CPU kernels (forward and backward, f32), and the ops without a device
// kernel must say so. Each check runs on the fake device (tests/fake_device.h: core's kernel
// table with host memory behind it) everywhere, and on cuda:0 where a CUDA device is present.
#include <cmath>

#include "fake_device.h"
#include "ops_helpers.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

// True when the CUDA backend is registered and finds a device.
bool have_cuda() {
  return has_device_backend(DeviceType::cuda) &&
         device_backend(DeviceType::cuda, "have_cuda").device_count() > 0;
}

// |gpu − cpu| ≤ atol + rtol·|cpu| elementwise.
void check_close(const Tensor& gpu, const Tensor& cpu, double atol = 1e-5, double rtol = 1e-5) {
  REQUIRE(gpu.shape() == cpu.shape());
  std::vector<double> g = gpu.to_vector(), c = cpu.to_vector();
  for (size_t i = 0; i < g.size(); ++i) {
    INFO("element " << i << ": gpu " << g[i] << ", cpu " << c[i]);
    CHECK(std::abs(g[i] - c[i]) <= atol + rtol * std::abs(c[i]));
  }
}

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs fn on CPU leaves and on their cuda copies; compares outputs and input gradients
// for one random cotangent.
void agree(Device device, const std::string& name, const std::vector<Tensor>& cpu_inputs,
           const Fn& fn) {
  CAPTURE(name);
  std::vector<Tensor> a, b;
  for (const Tensor& t : cpu_inputs) {
    a.push_back(t.detach().clone().requires_grad_());
    b.push_back(t.to(device).requires_grad_());
  }
  Tensor ya = fn(a), yb = fn(b);
  CHECK(yb.device() == device);
  check_close(yb.cpu(), ya);
  Generator gen(5);
  Tensor cot = Tensor::randn(ya.shape(), gen);
  ya.backward(cot);
  yb.backward(cot.to(device));
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    REQUIRE(b[i].grad().defined());
    check_close(b[i].grad().cpu(), a[i].grad(), 1e-4, 1e-4);
  }
}

// Every op with a device path, forward and backward, on `device` against the CPU.
void agree_everywhere(Device d) {
  Generator gen(21);
  Tensor x = Tensor::randn({64, 33}, gen);
  Tensor y = Tensor::randn({64, 33}, gen);
  Tensor pos = add(abs(Tensor::randn({64, 33}, gen)), 0.5);
  Tensor row = add(abs(Tensor::randn({33}, gen)), 0.5);
  Tensor one = Tensor::scalar(1.7);
  Tensor off =
      Tensor::from(shaped_input({64, 33}, gen, off_zero).to_vector(), {64, 33}, DType::f32);

  agree(d, "add same", {x, y}, [](const std::vector<Tensor>& t) { return add(t[0], t[1]); });
  agree(d, "add bias", {x, row}, [](const std::vector<Tensor>& t) { return add(t[0], t[1]); });
  agree(d, "add bias first", {row, x},
        [](const std::vector<Tensor>& t) { return add(t[0], t[1]); });
  agree(d, "sub bias", {x, row}, [](const std::vector<Tensor>& t) { return sub(t[0], t[1]); });
  agree(d, "mul same", {x, y}, [](const std::vector<Tensor>& t) { return mul(t[0], t[1]); });
  agree(d, "mul bias first", {row, x},
        [](const std::vector<Tensor>& t) { return mul(t[0], t[1]); });
  agree(d, "mul scalar tensor", {x, one},
        [](const std::vector<Tensor>& t) { return mul(t[0], t[1]); });
  agree(d, "div bias", {x, row}, [](const std::vector<Tensor>& t) { return div(t[0], t[1]); });
  agree(d, "scalar forms", {pos}, [](const std::vector<Tensor>& t) {
    return add(mul(add(t[0], 0.5), 2.0), add(rsub(1.0, t[0]), rdiv(3.0, t[0])));
  });
  agree(d, "neg", {x}, [](const std::vector<Tensor>& t) { return neg(t[0]); });
  agree(d, "exp", {x}, [](const std::vector<Tensor>& t) { return exp(t[0]); });
  agree(d, "log", {pos}, [](const std::vector<Tensor>& t) { return log(t[0]); });
  agree(d, "sqrt", {pos}, [](const std::vector<Tensor>& t) { return sqrt(t[0]); });
  agree(d, "square", {x}, [](const std::vector<Tensor>& t) { return square(t[0]); });
  agree(d, "abs", {off}, [](const std::vector<Tensor>& t) { return abs(t[0]); });
  agree(d, "tanh", {x}, [](const std::vector<Tensor>& t) { return tanh(t[0]); });
  agree(d, "sigmoid", {x}, [](const std::vector<Tensor>& t) { return sigmoid(t[0]); });
  agree(d, "relu", {off}, [](const std::vector<Tensor>& t) { return relu(t[0]); });
  agree(d, "gelu", {x}, [](const std::vector<Tensor>& t) { return gelu(t[0]); });
  agree(d, "silu", {x}, [](const std::vector<Tensor>& t) { return silu(t[0]); });
  agree(d, "sum", {x}, [](const std::vector<Tensor>& t) { return sum(t[0]); });
  agree(d, "mean", {x}, [](const std::vector<Tensor>& t) { return mean(t[0]); });
  agree(d, "sum axis 0", {x}, [](const std::vector<Tensor>& t) { return sum(t[0], 0); });
  agree(d, "mean axis 0 keepdim", {x},
        [](const std::vector<Tensor>& t) { return mean(t[0], 0, true); });
  agree(d, "sum_to bias", {x}, [](const std::vector<Tensor>& t) { return sum_to(t[0], {33}); });
  agree(d, "slice axis 0", {x}, [](const std::vector<Tensor>& t) { return slice(t[0], 0, 3, 40); });
  agree(d, "pow", {pos}, [](const std::vector<Tensor>& t) { return pow(t[0], 2.5); });
  agree(d, "elu", {off}, [](const std::vector<Tensor>& t) { return elu(t[0], 0.7); });
  agree(d, "clamp", {off}, [](const std::vector<Tensor>& t) { return clamp(t[0], -0.5, 0.8); });
  Tensor w = Tensor::randn({7, 33}, gen), bias = Tensor::randn({7}, gen);
  agree(d, "linear", {x, w, bias},
        [](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); });
  Tensor a3 = Tensor::randn({3, 5, 4}, gen), b3 = Tensor::randn({3, 6, 4}, gen);
  agree(d, "matmul batched trans_b", {a3, b3},
        [](const std::vector<Tensor>& t) { return matmul(t[0], t[1], false, true); });
  agree(d, "matmul shared b trans_a", {a3, Tensor::randn({5, 6}, gen)},
        [](const std::vector<Tensor>& t) { return matmul(t[0], t[1], true, false); });
}

// Bad input on a device names the op, the argument and the device.
void refuse_everywhere(Device d) {
  const std::string dev = d.str();
  Tensor x = Tensor::zeros({2, 3, 4}).to(d);
  check_error([&] { add(x, Tensor::zeros({3, 2}).to(d)); }, {"add", "does not broadcast"});
  check_error([&] { max(Tensor::zeros({2, 3}, DType::f64).to(d)); }, {"max", "x", "f64", dev});
  check_error([&] { add(x.cpu(), x); }, {"add", "b", dev, "cpu"});
  check_error([&] { exp(Tensor::zeros({2}, DType::f64).to(d)); }, {"exp", "x", "f64", dev});
  const Tensor d64 = Tensor::zeros({2, 3, 4}, DType::f64).to(d);
  check_error([&] { matmul(d64, d64, false, true); }, {"matmul", "f64", dev});
}

}  // namespace

TEST_CASE("device seam: ops on the fake device agree with the CPU") {
  const Device d = fake_device();
  fake::calls().clear();
  agree_everywhere(d);
  for (const char* kernel :
       {"binary", "binary_scalar", "unary", "unary_backward", "sum_rows", "sum_all", "gemm"}) {
    CAPTURE(kernel);
    CHECK(fake::calls()[kernel] > 0);
  }
}

TEST_CASE("device seam: f64, mixed devices and bad shapes on the fake device name the op") {
  refuse_everywhere(fake_device());
}

TEST_CASE("cuda seam: elementwise ops and reductions agree with the CPU") {
  if (!have_cuda()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  agree_everywhere(Device::cuda());
}

TEST_CASE("cuda seam: f64, mixed devices and bad shapes on cuda name the op and the device") {
  if (!have_cuda()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  refuse_everywhere(Device::cuda());
}
