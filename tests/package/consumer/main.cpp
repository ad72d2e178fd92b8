#include <polyak/polyak.h>

int main() {
  using namespace polyak;
  Tensor x = Tensor::from({1.0, 2.0, 3.0}, DType::f64).requires_grad_();
  Tensor y = sum(x * x);
  y.backward();
  std::vector<double> g = x.grad().to_vector();  // 2x
  return (g[0] == 2.0 && g[1] == 4.0 && g[2] == 6.0) ? 0 : 1;
}
