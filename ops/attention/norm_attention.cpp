// TransNormer's ops (docs/math.md §5; Qin et al. 2022, §3–4 and their reference code):
// SRMSNorm, block-diagonal softmax attention, and the recurrent steps of NormAttention and
// DiagAttention.
//
// Dimension legend: B batch, H heads, N positions, D query/key width, Dv value width,
// L block length, nb = N / L whole blocks, d the normalised width, R rows (leading axes).
//
// ---- srms_norm, x [R,d] → y [R,d] ---------------------------------------------------------
//   r = ‖x‖₂ · d^{−1/2} = √(mean(x²)),  s = 1/(r + ε),  y = x · s
// Backward, with ∂r/∂x = x / (d·r) and ∂s/∂x = −s² · x / (d·r):
//   dx = s · dy − s² · (dy·x) / (d·r) · x                       [R,d]
// (at r = 0 the row is zero and the second term vanishes with it). This is rms_norm without
// a gain: the same function, the same fused kernel and RMSNormBackward node (ops/norm.cpp,
// OpenMP over rows, f32 and f64; on a device, its nn kernels), so srms_norm adds only its
// stricter eps (> 0: TransNormer divides a zero row by ε alone).
//
// ---- block_softmax_attention --------------------------------------------------------------
// Per block t of L positions, rows tL … tL+L−1 (the last one partial when causal):
//   Y_t = softmax(Q_t K_tᵀ / √D [+ causal mask]) V_t
// The whole blocks are one softmax_attention on [B, H·nb, L, ·] (a free reshape of
// [B, H, nb·L, ·]); a partial last block is a second, shorter call, and the two outputs are
// concatenated along N. Gradients are those of softmax_attention (and of slice/concat):
//   dV_t = P_tᵀ dY_t,  dS_t = P_t ⊙ (dY_t V_tᵀ − rowsum(P_t ⊙ dY_t V_tᵀ)),
//   dQ_t = dS_t K_t / √D,  dK_t = dS_tᵀ Q_t / √D
// Memory: the saved probabilities are [B,H,nb,L,L], O(N·L), never O(N²). On a device the
// same composition runs softmax_attention's tiled kernels (which save lse [B,H,N] only), and
// the step keeps its caches on q's device.
//
// ---- steps ------------------------------------------------------------------------------
//   causal_dot_product_step:      s += k vᵀ;  y = sᵀ q                       per (b, h)
//   block_softmax_attention_step: r = p mod L;  K[r] = k, V[r] = v;
//                                 y = softmax(q K[0..r]ᵀ / √D) V[0..r]
// After i steps from zero states these equal row i of causal_dot_product and of the causal
// block_softmax_attention: rows r+1 … L−1 of the caches hold the previous block and are
// never read; the softmax over rows 0..r is softmax_attention_step's, on a cache whose
// filled length is r.
#include "polyak/ops/attention/norm_attention.h"

#include <cmath>

#include "polyak/ops/attention/attention_checks.h"
#include "polyak/ops/attention/causal_sweep.h"
#include "polyak/ops/attention/softmax_attention.h"
#include "polyak/ops/nn_ops.h"
#include "polyak/ops/shape_ops.h"

