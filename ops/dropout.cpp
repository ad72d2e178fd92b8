// dropout: y = x ⊙ m / (1 − p),  m_i ~ Bernoulli(1 − p), when training; y = x otherwise.
//
//   dx = dy ⊙ m / (1 − p)                     [same shape as x]
//
// The mask comes from the counter-based generator, each 32-bit word giving two 16-bit
// draws: element i takes half i mod 2 (the low half first) of word (i / 2) mod 4 of block
// first + i / 8, and keeps when that half is at least ⌊p·2¹⁶⌋ (the uniform draw
// (half + 1)/2¹⁶ exceeds p; p is kept to 2⁻¹⁶, and each draw costs half a word). Blocks are
// independent, so the mask is drawn in parallel and the same (seed, offset) always gives
// the same mask. The node keeps no mask: the backward regenerates it from (seed, first)
// with the vectorised Philox, which is cheaper than storing and reading one. The mask loop
// is in dropout_isa.cpp, compiled once per ISA.
//
// relu_dropout: y = dropout(relu(x)), one pass with dropout's mask (the same draws, the same
// values). y > 0 exactly where x > 0 and the element was kept, so the node keeps y alone:
//
//   dx = dy / (1 − p) where y > 0, else 0
//
// which reads two tensors and writes one, where relu's and dropout's backwards read three
// and write two.
//
// On a device, the random kernels (cuda/kernels/random.h) draw the same words with the same
// Philox rounds and advance the generator by as many blocks: the same masks and values as the
// CPU's for the same (seed, offset).
//
// dropout_add: y = r + dropout(x) in one pass with dropout's mask (a residual joined to a
// sublayer's output), where dropout and the sum would each read and write the whole tensor:
//
//   dr = dy (the gradient itself, no copy)        dx = dy ⊙ m / (1 − p)
#include <algorithm>
#include <cmath>

#include "polyak/core/autograd.h"
#include "polyak/core/graph.h"
#include "polyak/core/kernels_random.h"
#include "polyak/ops/dropout_kernels.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/nn_ops.h"

namespace polyak {

namespace {
// dst[i] = src[i] · scale (relu(src[i]) · scale with `relu`) where the 16-bit draw i of the
// stream starting at block `first` is ≥ threshold, else 0, through the loop compiled for
// the ISA in use. Forward and backward both call it.
void apply_mask(const Tensor& src, Tensor& dst, const Generator& gen, uint64_t first,
                uint32_t threshold, double scale, bool relu = false,
                const Tensor& addend = Tensor()) {
  dispatch(src.dtype(), [&]<class T>() {
    with_active_isa([&](auto isa) {
      detail::dropout_apply<T>(isa, src.data<T>(), dst.data<T>(), src.numel(), gen.seed(), first,
                               threshold, static_cast<T>(scale), relu,
                               addend.defined() ? addend.data<T>() : nullptr);
    });
  });
}

// The draw of one dropout of x: the generator's blocks, the keep threshold and the scale.
struct Draw {
  uint64_t first;
  uint32_t threshold;
  double scale;
};

Draw draw(const Tensor& x, double p, Generator& gen) {
  const int64_t blocks = (x.numel() + 7) / 8;  // eight 16-bit draws per block
  // (h + 1)/2¹⁶ > p  ⇔  h ≥ ⌊p·2¹⁶⌋ for integer h; p < 1 keeps the threshold < 2¹⁶.
  return {gen.advance(static_cast<uint64_t>(blocks)),
          static_cast<uint32_t>(std::floor(std::ldexp(p, 16))), 1 / (1 - p)};
}

// ---- on a device: the backend's random kernels draw the CPU's mask from the same blocks ----

// Inside a graph's capture the blocks are counted from the generator's offset at each
// replay (core/graph.h: replay_offset).
DropoutDraw device_draw(Device device, Generator& gen, const Draw& d) {
  DropoutDraw k;
  k.seed = gen.seed();
  k.base = replay_offset(device, gen, d.first, &k.first);
  k.threshold = d.threshold;
  k.scale = static_cast<float>(d.scale);  // the CPU's float scale
  return k;
}

// The random group's dropout kernel for op `fn` on x's device (x must be f32).
auto dropout_kernel(const char* fn, const Tensor& x) {
  return device_kernel(fn, "x", x, &DeviceBackend::random, &RandomKernels::dropout);
}

// dropout, relu_dropout (relu) or dropout_add (residual defined) of x on its device, with
// gen advanced as on the CPU.
Tensor dropout_on_device(const char* fn, const Tensor& x, const Tensor& residual, double p,
                         bool relu, Generator& gen) {
  const auto kernel = dropout_kernel(fn, x);
  const DropoutDraw d = device_draw(x.device(), gen, draw(x, p, gen));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  kernel(x, residual, d, relu, out);
  if (relu) {
    record(out, "ReluDropoutBackward", {x},
           [y = out.detach(), scale = d.scale](const Tensor& g) -> std::vector<Tensor> {
             Tensor dx = Tensor::empty(g.shape(), g.dtype(), g.device());
             device_kernel("relu_dropout (backward)", "gradient", g, &DeviceBackend::random,
                           &RandomKernels::relu_dropout_backward)(y, g, scale, dx);
             return {dx};
           });
    return out;
  }
  auto backward = [d](const Tensor& g) {
    Tensor dx = Tensor::empty(g.shape(), g.dtype(), g.device());
    device_kernel("dropout (backward)", "gradient", g, &DeviceBackend::random,
                  &RandomKernels::dropout)(g, Tensor(), d, false, dx);
    return dx;
  };
  if (residual.defined()) {
    record(out, "DropoutAddBackward", {x, residual},
           [backward](const Tensor& g) -> std::vector<Tensor> {
             return {backward(g), g};
           });
  } else {
    record(out, "DropoutBackward", {x},
           [backward](const Tensor& g) -> std::vector<Tensor> { return {backward(g)}; });
  }
  return out;
}
}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_defined("dropout", "x", x);
  POLYAK_CHECK(p >= 0 && p < 1, "dropout: p is ", p, ", expected p in [0, 1)");
  if (!training || p == 0) return x;
  if (!x.device().is_cpu()) return dropout_on_device("dropout", x, Tensor(), p, false, gen);

