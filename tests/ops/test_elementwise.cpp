// Elementwise ops: gradients (gradcheck in f64), forward values, broadcasting paths
// against a naive reference, and bad input.
#include <cmath>
#include <limits>

#include "ops_helpers.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Inputs: a of `sa` (random normal), b of `sb` with values kept away from zero.
std::function<std::vector<Tensor>(Generator&)> with_nonzero_b(Shape sa, Shape sb) {
  return [sa, sb](Generator& gen) {
    return std::vector<Tensor>{shaped_input(sa, gen, [](double z) { return z; }),
                               shaped_input(sb, gen, [](double z) { return off_zero(z) * 1.5; })};
  };
}

std::function<std::vector<Tensor>(Generator&)> one_input(Shape s, double (*f)(double)) {
  return [s, f](Generator& gen) { return std::vector<Tensor>{shaped_input(s, gen, f)}; };
}

// The broadcasting layouts every binary op is checked on.
struct Layout {
  const char* name;
  Shape a, b;
};
const std::vector<Layout> kLayouts = {
    {"same [2,3,4]", {2, 3, 4}, {2, 3, 4}},
    {"bias [2,3,4]·[4]", {2, 3, 4}, {4}},
    {"bias first [4]·[2,3,4]", {4}, {2, 3, 4}},
    {"[2,1,4]·[3,1]", {2, 1, 4}, {3, 1}},
    {"scalar [2,3]·[]", {2, 3}, {}},
    {"[3,1]·[1,4]", {3, 1}, {1, 4}},
    {"[2,3,4]·[3,1]", {2, 3, 4}, {3, 1}},
    {"[2,3,4]·[2,1,1]", {2, 3, 4}, {2, 1, 1}},
};

}  // namespace

TEST_CASE("elementwise: gradcheck of binary ops over broadcasting layouts") {
  std::vector<GradcheckCase> cases;
  const std::vector<std::pair<const char*, Fn>> ops = {
      {"add", [](const std::vector<Tensor>& x) { return add(x[0], x[1]); }},
      {"sub", [](const std::vector<Tensor>& x) { return sub(x[0], x[1]); }},
      {"mul", [](const std::vector<Tensor>& x) { return mul(x[0], x[1]); }},
      {"div", [](const std::vector<Tensor>& x) { return div(x[0], x[1]); }},
  };
  for (const auto& [op, fn] : ops)
    for (const Layout& l : kLayouts)
      cases.push_back({std::string(op) + " " + l.name, {l.a, l.b}, fn, with_nonzero_b(l.a, l.b)});
  // Both operands of one product are the same tensor: the engine sums both paths.
  cases.push_back(
      {"mul x·x", {{3, 4}}, [](const std::vector<Tensor>& x) { return mul(x[0], x[0]); }});
  run_gradcheck_table(cases);
}

