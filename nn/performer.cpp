#include "polyak/nn/performer.h"

#include "polyak/core/graph.h"
#include "polyak/nn/init.h"
#include "polyak/nn/kinds.h"
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
  register_counter("forwards", advances_);
  omega = orthogonal_random_features(features_, head_dim_, generator);
  register_buffer("omega", omega);
}

Tensor FavorFeatureMap::forward(const Tensor& x) const {
  return favor_feature_map(x, omega);
}

void FavorFeatureMap::advance() {
  const Device device = omega.device();
  if (is_capturing(device)) {
    // In a graph's capture the forward runs at each replay: it is counted then, and a due
    // redraw is copied into Ω's memory, which the graph reads, before the replay starts.
    before_replay(device, [this] { count_forward(/*in_place=*/true); });
    return;
  }
  count_forward(/*in_place=*/false);
}

void FavorFeatureMap::count_forward(bool in_place) {
  // Each Ω serves exactly redraw_interval training forwards: a run whose length is a
  // multiple of the interval ends on features it trained with, not on fresh ones.
  if (redraw_interval_ > 0 && advances_ > 0 && advances_ % redraw_interval_ == 0) {
    if (in_place) {
      omega.copy_(orthogonal_random_features(features_, head_dim_, generator, omega.dtype()));
    } else {
      redraw();
    }
  }
  ++advances_;
}

void FavorFeatureMap::redraw() {
  // Drawn on the host (a QR per block, in f64) from this module's generator, so a model on a
  // device draws the CPU's numbers; copied to the device once per redraw, not per forward.
  Tensor fresh = orthogonal_random_features(features_, head_dim_, generator, omega.dtype());
  omega = omega.device() == fresh.device() ? fresh : fresh.to(omega.device());
  omega.set_name(path() + "omega");
}

const ParamSchema& PerformerParams::schema() {
  using P = PerformerParams;
  static const ParamSchema s = make_schema<P>(
      "Performer", {param(&P::features, "features", "--features", "Performer's random features m",
                          positive_integer()),
                    param(&P::redraw, "redraw", "--redraw",
                          "Performer: training steps between feature redraws (0: never)",
                          non_negative_integer("0: redraw only on request")),
                    eps_field<P>()});
  return s;
}

const AttentionSpec& performer_attention_spec() {
  static const AttentionSpec spec = [] {
    AttentionSpec s;
    s.name = "performer";
    s.summary = "linear attention on FAVOR+ random features, docs/math.md §7";
    s.params = &PerformerParams::schema();
    s.make = [](const AttentionConfig& c, Generator& g) {
      const PerformerParams& p = c.params.as<PerformerParams>();
      const int64_t head_dim = c.resolved_head_dim();
      return std::make_shared<LinearAttention>(
          c, g,
          [&](Generator& gen) {
            return std::make_shared<FavorFeatureMap>(head_dim, p.features, p.redraw, gen);
          },
          p.eps);
    };
    s.flops = [](const AttentionConfig& c, int64_t) {
      // q and k mapped through m features, then linear attention of width m.
      const double h = static_cast<double>(c.heads);
      const double dh = static_cast<double>(c.resolved_head_dim());
      const double m = static_cast<double>(c.params.as<PerformerParams>().features);
      return projection_flops(c) + h * (2 * 2 * dh * m + 2 * m * dh + 2 * m * dh + 4 * m);
    };
    s.parameters = projection_parameters;
    s.kept_bytes = [](const AttentionConfig&, int64_t) { return 0.0; };
    s.extra_activations = [](const AttentionConfig& c) {
      // φ(q) and φ(k), m wide per head (measured: 1 to 2 h·m per token).
      return 2 * static_cast<double>(c.heads * c.params.as<PerformerParams>().features);
    };
    s.buffers = [](const AttentionConfig& c) {
      return static_cast<double>(c.params.as<PerformerParams>().features * c.resolved_head_dim());
    };
    return s;
  }();
  return spec;
}

}  // namespace polyak
