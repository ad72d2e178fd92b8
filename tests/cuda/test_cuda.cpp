// The CUDA backend checked against the CPU: every kernel of cuda/ called directly and
// through the public ops, |gpu − cpu| ≤ atol + k·eps·|cpu| (eps = f32 epsilon).
//
// Without a CUDA device (or in a build without CUDA) each GPU test case prints
// "[skipped: no CUDA device]" and returns; tests/cuda/CMakeLists.txt makes CTest report
// those as skipped. The tests of what must fail without a device run everywhere.
#include <cfloat>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "polyak/cuda/cuda.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;

namespace {

// True when a CUDA device is present; otherwise prints the skip marker.
bool have_cuda() {
  if (cuda::is_available()) return true;
  MESSAGE("[skipped: no CUDA device]");
  return false;
}

const Device kGpu = Device::cuda(0);

// |gpu − cpu| ≤ atol + k·eps·|cpu| elementwise; reports the first offender and the count.
void check_close(const Tensor& gpu, const Tensor& cpu, double atol, double k,
                 const std::string& what) {
  INFO(what);
  REQUIRE(gpu.device() == kGpu);
  REQUIRE(cpu.device().is_cpu());
  REQUIRE(gpu.shape() == cpu.shape());
  std::vector<double> g = gpu.to_vector(), c = cpu.to_vector();
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < g.size(); ++i) {
    if (!(std::abs(g[i] - c[i]) <= atol + k * FLT_EPSILON * std::abs(c[i]))) {
      if (bad++ == 0) first = static_cast<int64_t>(i);
    }
  }
  if (bad > 0) {
    INFO(bad << " of " << g.size() << " elements differ; first at " << first << ": gpu "
             << g[static_cast<size_t>(first)] << ", cpu " << c[static_cast<size_t>(first)]);
    CHECK(bad == 0);
  } else {
    CHECK(bad == 0);
  }
}

// Standard normal values of `shape`, moved away from 0 by at least `margin` (off the kinks
// of abs and relu; away from the poles of div).
Tensor normal(const Shape& shape, uint64_t seed, double margin = 0.0) {
  Generator gen(seed);
  std::vector<double> v = Tensor::randn(shape, gen).to_vector();
  for (double& x : v)
    if (std::abs(x) < margin) x = x < 0 ? x - margin : x + margin;
  return Tensor::from(v, shape);
}

// Uniform values in [lo, hi).
Tensor uniform(const Shape& shape, uint64_t seed, double lo, double hi) {
  Generator gen(seed);
  std::vector<double> v = Tensor::rand(shape, gen).to_vector();
  for (double& x : v) x = lo + (hi - lo) * x;
  return Tensor::from(v, shape);
}

// ---- the tables ----------------------------------------------------------------------

