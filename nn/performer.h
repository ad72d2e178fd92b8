// Performer's FAVOR+ feature map as a module (docs/math.md §7): the random features Ω live in a
// persistent buffer (checkpoints and to(dtype) carry them) and are redrawn from the
// module's own generator on request or on a schedule of training forwards.
//
// Kind "performer" is LinearAttention (docs/math.md §2) with this map.
#pragma once

#include <cstdint>

#include "polyak/core/rng.h"
#include "polyak/nn/attention.h"

namespace polyak {

// Performer's settings: m random features, redrawn every `redraw` training forwards (0: only
// on request), and linear attention's ε.
struct PerformerParams {
  int64_t features = 64;
  int64_t redraw = 1000;
  double eps = 1e-6;
  static const ParamSchema& schema();
};

class FavorFeatureMap final : public FeatureMap {
 public:
  // φ: [..., head_dim] → [..., features]. Ω is drawn at once from a generator forked from
  // `gen` (one block of it). redraw_interval: redraw after every that many advance() calls
  // (0: never).
  FavorFeatureMap(int64_t head_dim, int64_t features, int64_t redraw_interval, Generator& gen);

  // favor_feature_map(x, omega): x [B,H,N,D] (or any [..., D]) → [..., m].
  Tensor forward(const Tensor& x) const override;
  // One training forward of the owning attention: the (redraw_interval + 1)-th,
  // (2·redraw_interval + 1)-th, ... call redraws Ω before the forward maps anything, so
  // that each Ω serves redraw_interval forwards. Manual redraw() calls do not move this
  // schedule.
  void advance() override;
  // A fresh Ω from the module's generator, in omega's dtype. Ω is replaced, not written
  // into, so that a graph recorded before the redraw still backpropagates through the
  // features it used.
  void redraw();

  Generator generator;
  Tensor omega;  // [m, D], buffer "omega"

 private:
  // advance()'s count, and its redraw when one is due: into Ω's memory when `in_place`.
  void count_forward(bool in_place);

  int64_t head_dim_, features_, redraw_interval_;
  // advance() calls so far: counter "forwards", which a training checkpoint restores (a
  // model checkpoint does not: a model loaded to train afresh restarts the schedule).
  int64_t advances_ = 0;
};

const AttentionSpec& performer_attention_spec();

}  // namespace polyak