namespace polyak {
namespace {

using detail::AttentionDims;
using detail::check_or_init_state;
using detail::check_state;
using detail::check_step_inputs;
using detail::StepDims;

// [B, H, nb·L, W] → [B, H·nb, L, W]: each block becomes a sequence of its own (a free view).
Tensor as_blocks(const Tensor& x, int64_t block) {
  const Shape& s = x.shape();
  return reshape(x, {s[0], s[1] * (s[2] / block), block, s[3]});
}

}  // namespace

Tensor srms_norm(const Tensor& x, double eps) {
  constexpr const char* fn = "srms_norm";
  check_defined(fn, "x", x);  // any device: rms_norm runs on x's
  POLYAK_CHECK(x.dim() >= 1, fn, ": x has shape ", x.shape(), ", expected rank ≥ 1 [..., d]");
  POLYAK_CHECK(std::isfinite(eps) && eps > 0, fn, ": eps is ", eps,
               ", expected a finite value > 0");
  return rms_norm(x, Tensor(), eps);
}

Tensor block_softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t block,
                               bool causal) {
  constexpr const char* fn = "block_softmax_attention";
  const AttentionDims d = detail::check_attention_inputs(fn, q, k, v, /*same_length=*/true,
                                                         /*on_device=*/true);
  POLYAK_CHECK(block > 0, fn, ": block = ", block, ", expected a positive integer");
  if (d.N <= block) return softmax_attention(q, k, v, causal);
  const int64_t whole = d.N / block * block, tail = d.N - whole;
  POLYAK_CHECK(causal || tail == 0, fn, ": N = ", d.N, " (q ", q.shape(),
               ") is not a multiple of block = ", block,
               ", expected a multiple of block or N ≤ block when not causal: pad the sequence to ",
               whole + block, " positions");
  if (tail == 0)
    return reshape(
        softmax_attention(as_blocks(q, block), as_blocks(k, block), as_blocks(v, block), causal),
        {d.B, d.H, d.N, d.Dv});

  // Causal with a partial last block: the whole blocks, then the tail as one short block.
  auto head = [&](const Tensor& x) { return as_blocks(slice(x, 2, 0, whole), block); };
  auto last = [&](const Tensor& x) { return slice(x, 2, whole, d.N); };
  Tensor y_head = reshape(softmax_attention(head(q), head(k), head(v), /*causal=*/true),
                          {d.B, d.H, whole, d.Dv});
  Tensor y_tail = softmax_attention(last(q), last(k), last(v), /*causal=*/true);
  return concat({y_head, y_tail}, 2);
}

Tensor causal_dot_product_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& s) {
  constexpr const char* fn = "causal_dot_product_step";
  const StepDims d = check_step_inputs(fn, q, k, v, /*on_device=*/true);
  check_or_init_state(fn, "s", s, {d.B, d.H, d.D, d.Dv}, "[B,H,D,Dv]", q.dtype(), q.device());
  detail::SweepStep step;  // the causal sweep's step without decay or normaliser
  step.a = s;
  return detail::causal_sweep_step(fn, d, q, k, v, step);
}

Tensor block_softmax_attention_step(const Tensor& q, const Tensor& k, const Tensor& v,
                                    Tensor& k_cache, Tensor& v_cache, int64_t block,
                                    int64_t position) {
  constexpr const char* fn = "block_softmax_attention_step";
  const StepDims d = check_step_inputs(fn, q, k, v, /*on_device=*/true);
  POLYAK_CHECK(block > 0, fn, ": block = ", block, ", expected a positive integer");
  POLYAK_CHECK(position >= 0, fn, ": position = ", position, ", expected ≥ 0");
  const DType dtype = q.dtype();
  const int64_t row = position % block;
  POLYAK_CHECK(k_cache.defined() == v_cache.defined(), fn, ": k_cache is ",
               k_cache.defined() ? "defined" : "undefined", " but v_cache is ",
               v_cache.defined() ? "defined" : "undefined", ", expected both or neither");
  const Shape k_expected{d.B, d.H, block, d.D}, v_expected{d.B, d.H, block, d.Dv};
  if (!k_cache.defined()) {
    POLYAK_CHECK(row == 0, fn, ": the caches are undefined at position ", position, " (row ", row,
                 " of a block of ", block,
                 "), expected defined caches holding the block's earlier rows");
    k_cache = Tensor::zeros(k_expected, dtype, q.device());
    v_cache = Tensor::zeros(v_expected, dtype, q.device());
  }
  check_state(fn, "k_cache", k_cache, k_expected, "[B,H,L,D]", dtype, q.device());
  check_state(fn, "v_cache", v_cache, v_expected, "[B,H,L,Dv]", dtype, q.device());
  // Filled length `row` < L: the softmax step writes row `row` and never grows the caches.
  int64_t filled = row;
  return softmax_attention_step(q, k, v, k_cache, v_cache, filled);
}

}  // namespace polyak