struct BinaryCase {
  const char* name;
  BinaryOp op;
  std::function<Tensor(const Tensor&, const Tensor&)> fn;
};
const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> cases = {
      {"add", BinaryOp::add, [](const Tensor& a, const Tensor& b) { return add(a, b); }},
      {"sub", BinaryOp::sub, [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
      {"mul", BinaryOp::mul, [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
      {"div", BinaryOp::div, [](const Tensor& a, const Tensor& b) { return div(a, b); }},
  };
  return cases;
}

// (a, b) shapes the cuda kernel takes: b equal to a, or repeating along a's leading axes.
const std::vector<std::pair<Shape, Shape>> kBinaryShapes = {
    {{4, 33}, {4, 33}}, {{3, 5, 7}, {7}}, {{3, 5, 7}, {5, 7}}, {{6, 9}, {}}, {{1000, 3}, {3}}};

struct UnaryCase {
  const char* name;
  UnaryOp op;
  UnaryParams p;
  std::function<Tensor(const Tensor&)> fn;
  std::function<Tensor(const Shape&, uint64_t)> input;
  double k;  // tolerance in f32 epsilons: 2 for exact arithmetic, more for libm functions
};
Tensor positive(const Shape& s, uint64_t seed) {
  return uniform(s, seed, 0.1, 4.0);
}
Tensor off_kink(const Shape& s, uint64_t seed) {
  return normal(s, seed, 1e-3);
}
Tensor wide(const Shape& s, uint64_t seed) {
  return mul(normal(s, seed), 3.0);
}
const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> cases = {
      {"neg", UnaryOp::neg, {}, [](const Tensor& x) { return neg(x); }, wide, 0},
      {"exp", UnaryOp::exp, {}, [](const Tensor& x) { return exp(x); }, wide, 8},
      {"log", UnaryOp::log, {}, [](const Tensor& x) { return log(x); }, positive, 8},
      {"sqrt", UnaryOp::sqrt, {}, [](const Tensor& x) { return sqrt(x); }, positive, 2},
      {"square", UnaryOp::square, {}, [](const Tensor& x) { return square(x); }, wide, 2},
      {"abs", UnaryOp::abs, {}, [](const Tensor& x) { return abs(x); }, off_kink, 0},
      {"tanh", UnaryOp::tanh, {}, [](const Tensor& x) { return tanh(x); }, wide, 8},
      {"sigmoid", UnaryOp::sigmoid, {}, [](const Tensor& x) { return sigmoid(x); }, wide, 8},
      {"relu", UnaryOp::relu, {}, [](const Tensor& x) { return relu(x); }, off_kink, 0},
      {"gelu", UnaryOp::gelu, {}, [](const Tensor& x) { return gelu(x); }, wide, 16},
      {"silu", UnaryOp::silu, {}, [](const Tensor& x) { return silu(x); }, wide, 16},
      {"pow", UnaryOp::pow, {2.5, 0}, [](const Tensor& x) { return pow(x, 2.5); }, positive, 16},
      {"elu", UnaryOp::elu, {0.7, 0}, [](const Tensor& x) { return elu(x, 0.7); }, off_kink, 16},
      {"clamp",
       UnaryOp::clamp,
       {-0.5, 0.8},
       [](const Tensor& x) { return clamp(x, -0.5, 0.8); },
       off_kink,
       0},
  };
  return cases;
}

// The CPU derivative: x.grad after backpropagating dy through fn.
Tensor cpu_gradient(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x,
                    const Tensor& dy) {
  Tensor leaf = x.detach().clone().requires_grad_();
  fn(leaf).backward(dy);
  return leaf.grad();
}

}  // namespace

// ---- what must fail without a device (runs everywhere) --------------------------------

TEST_CASE("cuda: moving a tensor to a missing device throws") {
  const Tensor x = Tensor::ones({3});
  const int count = cuda::device_count();
  CHECK(cuda::is_available() == (count > 0));
  // With no device, cuda:0 is missing; with devices, the one past the last is.
  CHECK_THROWS_AS((void)x.to(Device::cuda(count)), Error);
  CHECK_THROWS_AS((void)Tensor::zeros({2, 2}, DType::f32, Device::cuda(count)), Error);
}

// ---- through the public ops -----------------------------------------------------------

TEST_CASE("cuda: host to device to host round trip") {
  if (!have_cuda()) return;
  const Tensor x = normal({7, 129}, 1);
  const Tensor g = x.to(kGpu);
  CHECK(g.device() == kGpu);
  CHECK(g.shape() == x.shape());
  CHECK(g.to(Device::cpu()).to_vector() == x.to_vector());  // exact
  // device → device: clone and copy_ keep the bytes
  CHECK(g.clone().cpu().to_vector() == x.to_vector());
  Tensor h = Tensor::zeros({7, 129}, DType::f32, kGpu);
  CHECK(h.cpu().to_vector() == std::vector<double>(7 * 129, 0.0));
  h.copy_(g);
  CHECK(h.cpu().to_vector() == x.to_vector());
  // f64 storage travels too (the kernels are f32, the bytes are not)
  const Tensor d = x.to(DType::f64);
  CHECK(d.to(kGpu).cpu().to_vector() == d.to_vector());
}

TEST_CASE("cuda: binary ops match the CPU") {
  if (!have_cuda()) return;
  uint64_t seed = 10;
  for (const BinaryCase& c : binary_cases()) {
    for (const auto& [sa, sb] : kBinaryShapes) {
      const Tensor a = normal(sa, ++seed), b = uniform(sb, ++seed, 0.5, 2.0);
      check_close(c.fn(a.to(kGpu), b.to(kGpu)), c.fn(a, b), 0, 2,
                  std::string(c.name) + " " + sa.str() + " " + sb.str());
    }
  }
  // a repeating instead of b (the op swaps commuting operands)
  const Tensor a = normal({5}, 1), b = normal({4, 5}, 2);
  check_close(add(a.to(kGpu), b.to(kGpu)), add(a, b), 0, 2, "add [5] + [4,5]");
  check_close(mul(a.to(kGpu), b.to(kGpu)), mul(a, b), 0, 2, "mul [5] * [4,5]");
}

TEST_CASE("cuda: scalar ops match the CPU") {
  if (!have_cuda()) return;
  const Tensor x = uniform({3, 65}, 3, 0.5, 2.0);
  const Tensor g = x.to(kGpu);
  check_close(add(g, 2.5), add(x, 2.5), 0, 2, "x + 2.5");
  check_close(g - 1.25, x - 1.25, 0, 2, "x - 1.25");
  check_close(mul(g, -1.5), mul(x, -1.5), 0, 2, "x * -1.5");
  check_close(g / 4.0, x / 4.0, 0, 2, "x / 4");
  check_close(rsub(1.0, g), rsub(1.0, x), 0, 2, "1 - x");
  check_close(rdiv(3.0, g), rdiv(3.0, x), 0, 2, "3 / x");
}

TEST_CASE("cuda: unary ops and their derivatives match the CPU") {
  if (!have_cuda()) return;
  const Shape shape{9, 131};
  uint64_t seed = 100;
  for (const UnaryCase& c : unary_cases()) {
    const Tensor x = c.input(shape, ++seed), dy = normal(shape, ++seed);
    const Tensor gx = x.to(kGpu);
    check_close(c.fn(gx), c.fn(x), 1e-6, c.k, c.name);
    // dx = dy · f'(x), through autograd on both devices
    Tensor leaf = gx.detach().clone().requires_grad_();
    c.fn(leaf).backward(dy.to(kGpu));
    REQUIRE(leaf.grad().defined());
    check_close(leaf.grad(), cpu_gradient(c.fn, x, dy), 1e-5, 4 * c.k + 4,
                std::string("backward ") + c.name);
  }
}

TEST_CASE("cuda: matmul and linear match the CPU, forward and backward") {
  if (!have_cuda()) return;
  const int64_t M = 37, N = 29, K = 53;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (bool shared : {false, true}) {
        // a [3, M, K] (or [3, K, M]); b [3, K, N] or shared [K, N] (or transposed)
        const Tensor a = normal(ta ? Shape{3, K, M} : Shape{3, M, K}, 7);
        const Shape mat = tb ? Shape{N, K} : Shape{K, N};
        const Tensor b = normal(shared ? mat : Shape{3, mat[0], mat[1]}, 8);
        const std::string what = std::string("matmul ta=") + (ta ? "1" : "0") +
                                 " tb=" + (tb ? "1" : "0") + " b " + b.shape().str();
        const Tensor cpu = matmul(a, b, ta, tb);
        Tensor ga = a.to(kGpu).requires_grad_(), gb = b.to(kGpu).requires_grad_();
        const Tensor gpu = matmul(ga, gb, ta, tb);
        check_close(gpu, cpu, 1e-4, 16, what);
        // backward with a non-uniform cotangent
        const Tensor dy = normal(cpu.shape(), 9);
        Tensor ca = a.clone().requires_grad_(), cb = b.clone().requires_grad_();
        matmul(ca, cb, ta, tb).backward(dy);
        gpu.backward(dy.to(kGpu));
        check_close(ga.grad(), ca.grad(), 1e-4, 16, what + " da");
        check_close(gb.grad(), cb.grad(), 1e-3, 16, what + " db");
      }
    }
  }

  const Tensor x = normal({4, 7, 33}, 11), w = normal({19, 33}, 12), bias = normal({19}, 13);
  const Tensor dy = normal({4, 7, 19}, 14);
  Tensor cx = x.clone().requires_grad_(), cw = w.clone().requires_grad_(),
         cbias = bias.clone().requires_grad_();
  Tensor gx = x.to(kGpu).requires_grad_(), gw = w.to(kGpu).requires_grad_(),
         gbias = bias.to(kGpu).requires_grad_();
  const Tensor cpu = linear(cx, cw, cbias), gpu = linear(gx, gw, gbias);
  check_close(gpu, cpu, 1e-4, 16, "linear");
  cpu.backward(dy);
  gpu.backward(dy.to(kGpu));
  check_close(gx.grad(), cx.grad(), 1e-4, 16, "linear dx");
  check_close(gw.grad(), cw.grad(), 1e-4, 16, "linear dweight");
  check_close(gbias.grad(), cbias.grad(), 1e-4, 16, "linear dbias");
  check_close(linear(gx.detach(), gw.detach()), linear(x, w), 1e-4, 16, "linear without bias");
}

