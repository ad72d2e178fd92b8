// The autograd engine: summing over shared subexpressions, diamonds, accumulation, hooks,
// retain_grad, no-grad mode, retain_graph, error cases, detach, graph export.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using Vec = std::vector<double>;

namespace {

Tensor leaf(const Vec& values) {
  return Tensor::from(values, Shape{static_cast<int64_t>(values.size())}, DType::f64)
      .requires_grad_();
}
Tensor values(const Vec& v) {
  return Tensor::from(v, Shape{static_cast<int64_t>(v.size())}, DType::f64);
}
void check_values(const Tensor& t, const Vec& expected, double tol = 1e-12) {
  REQUIRE(t.defined());
  Vec got = t.to_vector();
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == doctest::Approx(expected[i]).epsilon(tol));
  }
}

const Vec kX = {0.5, -1.5, 2.0};
const Vec kC = {0.3, -0.7, 1.1};  // a non-uniform cotangent

}  // namespace

TEST_CASE("autograd: a shared subexpression y = x*x + x sums both paths") {
  Tensor x = leaf(kX);
  Tensor y = x * x + x;
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  y.backward(values(kC));
  Vec expected;
  for (size_t i = 0; i < kX.size(); ++i) expected.push_back(kC[i] * (2 * kX[i] + 1));
  check_values(x.grad(), expected);
}

TEST_CASE("autograd: a diamond runs the shared node once, with the summed gradient") {
  // h = x*x;  p = 3h;  q = h + 1;  z = p*q  →  dz/dh = 3q + p = 6h + 3,  dz/dx = (6h + 3)·2x.
  Tensor x = leaf(kX);
  Tensor h = x * x;
  int h_hook_calls = 0;
  Tensor h_grad_seen;
  h.register_hook([&](const Tensor& g) {
    ++h_hook_calls;
    h_grad_seen = g;
    return Tensor();
  });
  Tensor p = h * 3.0;
  Tensor q = h + 1.0;
  Tensor z = p * q;
  z.backward(values(kC));
  CHECK(h_hook_calls == 1);
  Vec dh, dx;
  for (size_t i = 0; i < kX.size(); ++i) {
    const double hv = kX[i] * kX[i];
    dh.push_back(kC[i] * (6 * hv + 3));
    dx.push_back(kC[i] * (6 * hv + 3) * 2 * kX[i]);
  }
  check_values(h_grad_seen, dh);
  check_values(x.grad(), dx);
}

TEST_CASE("autograd: two inputs reached through several paths, with a scalar root") {
  // L = Σ (a·b + a·a·b) → dL/da = b + 2ab, dL/db = a + a².
  Tensor a = leaf({1.0, -2.0});
  Tensor b = leaf({3.0, 0.5});
  Tensor L = sum(a * b + a * a * b);
  CHECK(L.numel() == 1);
  L.backward();
  check_values(a.grad(), {3 + 2 * 3.0, 0.5 + 2 * -2.0 * 0.5});
  check_values(b.grad(), {1 + 1.0, -2 + 4.0});
}

TEST_CASE("autograd: leaf gradients accumulate across backward calls until zero_grad") {
  Tensor x = leaf(kX);
  sum(x * x).backward();
  Tensor first = x.grad();
  sum(x * x).backward();
  Vec twice;
  for (double v : kX) twice.push_back(4 * v);
  check_values(x.grad(), twice);
  // The first gradient handed out is not modified in place by the second accumulation.
  Vec once;
  for (double v : kX) once.push_back(2 * v);
  check_values(first, once);
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  sum(x * x).backward();
  check_values(x.grad(), once);
}

TEST_CASE("autograd: leaf gradients do not alias each other or the graph's tensors") {
  // z = a + b hands one incoming gradient to both inputs; each leaf must own its copy.
  Tensor a = leaf({1.0, 2.0});
  Tensor b = leaf({3.0, 4.0});
  Tensor g = values({0.5, 0.25});
  (a + b).backward(g);
  REQUIRE(a.grad().defined());
  REQUIRE(b.grad().defined());
  CHECK_FALSE(a.grad().shares_storage(b.grad()));
  CHECK_FALSE(a.grad().shares_storage(g));
  a.grad().data<double>()[0] = 100;
  CHECK(b.grad().to_vector() == Vec{0.5, 0.25});
  CHECK(g.to_vector() == Vec{0.5, 0.25});
}