TEST_CASE("elementwise: gradcheck of scalar forms, unary functions and sum_to") {
  const Shape s{3, 5};
  std::vector<GradcheckCase> cases = {
      {"add scalar", {s}, [](const std::vector<Tensor>& x) { return add(x[0], 2.5); }},
      {"mul scalar", {s}, [](const std::vector<Tensor>& x) { return mul(x[0], -1.5); }},
      {"rsub", {s}, [](const std::vector<Tensor>& x) { return rsub(2.0, x[0]); }},
      {"rdiv",
       {s},
       [](const std::vector<Tensor>& x) { return rdiv(2.0, x[0]); },
       one_input(s, off_zero)},
      {"neg", {s}, [](const std::vector<Tensor>& x) { return neg(x[0]); }},
      {"operators",
       {s, s},
       [](const std::vector<Tensor>& x) {
         return (x[0] - 3.0) * 2.0 + 1.0 / x[1] - x[0] / 4.0 + (-x[1]);
       },
       with_nonzero_b(s, s)},
      {"exp", {s}, [](const std::vector<Tensor>& x) { return exp(x[0]); }},
      {"log", {s}, [](const std::vector<Tensor>& x) { return log(x[0]); }, one_input(s, positive)},
      {"sqrt",
       {s},
       [](const std::vector<Tensor>& x) { return sqrt(x[0]); },
       one_input(s, positive)},
      {"pow 3", {s}, [](const std::vector<Tensor>& x) { return pow(x[0], 3.0); }},
      {"pow 2.5",
       {s},
       [](const std::vector<Tensor>& x) { return pow(x[0], 2.5); },
       one_input(s, positive)},
      {"pow -1.5",
       {s},
       [](const std::vector<Tensor>& x) { return pow(x[0], -1.5); },
       one_input(s, positive)},
      {"pow 0", {s}, [](const std::vector<Tensor>& x) { return pow(x[0], 0.0); }},
      {"square", {s}, [](const std::vector<Tensor>& x) { return square(x[0]); }},
      {"abs", {s}, [](const std::vector<Tensor>& x) { return abs(x[0]); }, one_input(s, off_zero)},
      {"tanh", {s}, [](const std::vector<Tensor>& x) { return tanh(x[0]); }},
      {"sigmoid", {s}, [](const std::vector<Tensor>& x) { return sigmoid(mul(x[0], 3.0)); }},
      {"relu",
       {s},
       [](const std::vector<Tensor>& x) { return relu(x[0]); },
       one_input(s, off_zero)},
      {"gelu", {s}, [](const std::vector<Tensor>& x) { return gelu(x[0]); }},
      {"elu", {s}, [](const std::vector<Tensor>& x) { return elu(x[0]); }, one_input(s, off_zero)},
      {"elu alpha 0.5",
       {s},
       [](const std::vector<Tensor>& x) { return elu(x[0], 0.5); },
       one_input(s, off_zero)},
      {"silu", {s}, [](const std::vector<Tensor>& x) { return silu(x[0]); }},
      {"clamp",
       {s},
       [](const std::vector<Tensor>& x) { return clamp(x[0], -0.5, 0.5); },
       one_input(s,
                 [](double z) {
                   double v = 1.5 * z;  // keep 0.1 away from both boundaries
                   if (std::abs(std::abs(v) - 0.5) < 0.1) v += v > 0 ? 0.25 : -0.25;
                   return v;
                 })},
      {"sum_to [2,3,4]→[3,1]",
       {{2, 3, 4}},
       [](const std::vector<Tensor>& x) {
         return sum_to(x[0], {3, 1});
       }},
      {"sum_to [2,3,4]→[4]",
       {{2, 3, 4}},
       [](const std::vector<Tensor>& x) { return sum_to(x[0], {4}); }},
      {"sum_to [2,3,4]→[]",
       {{2, 3, 4}},
       [](const std::vector<Tensor>& x) { return sum_to(x[0], {}); }},
  };
  run_gradcheck_table(cases);
}