TEST_CASE("cuda: the caching allocator stops calling cudaMalloc in a steady loop") {
  if (!have_cuda()) return;
  const Tensor x = normal({64, 96}, 21).to(kGpu), w = normal({32, 96}, 22).to(kGpu);
  size_t after_first = 0;
  for (int step = 0; step < 6; ++step) {
    Tensor h = relu(linear(x, w));
    Tensor y = exp(mul(h, 0.01)) + h;
    (void)y.cpu();
    if (step == 0) after_first = allocator_stats(kGpu).system_allocations;
  }
  CHECK(allocator_stats(kGpu).system_allocations == after_first);
  CHECK(allocator_stats(kGpu).cached_bytes > 0);
  empty_cache(kGpu);
  CHECK(allocator_stats(kGpu).cached_bytes == 0);
}

TEST_CASE("cuda: ops name f64 and mixed devices in their errors") {
  if (!have_cuda()) return;
  const Tensor d = Tensor::zeros({4}, DType::f64, kGpu);
  check_error([&] { (void)exp(d); }, {"f64"});
  check_error([&] { (void)add(d, d); }, {"f64"});
  check_error([&] { (void)matmul(d.reshape({2, 2}), d.reshape({2, 2})); }, {"f64"});
  const Tensor c = Tensor::ones({4}), g = Tensor::ones({4}, DType::f32, kGpu);
  check_error([&] { (void)add(c, g); }, {"cpu", "cuda:0"});
  check_error([&] { (void)mul(g, c); }, {"cpu", "cuda:0"});
  check_error([&] { (void)matmul(c.reshape({2, 2}), g.reshape({2, 2})); }, {"cpu", "cuda:0"});
}

