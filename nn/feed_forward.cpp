#include "polyak/nn/feed_forward.h"

#include "polyak/ops/elementwise.h"
#include "polyak/ops/matmul.h"
#include "polyak/ops/nn_ops.h"

namespace polyak {

const std::vector<std::string>& activation_kinds() {
  static const std::vector<std::string> kinds = {"relu", "gelu"};
  return kinds;
}

Tensor activate(const std::string& kind, const Tensor& x) {
  check_choice("activate", "activation", kind, activation_kinds());
  return kind == "relu" ? relu(x) : gelu(x);
}

FeedForward::FeedForward(int64_t dim, int64_t hidden, const std::string& activation_,
                         double dropout_p, Generator& gen)
    : activation(activation_) {
  check_choice("FeedForward", "activation", activation, activation_kinds());
  relu_ = activation == "relu";
  linear1 = register_module("linear1", std::make_shared<Linear>(dim, hidden, gen));
  linear2 = register_module("linear2", std::make_shared<Linear>(hidden, dim, gen));
  dropout = register_module("dropout", std::make_shared<Dropout>(dropout_p, gen));
}

Tensor FeedForward::forward(const Tensor& x) {
  return dropout->forward(sublayer(x));
}

Tensor FeedForward::forward_residual(const Tensor& residual, const Tensor& x) {
  return dropout->forward_add(sublayer(x), residual);
}

Tensor FeedForward::sublayer(const Tensor& x) {
  Tensor h = linear1->forward(x);
  // ReLU, dropout and the second layer as one node (plain relu in eval mode or with p = 0).
  return relu_ ? relu_dropout_linear(h, dropout->p, dropout->is_training(), dropout->generator,
                                     linear2->weight, linear2->bias)
               : linear2->forward(dropout->forward(gelu(h)));
}

}  // namespace polyak
