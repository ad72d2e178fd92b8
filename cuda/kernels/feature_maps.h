// The feature maps of linear attention on a device (the shape group, core/kernels_shape.h), as
// kernel bodies and drivers (cuda/kernels/exec.h). CPU references: ops/attention/feature_maps.cpp
// (elu + 1) and ops/attention/favor.cpp (FAVOR+, docs/math.md §7).
//
// Dimension legend: B batch, N positions, H heads, D head width; R rows, m random features.
//
//   elu_feature_map         y = e^min(x,0) + max(x,0)                  one body per element
//   (backward)              dx = dy ⊙ e^min(x,0)                       one body per element
//   elu_feature_map_heads   x [B,N,H·D] → y [B,H,N,D]                  one body per element of y
//   (backward)              dy [B,H,N,D] → dx [B,N,H·D]                one body per element of dx
//   favor_feature_map       U = X Ωᵀ (gemm), then per row r:           one body per row
//                           y_rj = exp(c U_rj − (c²/2 ‖x_r‖² + ln(m)/2))
//   (backward)              G = c (dy ⊙ y)                             one body per element
//                           dX = G Ω (gemm), then per row r:           one body per row
//                           dx_r −= c (Σ_j G_rj) x_r
//
// FAVOR+ has no data-dependent stabiliser, as on the CPU (favor.h says why it cannot
// overflow): φ is a function of one row, which the recurrent form needs. The shift and the
// scale are the CPU's, computed in f32 the same way.
#pragma once

#include <cmath>
#include <cstdint>

#include "polyak/core/kernels_shape.h"
#include "polyak/core/tensor.h"
#include "polyak/cuda/kernels/exec.h"

namespace polyak::kernels {

// ---- bodies ----------------------------------------------------------------------------

POLYAK_HD inline float elu_plus_one(float x) {
  return ::expf(::fminf(x, 0.0f)) + ::fmaxf(x, 0.0f);
}

struct EluMapBody {
  const float* x;
  float* y;
  POLYAK_HD void operator()(int64_t i) const { y[i] = elu_plus_one(x[i]); }
};

struct EluMapBackwardBody {
  const float* x;
  const float* dy;
  float* dx;
  POLYAK_HD void operator()(int64_t i) const { dx[i] = dy[i] * ::expf(::fminf(x[i], 0.0f)); }
};

// The offset in x [B, N, H·D] of element e of the heads' layout [B, H, N, D].
struct HeadsLayout {
  int64_t N, H, D;
  POLYAK_HD int64_t token_offset(int64_t e) const {
    const int64_t d = e % D, n = (e / D) % N, h = (e / (D * N)) % H, b = e / (D * N * H);
    return ((b * N + n) * H + h) * D + d;
  }
};

struct EluMapHeadsBody {
  const float* x;
  float* y;
  HeadsLayout layout;
  POLYAK_HD void operator()(int64_t e) const { y[e] = elu_plus_one(x[layout.token_offset(e)]); }
};

// One body per element of dy's layout; each writes a distinct element of dx.
struct EluMapHeadsBackwardBody {
  const float* x;
  const float* dy;
  float* dx;
  HeadsLayout layout;
  POLYAK_HD void operator()(int64_t e) const {
    const int64_t t = layout.token_offset(e);
    dx[t] = dy[e] * ::expf(::fminf(x[t], 0.0f));
  }
};

// y [R, m] holds U = X Ωᵀ on entry, φ(x) on exit; row r.
struct FavorRowBody {
  const float* x;
  float* y;
  int64_t D, m;
  float c, log_sqrt_m;
  POLYAK_HD void operator()(int64_t r) const {
    const float* xr = x + r * D;
    float norm = 0.0f;
    for (int64_t d = 0; d < D; ++d) norm += xr[d] * xr[d];
    const float shift = norm * (c * c / 2) + log_sqrt_m;
    float* yr = y + r * m;
    for (int64_t j = 0; j < m; ++j) yr[j] = ::expf(yr[j] * c - shift);
  }
};

struct FavorGradBody {  // G = c (dy ⊙ y)
  const float* y;
  const float* dy;
  float* g;
  float c;
  POLYAK_HD void operator()(int64_t i) const { g[i] = dy[i] * y[i] * c; }
};

// dx [R, D] holds G Ω on entry; row r subtracts c (Σ_j G_rj) x_r.
struct FavorRowBackwardBody {
  const float* x;
  const float* g;
  float* dx;
  int64_t D, m;
  float c;
  POLYAK_HD void operator()(int64_t r) const {
    const float* gr = g + r * m;
    float s = 0.0f;
    for (int64_t j = 0; j < m; ++j) s += gr[j];
    const float scale = s * c;
    for (int64_t d = 0; d < D; ++d) dx[r * D + d] -= scale * x[r * D + d];
  }
};

// ---- drivers: the Tensor-level entries of the table -------------------------------------

template <class Exec>
struct FeatureMapOps {
  static const float* in(const Tensor& t) { return static_cast<const float*>(t.raw_data()); }
  static float* out(Tensor& t) { return static_cast<float*>(t.raw_data()); }

  static void elu_feature_map(const Tensor& x, Tensor& y) {
    Exec(x.device()).for_each(x.numel(), EluMapBody{in(x), out(y)});
  }

  static void elu_feature_map_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
    Exec(x.device()).for_each(x.numel(), EluMapBackwardBody{in(x), in(dy), out(dx)});
  }

  static HeadsLayout layout(const Tensor& x, int64_t heads) {
    return HeadsLayout{x.size(1), heads, x.size(2) / heads};
  }

  static void elu_feature_map_heads(const Tensor& x, int64_t heads, Tensor& y) {
    Exec(x.device()).for_each(y.numel(), EluMapHeadsBody{in(x), out(y), layout(x, heads)});
  }

  static void elu_feature_map_heads_backward(const Tensor& x, const Tensor& dy, int64_t heads,
                                             Tensor& dx) {
    Exec(x.device())
        .for_each(dy.numel(), EluMapHeadsBackwardBody{in(x), in(dy), out(dx), layout(x, heads)});
  }

  // c = D^{−1/4} and ln(m)/2, rounded to f32 as favor.cpp does.
  static float input_scale(int64_t D) {
    return static_cast<float>(std::pow(static_cast<double>(D), -0.25));
  }

  static void favor_feature_map(const Tensor& x, const Tensor& omega, Tensor& y) {
    const int64_t m = omega.size(0), D = omega.size(1), R = x.numel() / D;
    Exec ex(x.device());
    ex.gemm(in(x), in(omega), out(y), GemmArgs{1, R, m, D, false, true, 0, 0, 0});  // X Ωᵀ
    ex.for_each(R, FavorRowBody{in(x), out(y), D, m, input_scale(D),
                                static_cast<float>(0.5 * std::log(static_cast<double>(m)))});
  }

  static void favor_feature_map_backward(const Tensor& x, const Tensor& omega, const Tensor& y,
                                         const Tensor& dy, Tensor& dx) {
    const int64_t m = omega.size(0), D = omega.size(1), R = x.numel() / D;
    const float c = input_scale(D);
    Exec ex(x.device());
    Tensor g = Tensor::empty(Shape{R, m}, DType::f32, x.device());
    ex.for_each(R * m, FavorGradBody{in(y), in(dy), out(g), c});
    ex.gemm(in(g), in(omega), out(dx), GemmArgs{1, R, D, m, false, false, 0, 0, 0});  // G Ω
    ex.for_each(R, FavorRowBackwardBody{in(x), in(g), out(dx), D, m, c});
  }
};

}  // namespace polyak::kernels