TEST_CASE("elementwise: forward values") {
  Tensor a = Tensor::from({1, 2, 3, 4}, {2, 2}, DType::f64);
  check_values(add(a, Tensor::from({10, 20}, DType::f64)), {11, 22, 13, 24});
  check_values(sub(a, Tensor::from({10, 20}, DType::f64)), {-9, -18, -7, -16});
  check_values(
      mul(Tensor::from({1, 2}, {2, 1}, DType::f64), Tensor::from({10, 20, 30}, DType::f64)),
      {10, 20, 30, 20, 40, 60});
  check_values(div(a, Tensor::scalar(4, DType::f64)), {0.25, 0.5, 0.75, 1});
  check_values(div(Tensor::scalar(12, DType::f64), a), {12, 6, 4, 3});
  check_values(add(a, 1.5), {2.5, 3.5, 4.5, 5.5});
  check_values(mul(a, -2.0), {-2, -4, -6, -8});
  check_values(rsub(2.0, a), {1, 0, -1, -2});
  check_values(rdiv(2.0, a), {2, 1, 2.0 / 3.0, 0.5});
  check_values(neg(a), {-1, -2, -3, -4});
  check_values(a / 2.0 - 1.0, {-0.5, 0, 0.5, 1});

  Tensor x = Tensor::from({-1, 0.5, 2}, DType::f64);
  check_values(exp(x), {std::exp(-1.0), std::exp(0.5), std::exp(2.0)});
  check_values(log(Tensor::from({1, std::exp(1.0)}, DType::f64)), {0, 1});
  check_values(sqrt(Tensor::from({4, 2.25}, DType::f64)), {2, 1.5});
  check_values(pow(Tensor::from({2, 3}, DType::f64), 3.0), {8, 27});
  check_values(square(x), {1, 0.25, 4});
  check_values(abs(x), {1, 0.5, 2});
  check_values(tanh(Tensor::from({0}, DType::f64)), {0});
  check_values(sigmoid(Tensor::from({0, -1000, 1000}, DType::f64)), {0.5, 0, 1});
  check_values(relu(x), {0, 0.5, 2});
  check_values(gelu(Tensor::from({1, 0, -1}, DType::f64)),
               {0.8413447460685429, 0, -0.15865525393145707});
  check_values(elu(x), {std::exp(-1.0) - 1, 0.5, 2});
  check_values(elu(x, 2.0), {2 * (std::exp(-1.0) - 1), 0.5, 2});
  check_values(silu(Tensor::from({1, 0}, DType::f64)), {0.7310585786300049, 0});
  check_values(clamp(Tensor::from({-2, 0.3, 5}, DType::f64), -1, 1), {-1, 0.3, 1});
  // f32 gives the same values within float rounding.
  check_values(add(Tensor::from({1, 2}), Tensor::from({0.5, 0.25})), {1.5, 2.25}, 1e-7);
  check_values(sigmoid(Tensor::from(std::vector<float>{-200.0f, 200.0f}, {2})), {0, 1}, 1e-7);
}

