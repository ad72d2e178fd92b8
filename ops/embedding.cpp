// embedding: a row lookup (ids as Indices or an integer tensor).
//
//   y[i, :] = W[ids[i], :]                    W [V, C], ids [n...], y [n..., C]
//   dW[v, :] = Σ_{i : ids[i] = v} dy[i, :]     [V, C]   (scatter-add; repeated ids sum)
//
// The backward splits the columns across threads, so each thread owns its slice of dW and
// repeated ids never race. The node keeps the ids and nothing else.
#include <algorithm>
#include <cstring>

#include "polyak/core/autograd.h"
#include "polyak/core/kernels_nn.h"
#include "polyak/core/threads.h"
#include "polyak/ops/nn_ops.h"

namespace polyak {

Tensor embedding(const Tensor& weight, const Indices& ids) {
  check_rank("embedding", "weight", weight, 2, "[V, C]");
  if (!weight.device().is_cpu()) return embedding(weight, to_tensor(ids).to(weight.device()));
  POLYAK_CHECK(ids.numel() == ids.shape.numel(), "embedding: ids has ", ids.numel(),
               " values, expected ", ids.shape.numel(), " (the numel of its shape ", ids.shape,
               ")");
  const int64_t V = weight.size(0), C = weight.size(1), n = ids.numel();
  for (int64_t i = 0; i < n; ++i)
    POLYAK_CHECK(ids[i] >= 0 && ids[i] < V, "embedding: ids has value ", ids[i], " at index ", i,
                 ", expected values in [0, ", V, ") (weight has ", V, " rows)");

  std::vector<int64_t> out_dims = ids.shape.dims();
  out_dims.push_back(C);
  Tensor out = Tensor::empty(Shape(out_dims), weight.dtype());
  dispatch(weight.dtype(), [&]<class T>() {
    const T* w = weight.data<T>();
    T* y = out.data<T>();
    parallel_for(n, C, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        std::memcpy(y + i * C, w + static_cast<int64_t>(ids[i]) * C,
                    sizeof(T) * static_cast<size_t>(C));
    });
  });

  record(out, "EmbeddingBackward", {weight},
         [values = ids.values, V, C](const Tensor& g) -> std::vector<Tensor> {
           Tensor dweight = Tensor::zeros(Shape{V, C}, g.dtype());
           const int64_t count = static_cast<int64_t>(values.size());
           dispatch(g.dtype(), [&]<class T>() {
             const T* dy = g.data<T>();
             T* dw = dweight.data<T>();
             parallel_for(C, count, [&](int64_t c0, int64_t c1) {
               for (int64_t i = 0; i < count; ++i) {
                 T* dst = dw + static_cast<int64_t>(values[static_cast<size_t>(i)]) * C;
                 const T* src = dy + i * C;
                 for (int64_t j = c0; j < c1; ++j) dst[j] += src[j];
               }
             });
           });
           return {dweight};
         });
  return out;
}

namespace {

// weight on a device: the ids must be an integer tensor on the same device; the backend's
// nn kernels look the rows up and scatter the gradient back.
Tensor embedding_on_device(const Tensor& weight, const Tensor& ids) {
  const char* fn = "embedding";
  check_rank(fn, "weight", weight, 2, "[V, C]");
  const auto kernel =
      device_kernel(fn, "weight", weight, &DeviceBackend::nn, &NnKernels::embedding);
  check_defined(fn, "ids", ids);
  POLYAK_CHECK(ids.dtype() == DType::i32 || ids.dtype() == DType::i64, fn, ": ids is ", ids.dtype(),
               ", expected an integer tensor (i32 or i64) of ids");
  POLYAK_CHECK(ids.device() == weight.device(), fn, ": ids is on ", ids.device(),
               " but weight is on ", weight.device(), ", expected one device");
  const int64_t V = weight.size(0), C = weight.size(1);
  std::vector<int64_t> out_dims = ids.shape().dims();
  out_dims.push_back(C);
  Tensor out = Tensor::empty(Shape(out_dims), weight.dtype(), weight.device());
  kernel(weight, ids, out);
  record(out, "EmbeddingBackward", {weight}, [ids, V, C](const Tensor& g) -> std::vector<Tensor> {
    Tensor dweight = Tensor::zeros(Shape{V, C}, g.dtype(), g.device());
    device_kernel("embedding (backward)", "gradient", g, &DeviceBackend::nn,
                  &NnKernels::embedding_backward)(g, ids, dweight);
    return {dweight};
  });
  return out;
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  if (weight.defined() && !weight.device().is_cpu()) return embedding_on_device(weight, ids);
  return embedding(weight, to_indices("embedding", "ids", ids));
}

}  // namespace polyak
