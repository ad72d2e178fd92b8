#include "polyak/nn/norm.h"

#include "polyak/ops/nn_ops.h"

namespace polyak {

LayerNorm::LayerNorm(int64_t dim, double eps_) : eps(eps_) {
  POLYAK_CHECK(dim > 0, "LayerNorm: dim = ", dim, ", expected positive");
  POLYAK_CHECK(eps > 0, "LayerNorm: eps = ", eps, ", expected positive");
  weight = Tensor::ones({dim});
  bias = Tensor::zeros({dim});
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}

Tensor LayerNorm::forward(const Tensor& x) const {
  return layer_norm(x, weight, bias, eps);
}

RMSNorm::RMSNorm(int64_t dim, double eps_) : eps(eps_) {
  POLYAK_CHECK(dim > 0, "RMSNorm: dim = ", dim, ", expected positive");
  POLYAK_CHECK(eps > 0, "RMSNorm: eps = ", eps, ", expected positive");
  weight = Tensor::ones({dim});
  register_parameter("weight", weight);
}

Tensor RMSNorm::forward(const Tensor& x) const {
  return rms_norm(x, weight, eps);
}

const std::vector<std::string>& norm_kinds() {
  static const std::vector<std::string> kinds = {"layernorm", "rmsnorm"};
  return kinds;
}

std::shared_ptr<Norm> make_norm(const std::string& kind, int64_t dim, double eps) {
  check_choice("make_norm", "kind", kind, norm_kinds());
  if (kind == "rmsnorm") return std::make_shared<RMSNorm>(dim, eps);
  return std::make_shared<LayerNorm>(dim, eps);
}

}  // namespace polyak
