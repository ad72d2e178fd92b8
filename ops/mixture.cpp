// logistic_mixture_nll and sample_logistic_mixture (ops/mixture.h): one pixel per body, on the
// CPU here and on a device through the backend's nn kernels (core/kernels_nn.h).
#include "polyak/ops/mixture.h"

#include <vector>

#include "polyak/core/autograd.h"
#include "polyak/core/indices.h"
#include "polyak/core/kernels_nn.h"
#include "polyak/core/logistic_mixture.h"
#include "polyak/core/threads.h"

namespace polyak {
namespace {

constexpr const char* kFn = "logistic_mixture_nll";

// K from params [..., 3K], after checking the shapes against targets [...].
int64_t check_inputs(const Tensor& params, const Tensor& targets) {
  check_defined(kFn, "params", params);
  check_defined(kFn, "targets", targets);
  POLYAK_CHECK(is_floating(params.dtype()), kFn, ": params is ", params.dtype(),
               ", expected f32 or f64");
  POLYAK_CHECK(targets.dtype() == DType::i32 || targets.dtype() == DType::i64, kFn, ": targets is ",
               targets.dtype(), ", expected an integer tensor (i32 or i64)");
  POLYAK_CHECK(params.dim() >= 1 && params.size(-1) > 0 && params.size(-1) % 3 == 0, kFn,
               ": params has shape ", params.shape(),
               ", expected [..., 3K]: each pixel's K logits, means and log-scales");
  const int64_t K = params.size(-1) / 3;
  POLYAK_CHECK(K <= mixture::kMaxComponents, kFn, ": params has K = ", K,
               " components, expected at most ", mixture::kMaxComponents);
  const Shape pixels(std::vector<int64_t>(params.shape().begin(), params.shape().end() - 1));
  POLYAK_CHECK(targets.shape() == pixels, kFn, ": targets has shape ", targets.shape(),
               ", expected ", pixels, " (one intensity per pixel of params ", params.shape(), ")");
  check_same_device(kFn, "params", params, "targets", targets);
  return K;
}

Tensor nll_on_device(const Tensor& params, const Tensor& targets, int64_t K) {
  const auto kernel =
      device_kernel(kFn, "params", params, &DeviceBackend::nn, &NnKernels::logistic_mixture_nll);
  Tensor out = Tensor::empty(targets.shape(), DType::f32, params.device());
  kernel(params, targets, K, out);
  record(out, "LogisticMixtureBackward", {params},
         [p = params.detach(), targets, K](const Tensor& g) -> std::vector<Tensor> {
           Tensor dp = Tensor::empty(p.shape(), p.dtype(), p.device());
           device_kernel("logistic_mixture_nll (backward)", "gradient", g, &DeviceBackend::nn,
                         &NnKernels::logistic_mixture_nll_backward)(p, targets, g, K, dp);
           return {dp};
         });
  return out;
}

}  // namespace

Tensor logistic_mixture_nll(const Tensor& params, const Tensor& targets) {
  const int64_t K = check_inputs(params, targets);
  if (!params.device().is_cpu()) return nll_on_device(params, targets, K);
  const Indices x = to_indices(kFn, "targets", targets);
  for (int64_t i = 0; i < x.numel(); ++i)
    POLYAK_CHECK(x[i] >= 0 && x[i] < mixture::kLevels, kFn, ": targets[", i, "] = ", x[i],
                 ", expected an intensity in [0, 255]");
  const int64_t R = x.numel();
  const Tensor p = params;
  Tensor out = Tensor::empty(targets.shape(), params.dtype());
  dispatch(params.dtype(), [&]<class T>() {
    const T* pp = p.data<T>();
    T* po = out.data<T>();
    parallel_for(R, 40 * K, [&](int64_t begin, int64_t end) {
      T scratch[mixture::kMaxComponents];
      for (int64_t r = begin; r < end; ++r)
        po[r] = mixture::pixel_nll<T>(pp + r * 3 * K, K, x[r], T(1), nullptr, scratch);
    });
  });
  record(out, "LogisticMixtureBackward", {params},
         [p = p.detach(), x, K, R](const Tensor& g) -> std::vector<Tensor> {
           Tensor dp = Tensor::empty(p.shape(), p.dtype());
           const Tensor gc = g;
           dispatch(p.dtype(), [&]<class T>() {
             const T* pp = p.data<T>();
             const T* pg = gc.data<T>();
             T* pd = dp.data<T>();
             parallel_for(R, 80 * K, [&](int64_t begin, int64_t end) {
               T scratch[mixture::kMaxComponents];
               for (int64_t r = begin; r < end; ++r)
                 mixture::pixel_nll<T>(pp + r * 3 * K, K, x[r], pg[r], pd + r * 3 * K, scratch);
             });
           });
           return {dp};
         });
  return out;
}

Tensor sample_logistic_mixture(const Tensor& params, Generator& gen) {
  const char* fn = "sample_logistic_mixture";
  check_defined(fn, "params", params);
  POLYAK_CHECK(is_floating(params.dtype()), fn, ": params is ", params.dtype(),
               ", expected f32 or f64");
  POLYAK_CHECK(params.dim() >= 1 && params.size(-1) > 0 && params.size(-1) % 3 == 0, fn,
               ": params has shape ", params.shape(),
               ", expected [..., 3K]: each pixel's K logits, means and log-scales");
  const int64_t K = params.size(-1) / 3;
  const Tensor p = params.cpu().to(DType::f64);
  const Shape pixels(std::vector<int64_t>(params.shape().begin(), params.shape().end() - 1));
  Tensor out = Tensor::empty(pixels, DType::i64);
  const double* pp = p.data<double>();
  int64_t* po = out.data<int64_t>();
  for (int64_t r = 0; r < pixels.numel(); ++r) {
    const auto words = gen.block(gen.advance(1));
    po[r] = mixture::sample_pixel<double>(pp + r * 3 * K, K, uint_to_unit(words[0]) - 0x1p-32,
                                          uint_to_unit(words[1]));
  }
  return out;
}

}  // namespace polyak