// ---- the cuda:: functions directly (only in a build with CUDA) -------------------------

#ifdef POLYAK_WITH_CUDA

TEST_CASE("cuda: the elementwise kernels match the CPU ops") {
  if (!have_cuda()) return;
  uint64_t seed = 200;
  for (const BinaryCase& c : binary_cases()) {
    for (const auto& [sa, sb] : kBinaryShapes) {
      const Tensor a = normal(sa, ++seed), b = uniform(sb, ++seed, 0.5, 2.0);
      Tensor out = Tensor::empty(sa, DType::f32, kGpu);
      cuda::binary(c.op, a.to(kGpu), b.to(kGpu), out);
      check_close(out, c.fn(a, b), 0, 2,
                  std::string("cuda::binary ") + c.name + " " + sa.str() + " " + sb.str());
    }
  }

  const Tensor x = uniform({3, 65}, 3, 0.5, 2.0);
  struct ScalarCase {
    BinaryOp op;
    double s;
    bool scalar_first;
    Tensor cpu;
  };
  const std::vector<ScalarCase> scalar_cases = {
      {BinaryOp::add, 2.5, false, add(x, 2.5)},   {BinaryOp::add, 2.5, true, add(x, 2.5)},
      {BinaryOp::sub, 1.5, false, add(x, -1.5)},  {BinaryOp::sub, 1.5, true, rsub(1.5, x)},
      {BinaryOp::mul, -3.0, false, mul(x, -3.0)}, {BinaryOp::mul, -3.0, true, mul(x, -3.0)},
      {BinaryOp::div, 4.0, false, mul(x, 0.25)},  {BinaryOp::div, 3.0, true, rdiv(3.0, x)},
  };
  for (const ScalarCase& c : scalar_cases) {
    Tensor out = Tensor::empty(x.shape(), DType::f32, kGpu);
    cuda::binary_scalar(c.op, x.to(kGpu), c.s, c.scalar_first, out);
    check_close(out, c.cpu, 0, 2,
                "cuda::binary_scalar op " + std::to_string(static_cast<int>(c.op)) +
                    (c.scalar_first ? " scalar first" : ""));
  }

  const Shape shape{9, 131};
  for (const UnaryCase& c : unary_cases()) {
    const Tensor xs = c.input(shape, ++seed), dy = normal(shape, ++seed);
    const std::string name = c.name;
    Tensor out = Tensor::empty(shape, DType::f32, kGpu);
    cuda::unary(c.op, c.p, xs.to(kGpu), out);
    check_close(out, c.fn(xs), 1e-6, c.k, "cuda::unary " + name);
    // dx = dy · f'(x) against the CPU op's backward
    Tensor dx = Tensor::empty(shape, DType::f32, kGpu);
    cuda::unary_backward(c.op, c.p, xs.to(kGpu), dy.to(kGpu), dx);
    check_close(dx, cpu_gradient(c.fn, xs, dy), 1e-5, 4 * c.k + 4, "cuda::unary_backward " + name);
  }
  // out aliasing the input
  Tensor y = x.to(kGpu);
  cuda::unary(UnaryOp::exp, {}, y, y);
  check_close(y, exp(x), 1e-6, 8, "cuda::unary in place");
}