TEST_CASE("elementwise: gradients by hand") {
  Tensor a = Tensor::from({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64).requires_grad_();
  Tensor b = Tensor::from({10, 20, 30}, DType::f64).requires_grad_();
  Tensor y = mul(a, b);
  y.backward(Tensor::from({1, 0, 2, 0, 1, 1}, {2, 3}, DType::f64));
  check_values(a.grad(), {10, 0, 60, 0, 20, 30});
  check_values(b.grad(), {1 + 0, 0 + 5, 2 * 3 + 6});

  // A constant operand gets no gradient and the other still does.
  Tensor c = Tensor::from({2, 4}, DType::f64);
  Tensor d = Tensor::from({1, 2}, DType::f64).requires_grad_();
  sum(div(c, d)).backward();
  check_values(d.grad(), {-2, -1});  // −c/d²
  CHECK_FALSE(c.grad().defined());

  // relu passes the gradient only where the output is positive.
  Tensor x = Tensor::from({-1, 2, -3, 4}, DType::f64).requires_grad_();
  relu(x).backward(Tensor::from({5, 6, 7, 8}, DType::f64));
  check_values(x.grad(), {0, 6, 0, 8});

  // Under no-grad nothing is recorded.
  {
    NoGradGuard guard;
    CHECK_FALSE(add(a, b).requires_grad());
    CHECK_FALSE(exp(a).requires_grad());
  }
  CHECK(add(a, b).grad_fn()->name() == "AddBackward");
  CHECK(exp(a).grad_fn()->name() == "ExpBackward");
}

namespace {

// out[i] = f(a[ia(i)], b[ib(i)]) by explicit index arithmetic.
std::vector<double> naive_broadcast(const Tensor& a, const Tensor& b, const Shape& out,
                                    double (*f)(double, double)) {
  std::vector<double> va = a.to_vector(), vb = b.to_vector(), r;
  const int64_t rank = out.rank();
  for (int64_t i = 0; i < out.numel(); ++i) {
    int64_t rem = i, ia = 0, ib = 0, sa = 1, sb = 1;
    for (int64_t k = rank - 1; k >= 0; --k) {
      int64_t idx = rem % out[k];
      rem /= out[k];
      int64_t ka = k - (rank - a.dim()), kb = k - (rank - b.dim());
      if (ka >= 0) {
        if (a.shape()[ka] != 1) ia += idx * sa;
        sa *= a.shape()[ka];
      }
      if (kb >= 0) {
        if (b.shape()[kb] != 1) ib += idx * sb;
        sb *= b.shape()[kb];
      }
    }
    r.push_back(f(va[static_cast<size_t>(ia)], vb[static_cast<size_t>(ib)]));
  }
  return r;
}

}  // namespace

TEST_CASE("elementwise: large tensors take the threaded paths and agree with a naive loop") {
  Generator gen(7);
  struct Big {
    Shape a, b, out;
  };
  const std::vector<Big> layouts = {
      {{257, 512}, {257, 512}, {257, 512}},    {{257, 512}, {512}, {257, 512}},
      {{512}, {257, 512}, {257, 512}},         {{64, 1, 300}, {1, 70, 1}, {64, 70, 300}},
      {{64, 70, 300}, {70, 1}, {64, 70, 300}}, {{100000}, {}, {100000}},
  };
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Big& l : layouts) {
      CAPTURE(l.a);
      CAPTURE(l.b);
      Tensor a = Tensor::randn(l.a, gen, dt), b = add(Tensor::rand(l.b, gen, dt), 0.5);
      const double tol = dt == DType::f32 ? 1e-6 : 1e-14;
      Tensor y = mul(a, b);
      REQUIRE(y.shape() == l.out);
      Tensor ref =
          Tensor::from(naive_broadcast(a, b, l.out, [](double x, double z) { return x * z; }),
                       l.out, DType::f64);
      CHECK(max_abs_diff(y.to(DType::f64), ref) <= tol * 10);
      Tensor q = div(a, b);
      Tensor ref_q =
          Tensor::from(naive_broadcast(a, b, l.out, [](double x, double z) { return x / z; }),
                       l.out, DType::f64);
      CHECK(max_abs_diff(q.to(DType::f64), ref_q) <= tol * 10);

      // sum_to back to each operand's shape against a naive scatter-add.
      for (const Shape& target : {l.a, l.b}) {
        Tensor s = sum_to(y, target);
        REQUIRE(s.shape() == target);
        std::vector<double> expect(static_cast<size_t>(target.numel()), 0.0);
        std::vector<double> vy = y.to_vector();
        // Index of each output element in `target`, by the same rule as naive_broadcast.
        std::vector<double> idx(static_cast<size_t>(target.numel()));
        for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<double>(i);
        std::vector<double> where =
            naive_broadcast(Tensor::from(idx, target, DType::f64), Tensor::scalar(0, DType::f64),
                            l.out, [](double x, double) { return x; });
        for (size_t i = 0; i < vy.size(); ++i) expect[static_cast<size_t>(where[i])] += vy[i];
        double scale = 1;
        for (double e : expect) scale = std::max(scale, std::abs(e));
        CHECK(max_abs_diff(s.to(DType::f64), Tensor::from(expect, target, DType::f64)) <=
              (dt == DType::f32 ? 1e-4 : 1e-10) * scale);
      }
    }
  }
}