TEST_CASE("autograd: sums of gradients go in place only into a buffer nothing else holds") {
  // b = a + c hands one gradient tensor to both a and c (c = 5a); a's second gradient, 5g,
  // then arrives while c's buffer (and b's retained gradient, and the cotangent) still hold
  // the first. The engine may add into 5g (held by nobody else), never into g.
  Tensor x = leaf(kX);
  Tensor a = x * 2.0;
  Tensor c = a * 5.0;
  Tensor b = a + c;
  b.retain_grad();
  Tensor seen_on_c;
  c.register_hook([&](const Tensor& g) {
    seen_on_c = g;
    return Tensor();
  });
  const Tensor cot = values(kC);
  b.backward(cot);
  check_values(x.grad(), {kC[0] * 12, kC[1] * 12, kC[2] * 12});
  check_values(b.grad(), kC);
  check_values(seen_on_c, kC);
  CHECK(cot.to_vector() == kC);

  // A shared subexpression used three times: the first sum goes into the first fresh
  // gradient, the second into that sum; the values are those of the plain sums.
  Tensor y = leaf(kX);
  Tensor h = y * y;
  (h * 2.0 + h * 3.0 + h * 4.0).backward(values(kC));
  check_values(y.grad(), {kC[0] * 9 * 2 * kX[0], kC[1] * 9 * 2 * kX[1], kC[2] * 9 * 2 * kX[2]});
}

TEST_CASE("autograd: hooks observe and replace gradients, on leaves and non-leaves") {
  SUBCASE("observe on a leaf") {
    Tensor x = leaf(kX);
    Tensor seen;
    x.register_hook([&](const Tensor& g) {
      seen = g;
      return Tensor();
    });
    (x * 2.0).backward(values(kC));
    check_values(seen, {0.6, -1.4, 2.2});
    check_values(x.grad(), {0.6, -1.4, 2.2});
  }
  SUBCASE("replace on a leaf") {
    Tensor x = leaf(kX);
    x.register_hook([](const Tensor& g) { return g * 10.0; });
    (x * 2.0).backward(values(kC));
    check_values(x.grad(), {6, -14, 22});
  }
  SUBCASE("replace on a non-leaf changes what flows upstream") {
    // y = x*x, z = 3y; the hook on y zeroes its second element.
    Tensor x = leaf(kX);
    Tensor y = x * x;
    y.register_hook([](const Tensor& g) { return g * values({1.0, 0.0, 1.0}); });
    (y * 3.0).backward(values(kC));
    check_values(x.grad(), {kC[0] * 3 * 2 * kX[0], 0.0, kC[2] * 3 * 2 * kX[2]});
  }
  SUBCASE("a hook that returns another shape is an error") {
    Tensor x = leaf(kX);
    Tensor y = x * x;
    y.register_hook([](const Tensor&) { return values({1.0}); });
    check_error([&] { (y * 3.0).backward(values(kC)); }, {"backward", "hook", "[1]", "[3]"});
  }
  SUBCASE("register_hook on a tensor outside any graph throws") {
    check_error([&] { values(kX).register_hook([](const Tensor&) { return Tensor(); }); },
                {"register_hook"});
  }
}

TEST_CASE("autograd: retain_grad keeps a non-leaf's gradient") {
  Tensor x = leaf(kX);
  Tensor y = x * x;
  Tensor w = x * 2.0;  // not retained
  y.retain_grad();
  (y * 3.0 + w).backward(values(kC));
  check_values(y.grad(), {0.9, -2.1, 3.3});
  CHECK_FALSE(w.grad().defined());
  check_values(x.grad(),
               {kC[0] * (6 * kX[0] + 2), kC[1] * (6 * kX[1] + 2), kC[2] * (6 * kX[2] + 2)});
}

TEST_CASE("autograd: NoGradGuard records no graph, and restores the mode") {
  Tensor x = leaf(kX);
  CHECK(GradMode::enabled());
  {
    NoGradGuard guard;
    CHECK_FALSE(GradMode::enabled());
    Tensor y = x * x + x;
    CHECK_FALSE(y.requires_grad());
    CHECK_FALSE(y.grad_fn());
    CHECK(y.is_leaf());
    check_error([&] { sum(y).backward(); }, {"backward"});
    { NoGradGuard nested; }
    CHECK_FALSE(GradMode::enabled());
  }
  CHECK(GradMode::enabled());
  Tensor z = x * x;
  CHECK(z.requires_grad());
  CHECK(z.grad_fn());
}

TEST_CASE("autograd: retain_graph") {
  SUBCASE("a second backward through a freed graph throws, naming backward and retain_graph") {
    Tensor x = leaf(kX);
    Tensor L = sum(x * x);
    L.backward();
    check_error([&] { L.backward(); }, {"backward", "retain_graph"});
  }
  SUBCASE("with retain_graph the second backward adds the same gradient again") {
    Tensor x = leaf(kX);
    Tensor L = sum(x * x * 3.0);
    L.backward(Tensor(), /*retain_graph=*/true);
    L.backward();
    check_values(x.grad(), {12 * kX[0], 12 * kX[1], 12 * kX[2]});
  }
}

