// The nn kernels (cuda/kernels/nn.h) through the ops' device branches, against the CPU ops,
// on every device of kernel_devices(): forward, and backward with a random cotangent.
#include <vector>

#include "kernel_devices.h"

using namespace polyak;
using namespace polyak::testing;

TEST_CASE("device embedding: the rows of weight, for i32 and i64 ids") {
  Generator gen(5);
  const Tensor w = Tensor::randn({7, 5}, gen);
  const std::vector<int64_t> values = {6, 0, 3, 3, 1, 6, 2, 5};
  const Tensor ids = Tensor::from_ints(values, {2, 4});
  const Tensor reference = embedding(w, ids);
  for (const Device dev : kernel_devices()) {
    for (DType dt : {DType::i32, DType::i64}) {
      INFO(name(dt));
      const Tensor y = embedding(w.to(dev), ids.to(dt).to(dev));
      CHECK(y.device() == dev);
      CHECK(y.shape() == Shape({2, 4, 5}));
      check_close(y, reference, 0, 0, "embedding");
    }
    // Bad input is checked on the host, before any kernel.
    check_error([&] { (void)embedding(w.to(dev), ids); },
                {"embedding", "ids is on cpu", "weight is on", "expected one device"});
    check_error([&] { (void)embedding(w.to(dev), Tensor::from({1.0, 2.0}).to(dev)); },
                {"embedding", "ids is f32", "integer tensor"});
    check_error([&] { (void)embedding(w.to(DType::f64).to(dev), ids.to(dev)); },
                {"embedding", "weight is f64", "expected f32"});
  }
}

TEST_CASE("device embedding: an id outside the table gives a row of NaN") {
  Generator gen(6);
  const Tensor w = Tensor::randn({3, 2}, gen);
  for (const Device dev : kernel_devices()) {
    const std::vector<double> y =
        embedding(w.to(dev), Tensor::from_ints({1, 3, -1}, {3}).to(dev)).cpu().to_vector();
    CHECK(y[0] == w.to_vector()[2]);
    CHECK(y[1] == w.to_vector()[3]);
    for (size_t i = 2; i < 6; ++i) CHECK(std::isnan(y[i]));
  }
}