TEST_CASE("cuda: sum_rows and sum_all match the CPU") {
  if (!have_cuda()) return;
  // Positive inputs, so that |sum| bounds the rounding error of any summation order.
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {3, 5}, {1000, 37}, {5000, 300}, {70000, 2}, {7, 2000}, {0, 4}}) {
    const Tensor x = uniform({rows, cols}, 31, 0.0, 1.0);
    Tensor out = Tensor::empty({cols}, DType::f32, kGpu);
    cuda::sum_rows(x.to(kGpu), rows, cols, out);
    const double k = 4 * std::sqrt(static_cast<double>(rows)) + 16;
    check_close(out, sum(x, 0), 1e-6, k, "sum_rows " + Shape{rows, cols}.str());
    // ones: the exact row count, so no row is dropped or counted twice
    cuda::sum_rows(Tensor::ones({rows, cols}, DType::f32, kGpu), rows, cols, out);
    check_close(out, Tensor::full({cols}, static_cast<double>(rows)), 0, 0, "sum_rows of ones");
  }
  for (int64_t n :
       {int64_t{1}, int64_t{255}, int64_t{257}, int64_t{100000}, (int64_t{1} << 20) + 3}) {
    const Tensor x = uniform({n}, 32, 0.0, 1.0);
    Tensor out = Tensor::empty({}, DType::f32, kGpu);
    cuda::sum_all(x.to(kGpu), out);
    check_close(out, sum(x), 1e-6, 4 * std::sqrt(static_cast<double>(n)) + 16,
                "sum_all " + std::to_string(n));
    cuda::sum_all(Tensor::ones({n}, DType::f32, kGpu), out);
    check_close(out, Tensor::scalar(static_cast<double>(n)), 0, 0, "sum_all of ones");
  }
  Tensor out = Tensor::empty({}, DType::f32, kGpu);
  cuda::sum_all(Tensor::empty({0}, DType::f32, kGpu), out);
  CHECK(out.item() == 0.0);
}

