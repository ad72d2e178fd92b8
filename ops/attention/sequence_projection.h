// Linformer's projection along the sequence axis (docs/math.md §7; Wang et al. 2020, eq. 7):
// K and V of N positions become k rows each, so that softmax attention over them costs
// O(N·k) instead of O(N²).
//
// Dimension legend: B batch, H heads, N positions, D width, k projected length, M the
// longest sequence (the columns of the learned projection).
#pragma once

#include "polyak/core/tensor.h"

namespace polyak {

// y_bh = e[:, 0:N] · x_bh  for every (b, h): x [B,H,N,D], e [k, M] with N ≤ M → [B,H,k,D].
// One e is shared by every batch row and head; a sequence shorter than M uses the first
// N columns (and the rest of e gets a zero gradient). Differentiable in x and e.
// f32 or f64 on the CPU; f32 on a device (x and e on one device).
Tensor sequence_projection(const Tensor& x, const Tensor& e);

}  // namespace polyak