TEST_CASE("elementwise: bad input") {
  Tensor a = Tensor::zeros({2, 3}, DType::f64);
  Tensor bad = Tensor::zeros({4}, DType::f64);
  check_error([&] { add(a, bad); }, {"add", "b has shape [4]", "does not broadcast with a [2,3]"});
  check_error([&] { sub(a, bad); }, {"sub", "b has shape [4]", "[2,3]"});
  check_error([&] { mul(a, bad); }, {"mul", "b has shape [4]", "[2,3]"});
  check_error([&] { div(a, bad); }, {"div", "b has shape [4]", "[2,3]"});
  check_error(
      [&] {
        add(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 1, 5}));
      },
      {"add", "b has shape [3,1,5]", "a [2,3,4]"});
  check_error([&] { broadcast_shapes("concat_like", {2}, {3}); }, {"concat_like", "[3]", "[2]"});

  Tensor f = Tensor::zeros({2, 3}, DType::f32);
  check_error([&] { add(f, a); }, {"add", "b", "f64", "f32"});
  check_error([&] { sub(a, f); }, {"sub", "b", "f32", "f64"});
  check_error([&] { mul(f, a); }, {"mul", "f64", "f32"});
  check_error([&] { div(f, a); }, {"div", "f64", "f32"});

  check_error([&] { add(Tensor(), a); }, {"add", "a", "undefined"});
  check_error([&] { mul(a, Tensor()); }, {"mul", "b", "undefined"});
  check_error([&] { exp(Tensor()); }, {"exp", "x", "undefined"});
  check_error([&] { rsub(1.0, Tensor()); }, {"rsub", "b", "undefined"});
  check_error([&] { clamp(a, 1.0, -1.0); }, {"clamp", "lo", "hi"});
  check_error([&] { sum_to(a, {3, 2}); }, {"sum_to", "shape [3,2]", "[2,3]"});
  check_error([&] { sum_to(a, {1, 2, 3}); }, {"sum_to", "shape [1,2,3]", "[2,3]"});
}

TEST_CASE("elementwise: f32 transcendental kernels agree with f64 libm") {
  // A dense sweep over the range where the functions vary, plus the saturated tails.
  std::vector<double> xs;
  for (int i = -20000; i <= 20000; ++i) xs.push_back(i * 0.001);
  for (double v : {-200.0, -100.0, -88.0, -87.5, -87.2, -50.0, 50.0, 80.0, 88.3, 88.8, 100.0})
    xs.push_back(v);
  const Shape s{static_cast<int64_t>(xs.size())};
  Tensor x32 = Tensor::from(xs, s, DType::f32);
  Tensor x64 = x32.to(DType::f64);  // the same (rounded) inputs
  struct Fn {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
    double rtol, atol;
  };
  const std::vector<Fn> fns = {
      {"exp", [](const Tensor& t) { return exp(t); }, 4e-7, 0},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }, 4e-7, 1e-30},
      {"silu", [](const Tensor& t) { return silu(t); }, 4e-7, 1e-30},
      {"gelu", [](const Tensor& t) { return gelu(t); }, 1e-6, 1e-7},
      {"elu", [](const Tensor& t) { return elu(t, 1.5); }, 4e-7, 2e-7},
  };
  for (const Fn& fn : fns) {
    CAPTURE(fn.name);
    std::vector<double> got = fn.f(x32).to_vector(), want = fn.f(x64).to_vector();
    for (size_t i = 0; i < xs.size(); ++i) {
      const double w = want[i];
      if (std::isinf(w) || std::abs(w) > 3.4e38) {
        CHECK(std::isinf(got[i]));
        continue;
      }
      INFO("x = " << xs[i] << ": f32 " << got[i] << ", f64 " << w);
      CHECK(std::abs(got[i] - w) <= fn.atol + fn.rtol * std::abs(w) + 1e-37);
    }
  }
  // Gradients in f32 against f64.
  for (const Fn& fn : fns) {
    CAPTURE(fn.name);
    Tensor a = x32.narrow0(19000, 21000).detach().requires_grad_();
    Tensor b = x64.narrow0(19000, 21000).detach().requires_grad_();
    fn.f(a).backward(Tensor::ones(a.shape()));
    fn.f(b).backward(Tensor::ones(b.shape(), DType::f64));
    CHECK(max_abs_diff(a.grad().to(DType::f64), b.grad()) <= 2e-6);
  }
  // NaN propagates.
  Tensor nan = Tensor::from({std::nan("")});
  for (const Fn& fn : fns) CHECK(std::isnan(fn.f(nan).item()));
}

TEST_CASE("relu propagates NaN, as a diverging model must be noticed") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<double> y =
      relu(Tensor::from(std::vector<float>{nan, -1.0f, 2.0f}, Shape{3})).to_vector();
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == 0.0);
  CHECK(y[2] == 2.0);
}
