// Shared by the causal attention sweeps and the loops over heads (internal to ops/).
#pragma once

#include <cstdint>
#include <utility>

namespace polyak::detail {

// with_fixed_dv(Dv, [&]<int kDv>() { ... }): kDv > 0 fixes Dv at compile time for the
// common head widths, so the loops over Dv unroll and the per-position Dv-vectors (o_i,
// do_i, dv_i) stay in registers. kDv = 0 reads Dv at run time and keeps those vectors in
// the caller's scratch.
template <class F>
void with_fixed_dv(int64_t Dv, F&& body) {
  switch (Dv) {
    case 16:
      std::forward<F>(body).template operator()<16>();
      break;
    case 32:
      std::forward<F>(body).template operator()<32>();
      break;
    case 64:
      std::forward<F>(body).template operator()<64>();
      break;
    default:
      std::forward<F>(body).template operator()<0>();
      break;
  }
}

}  // namespace polyak::detail