TEST_CASE("autograd: backward's gradient argument is checked") {
  Tensor x = leaf(kX);
  Tensor y = x * x;
  check_error([&] { y.backward(); }, {"backward", "[3]", "single element"});
  check_error([&] { y.backward(values({1.0, 2.0})); }, {"backward", "grad", "[2]", "[3]"});
  check_error([&] { values(kX).backward(values(kX)); }, {"backward", "does not require grad"});
  // The failed calls left the graph usable.
  y.backward(values(kC));
  check_values(x.grad(), {kC[0] * 2 * kX[0], kC[1] * 2 * kX[1], kC[2] * 2 * kX[2]});
}

TEST_CASE("autograd: a leaf can be the root") {
  Tensor x = leaf({2.0});
  x.backward();
  check_values(x.grad(), {1.0});
}

TEST_CASE("autograd: detach shares the data and cuts the graph") {
  Tensor x = leaf(kX);
  Tensor y = x * x;
  Tensor d = y.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.is_leaf());
  CHECK(d.shares_storage(y));
  CHECK(d.to_vector() == y.to_vector());
  // Through the detached branch no gradient flows: z = y + d → dz/dx = 2x only.
  (y + d).backward(values(kC));
  check_values(x.grad(), {kC[0] * 2 * kX[0], kC[1] * 2 * kX[1], kC[2] * 2 * kX[2]});
}

TEST_CASE("autograd: export_dot names the nodes and the leaves") {
  Tensor w = leaf(kX);
  w.set_name("layer0.weight");
  CHECK(w.name() == "layer0.weight");
  Tensor custom = Tensor::zeros(Shape{3}, DType::f64);
  record(custom, "MyCustomBackward", {w},
         [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  Tensor y = custom * w;
  std::string dot = export_dot(y);
  CHECK(dot.find("digraph") != std::string::npos);
  CHECK(dot.find("layer0.weight") != std::string::npos);
  CHECK(dot.find("MyCustomBackward") != std::string::npos);
  REQUIRE(y.grad_fn());
  CHECK(dot.find(y.grad_fn()->name()) != std::string::npos);
}

TEST_CASE("autograd: a custom op recorded with record() takes part in backward") {
  // out = 2x computed by hand; its backward is written next to it, as ops/ does.
  Tensor x = leaf(kX);
  Tensor out = Tensor::empty(x.shape(), DType::f64);
  for (int64_t i = 0; i < 3; ++i) out.data<double>()[i] = 2 * x.data<double>()[i];
  record(out, "DoubleBackward", {x},
         [](const Tensor& g) -> std::vector<Tensor> { return {g * 2.0}; });
  REQUIRE(out.grad_fn());
  CHECK(out.grad_fn()->name() == "DoubleBackward");
  CHECK(out.grad_fn()->next.size() == 1);
  (out * out).backward(values(kC));  // d(4x²)/dx = 8x
  check_values(x.grad(), {kC[0] * 8 * kX[0], kC[1] * 8 * kX[1], kC[2] * 8 * kX[2]});

  // With no input requiring grad, record() records nothing.
  Tensor plain = Tensor::zeros(Shape{3}, DType::f64);
  record(plain, "NothingBackward", {values(kX)},
         [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  CHECK_FALSE(plain.grad_fn());
  CHECK_FALSE(plain.requires_grad());
}

TEST_CASE("autograd: write_dot writes the graph atomically") {
  namespace fs = std::filesystem;
  Tensor w = leaf(kX);
  w.set_name("embedding.weight");
  Tensor L = sum(w * w);
  const fs::path path = fs::temp_directory_path() / "polyak_test_core_graph.dot";
  write_dot(L, path.string());
  std::ifstream f(path);
  std::stringstream text;
  text << f.rdbuf();
  CHECK(text.str() == export_dot(L));
  CHECK(text.str().find("embedding.weight") != std::string::npos);
  for (const auto& entry : fs::directory_iterator(path.parent_path()))  // no temporary left
    CHECK(entry.path().filename().string().rfind(path.filename().string() + ".tmp", 0) ==
          std::string::npos);
  fs::remove(path);
  check_error([&] { write_dot(L, "/nonexistent-dir/graph.dot"); },
              {"write_dot", "/nonexistent-dir/graph.dot"});
}

TEST_CASE("autograd: retain_grad keeps the gradient after the tensor's hooks") {
  Tensor x = Tensor::from({1.0, 2.0}, DType::f64).requires_grad_();
  Tensor y = x * 3.0;
  y.retain_grad();
  y.register_hook([](const Tensor& g) { return g * 10.0; });  // registered after retain_grad
  sum(y).backward();
  CHECK(y.grad().to_vector() == std::vector<double>{10.0, 10.0});
  CHECK(x.grad().to_vector() == std::vector<double>{30.0, 30.0});
}
