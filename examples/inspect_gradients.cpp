// Teaching: a gradient you can see. Builds y = Σ tanh(W x + b)², prints every gradient next
// to its closed form, watches one with a hook, checks them all with gradcheck and writes
// the graph as Graphviz DOT.
//
//   example_inspect_gradients [graph.dot]
#include <polyak/polyak.h>
#include <iostream>

using namespace polyak;

int main(int argc, char** argv) {
  Generator gen(0);
  Tensor x = Tensor::randn({3}, gen, DType::f64).requires_grad_().set_name("x");
  Tensor w = Tensor::randn({2, 3}, gen, DType::f64).requires_grad_().set_name("W");
  Tensor b = Tensor::randn({2}, gen, DType::f64).requires_grad_().set_name("b");

  Tensor h = matmul(w, x.reshape({3, 1})).reshape({2}) + b;  // h = W x + b
  Tensor t = tanh(h);
  t.retain_grad();  // keep the gradient of a non-leaf
  h.register_hook([](const Tensor& g) {
    std::cout << "hook: dy/dh = " << g << "\n";
    return Tensor();  // observe only
  });
  Tensor y = sum(t * t);
  y.backward();

  std::cout << "y      = " << y.item() << "\n";
  std::cout << "dy/dt  = " << t.grad() << "   (closed form 2t = " << (2.0 * t).detach() << ")\n";
  std::cout << "dy/db  = " << b.grad() << "   (2t(1 − t²))\n";
  std::cout << "dy/dW  = " << w.grad() << "   (outer(dy/db, x))\n";
  std::cout << "dy/dx  = " << x.grad() << "   (Wᵀ dy/db)\n";

  GradcheckResult r = gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor hh = matmul(in[1], in[0].reshape({3, 1})).reshape({2}) + in[2];
        return tanh(hh) * tanh(hh);
      },
      {x, w, b});
  std::cout << "gradcheck: " << (r.ok ? "passed" : "FAILED") << " (" << r.message << ")\n";

  std::string path = argc > 1 ? argv[1] : "graph.dot";
  write_dot(y, path);
  std::cout << "graph written to " << path << " (render with: dot -Tpng " << path << ")\n";
  return r.ok ? 0 : 1;
}