TEST_CASE("cuda: gemm with every transpose flag, batched and shared, alpha and beta") {
  if (!have_cuda()) return;
  const int64_t B = 3, M = 37, N = 29, K = 53;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const Shape sa = ta ? Shape{B, K, M} : Shape{B, M, K};
      const Shape sb = tb ? Shape{B, N, K} : Shape{B, K, N};
      const Tensor a = normal(sa, 41), b = normal(sb, 42);
      const std::string flags = std::string("ta=") + (ta ? "1" : "0") + " tb=" + (tb ? "1" : "0");
      const Tensor ga = a.to(kGpu), gb = b.to(kGpu);

      // one product
      Tensor out1 = Tensor::empty({M, N}, DType::f32, kGpu);
      cuda::gemm(ga[0], gb[0], out1, {1, M, N, K, ta, tb, 0, 0, 0});
      check_close(out1, matmul(a[0], b[0], ta, tb), 1e-4, 16, "gemm " + flags);

      // strided batch
      Tensor out = Tensor::empty({B, M, N}, DType::f32, kGpu);
      cuda::gemm(ga, gb, out, {B, M, N, K, ta, tb, M * K, K * N, M * N});
      const Tensor cpu = matmul(a, b, ta, tb);
      check_close(out, cpu, 1e-4, 16, "batched gemm " + flags);

      // b shared across the batch (b_stride 0)
      cuda::gemm(ga, gb[1], out, {B, M, N, K, ta, tb, M * K, 0, M * N});
      check_close(out, matmul(a, b[1], ta, tb), 1e-4, 16, "shared-b gemm " + flags);

      // out = 2·op(a)·op(b) − out
      Tensor acc = normal({B, M, N}, 43);
      Tensor gacc = acc.to(kGpu);
      cuda::gemm(ga, gb, gacc, {B, M, N, K, ta, tb, M * K, K * N, M * N, 2.0f, -1.0f});
      check_close(gacc, sub(mul(cpu, 2.0), acc), 2e-4, 16, "alpha/beta gemm " + flags);
    }
  }
  // K = 0 is an empty sum: out = beta · out
  Tensor z = Tensor::ones({2, 3}, DType::f32, kGpu);
  cuda::gemm(Tensor::empty({2, 0}, DType::f32, kGpu), Tensor::empty({0, 3}, DType::f32, kGpu), z,
             {1, 2, 3, 0, false, false, 0, 0, 0});
  CHECK(z.cpu().to_vector() == std::vector<double>(6, 0.0));
}

TEST_CASE("cuda: the cuda functions validate dtype, device and size") {
  if (!have_cuda()) return;
  const Tensor g = Tensor::ones({4}, DType::f32, kGpu), c = Tensor::ones({4});
  const Tensor d = Tensor::ones({4}, DType::f64, kGpu);
  Tensor out = Tensor::empty({4}, DType::f32, kGpu);
  check_error([&] { cuda::unary(UnaryOp::exp, {}, d, out); }, {"cuda::unary", "x", "f64"});
  check_error([&] { cuda::binary(BinaryOp::add, g, c, out); },
              {"cuda::binary", "b", "cpu", "cuda:0"});
  check_error([&] { cuda::binary(BinaryOp::add, g, Tensor::ones({3}, DType::f32, kGpu), out); },
              {"cuda::binary", "b", "[3]"});
  check_error([&] { cuda::binary_scalar(BinaryOp::mul, c, 2.0, false, out); },
              {"cuda::binary_scalar", "a", "cpu"});
  check_error([&] { cuda::unary_backward(UnaryOp::tanh, {}, g, d, out); },
              {"cuda::unary_backward", "dy", "f64"});
  check_error([&] { cuda::sum_rows(g, 3, 2, out); }, {"cuda::sum_rows", "rows 3"});
  check_error([&] { cuda::sum_all(g, out); }, {"cuda::sum_all", "out"});
  Tensor small = Tensor::empty({2, 2}, DType::f32, kGpu);
  check_error(
      [&] {
        cuda::gemm(g, g, small, {1, 2, 2, 3, false, false, 0, 0, 0});
      },
      {"cuda::gemm", "a", "expected at least 6"});
  check_error(
      [&] {
        cuda::gemm(g, c, small, {1, 2, 2, 2, false, false, 0, 0, 0});
      },
      {"cuda::gemm", "cpu", "cuda:0"});
}

#else

TEST_CASE("cuda: the cuda functions (built without CUDA)") {
  MESSAGE("[skipped: no CUDA device]");
}

#endif
