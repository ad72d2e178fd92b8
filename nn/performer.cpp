#include "polyak/nn/performer.h"

#include "polyak/nn/init.h"
#include "polyak/ops/attention/favor.h"

namespace polyak {

FavorFeatureMap::FavorFeatureMap(int64_t head_dim, int64_t features, int64_t redraw_interval,
                                 Generator& gen)
    : head_dim_(head_dim), features_(features), redraw_interval_(redraw_interval) {
  constexpr const char* fn = "FavorFeatureMap";
  POLYAK_CHECK(head_dim > 0, fn, ": head_dim = ", head_dim, ", expected a positive width D");
  POLYAK_CHECK(features > 0, fn, ": features = ", features,
               ", expected a positive number of random features m");
  POLYAK_CHECK(redraw_interval >= 0, fn, ": redraw_interval = ", redraw_interval,
               ", expected ≥ 0 (0: redraw only on request)");
  generator = fork(gen);
  register_generator("generator", generator);
  omega = orthogonal_random_features(features_, head_dim_, generator);
  register_buffer("omega", omega);
}

Tensor FavorFeatureMap::forward(const Tensor& x) const {
  return favor_feature_map(x, omega);
}

void FavorFeatureMap::advance() {
  // Each Ω serves exactly redraw_interval training forwards: a run whose length is a
  // multiple of the interval ends on features it trained with, not on fresh ones.
  if (redraw_interval_ > 0 && advances_ > 0 && advances_ % redraw_interval_ == 0) redraw();
  ++advances_;
}

void FavorFeatureMap::redraw() {
  Tensor fresh = orthogonal_random_features(features_, head_dim_, generator, omega.dtype());
  omega = omega.device() == fresh.device() ? fresh : fresh.to(omega.device());
  omega.set_name(path() + "omega");
}

}  // namespace polyak
