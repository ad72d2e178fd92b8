// The CUDA seam of the elementwise ops and reductions: on a cuda device they must agree
// with the CPU kernels (forward and backward, f32), and the ops without a CUDA kernel must
// say so. Skipped without a device.
#include <cmath>

#include "ops_helpers.h"
#include "testing.h"

#ifdef POLYAK_WITH_CUDA
#include "polyak/cuda/cuda.h"
#endif

using namespace polyak;
using namespace polyak::testing;

namespace {

bool have_cuda() {
#ifdef POLYAK_WITH_CUDA
  return cuda::is_available();
#else
  return false;
#endif
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
void agree(const std::string& name, const std::vector<Tensor>& cpu_inputs, const Fn& fn) {
  CAPTURE(name);
  std::vector<Tensor> a, b;
  for (const Tensor& t : cpu_inputs) {
    a.push_back(t.detach().clone().requires_grad_());
    b.push_back(t.to(Device::cuda()).requires_grad_());
  }
  Tensor ya = fn(a), yb = fn(b);
  CHECK(yb.device().is_cuda());
  check_close(yb.cpu(), ya);
  Generator gen(5);
  Tensor cot = Tensor::randn(ya.shape(), gen);
  ya.backward(cot);
  yb.backward(cot.to(Device::cuda()));
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    REQUIRE(b[i].grad().defined());
    check_close(b[i].grad().cpu(), a[i].grad(), 1e-4, 1e-4);
  }
}

}  // namespace

TEST_CASE("cuda seam: elementwise ops and reductions agree with the CPU") {
  if (!have_cuda()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  Generator gen(21);
  Tensor x = Tensor::randn({64, 33}, gen);
  Tensor y = Tensor::randn({64, 33}, gen);
  Tensor pos = add(abs(Tensor::randn({64, 33}, gen)), 0.5);
  Tensor row = add(abs(Tensor::randn({33}, gen)), 0.5);
  Tensor one = Tensor::scalar(1.7);
  Tensor off =
      Tensor::from(shaped_input({64, 33}, gen, off_zero).to_vector(), {64, 33}, DType::f32);

  agree("add same", {x, y}, [](const std::vector<Tensor>& t) { return add(t[0], t[1]); });
  agree("add bias", {x, row}, [](const std::vector<Tensor>& t) { return add(t[0], t[1]); });
  agree("add bias first", {row, x}, [](const std::vector<Tensor>& t) { return add(t[0], t[1]); });
  agree("sub bias", {x, row}, [](const std::vector<Tensor>& t) { return sub(t[0], t[1]); });
  agree("mul same", {x, y}, [](const std::vector<Tensor>& t) { return mul(t[0], t[1]); });
  agree("mul bias first", {row, x}, [](const std::vector<Tensor>& t) { return mul(t[0], t[1]); });
  agree("mul scalar tensor", {x, one},
        [](const std::vector<Tensor>& t) { return mul(t[0], t[1]); });
  agree("div bias", {x, row}, [](const std::vector<Tensor>& t) { return div(t[0], t[1]); });
  agree("scalar forms", {pos}, [](const std::vector<Tensor>& t) {
    return add(mul(add(t[0], 0.5), 2.0), add(rsub(1.0, t[0]), rdiv(3.0, t[0])));
  });
  agree("neg", {x}, [](const std::vector<Tensor>& t) { return neg(t[0]); });
  agree("exp", {x}, [](const std::vector<Tensor>& t) { return exp(t[0]); });
  agree("log", {pos}, [](const std::vector<Tensor>& t) { return log(t[0]); });
  agree("sqrt", {pos}, [](const std::vector<Tensor>& t) { return sqrt(t[0]); });
  agree("square", {x}, [](const std::vector<Tensor>& t) { return square(t[0]); });
  agree("abs", {off}, [](const std::vector<Tensor>& t) { return abs(t[0]); });
  agree("tanh", {x}, [](const std::vector<Tensor>& t) { return tanh(t[0]); });
  agree("sigmoid", {x}, [](const std::vector<Tensor>& t) { return sigmoid(t[0]); });
  agree("relu", {off}, [](const std::vector<Tensor>& t) { return relu(t[0]); });
  agree("gelu", {x}, [](const std::vector<Tensor>& t) { return gelu(t[0]); });
  agree("silu", {x}, [](const std::vector<Tensor>& t) { return silu(t[0]); });
  agree("sum", {x}, [](const std::vector<Tensor>& t) { return sum(t[0]); });
  agree("mean", {x}, [](const std::vector<Tensor>& t) { return mean(t[0]); });
  agree("sum axis 0", {x}, [](const std::vector<Tensor>& t) { return sum(t[0], 0); });
  agree("mean axis 0 keepdim", {x},
        [](const std::vector<Tensor>& t) { return mean(t[0], 0, true); });
  agree("sum_to bias", {x}, [](const std::vector<Tensor>& t) { return sum_to(t[0], {33}); });
  agree("slice axis 0", {x}, [](const std::vector<Tensor>& t) { return slice(t[0], 0, 3, 40); });
}

TEST_CASE("cuda seam: ops without a CUDA kernel name the op and the device") {
  if (!have_cuda()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  Tensor x = Tensor::zeros({2, 3, 4}).to(Device::cuda());
  Tensor b = Tensor::zeros({2, 1, 4}).to(Device::cuda());
  check_error([&] { add(x, b); }, {"add", "cuda:0"});  // a middle-axis broadcast
  check_error([&] { pow(x, 2.0); }, {"pow", "x", "cuda:0"});
  check_error([&] { elu(x); }, {"elu", "x", "cuda:0"});
  check_error([&] { clamp(x, 0, 1); }, {"clamp", "x", "cuda:0"});
  check_error([&] { max(x); }, {"max", "x", "cuda:0"});
  check_error([&] { sum(x, 1); }, {"sum", "x", "cuda:0"});
  check_error([&] { permute(x, {2, 1, 0}); }, {"permute", "x", "cuda:0"});
  check_error([&] { slice(x, 1, 0, 1); }, {"slice", "x", "cuda:0"});
  check_error([&] { concat({x, x}, 1); }, {"concat", "cuda:0"});
  check_error([&] { split_heads(x, 2); }, {"split_heads", "x", "cuda:0"});
  check_error([&] { add(x.cpu(), x); }, {"add", "b", "cuda:0", "cpu"});
  check_error([&] { exp(Tensor::zeros({2}, DType::f64).to(Device::cuda())); }, {"exp", "f64"});
}
