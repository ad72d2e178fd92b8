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
// dropout_add: y = r + dropout(x) in one pass with dropout's mask (a residual joined to a
// sublayer's output), where dropout and the sum would each read and write the whole tensor:
//
//   dr = dy (the gradient itself, no copy)        dx = dy ⊙ m / (1 − p)
#include <algorithm>
#include <cmath>

#include "polyak/core/autograd.h"
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
}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_defined("dropout", "x", x);
  POLYAK_CHECK(p >= 0 && p < 1, "dropout: p is ", p, ", expected p in [0, 1)");
  if (!training || p == 0) return x;
  check_cpu("dropout", "x", x);

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
  check_cpu(fn, "x", x);

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
  check_cpu("relu_dropout", "x", x);

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