  const auto [first, threshold, scale] = draw(x, p, gen);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  apply_mask(x, out, gen, first, threshold, scale);

  // The mask is not saved: the backward draws the same counter-based words again, which
  // costs less than writing and reading a mask.
  record(out, "DropoutBackward", {x},
         [gen, first, threshold, scale](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = Tensor::empty(g.shape(), g.dtype());
           apply_mask(g, dx, gen, first, threshold, scale);
           return {dx};
         });
  return out;
}

Tensor dropout_add(const Tensor& x, const Tensor& residual, double p, bool training,
                   Generator& gen) {
  constexpr const char* fn = "dropout_add";
  check_defined(fn, "x", x);
  check_defined(fn, "residual", residual);
  POLYAK_CHECK(p >= 0 && p < 1, fn, ": p is ", p, ", expected p in [0, 1)");
  POLYAK_CHECK(residual.shape() == x.shape(), fn, ": residual has shape ", residual.shape(),
               ", expected x's ", x.shape());
  check_same_dtype(fn, "x", x, "residual", residual);
  check_same_device(fn, "x", x, "residual", residual);
  if (!training || p == 0) return residual + x;
  if (!x.device().is_cpu()) return dropout_on_device(fn, x, residual, p, false, gen);

  const auto [first, threshold, scale] = draw(x, p, gen);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  apply_mask(x, out, gen, first, threshold, scale, /*relu=*/false, residual);
  record(out, "DropoutAddBackward", {x, residual},
         [gen, first, threshold, scale](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = Tensor::empty(g.shape(), g.dtype());
           apply_mask(g, dx, gen, first, threshold, scale);
           return {dx, g};
         });
  return out;
}

Tensor relu_dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_defined("relu_dropout", "x", x);
  POLYAK_CHECK(p >= 0 && p < 1, "relu_dropout: p is ", p, ", expected p in [0, 1)");
  if (!training || p == 0) return relu(x);
  if (!x.device().is_cpu()) return dropout_on_device("relu_dropout", x, Tensor(), p, true, gen);

  const auto [first, threshold, scale] = draw(x, p, gen);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  apply_mask(x, out, gen, first, threshold, scale, /*relu=*/true);
  record(out, "ReluDropoutBackward", {x},
         [y = out.detach(), scale](const Tensor& g) -> std::vector<Tensor> {
           Tensor dx = Tensor::empty(g.shape(), g.dtype());
           dispatch(g.dtype(), [&]<class T>() {
             with_active_isa([&](auto isa) {
               detail::relu_dropout_backward<T>(isa, y.data<T>(), g.data<T>(), dx.data<T>(),
                                                g.numel(), static_cast<T>(scale));
             });
           });
           return {dx};
         });
  return out;
}

}  // namespace polyak
