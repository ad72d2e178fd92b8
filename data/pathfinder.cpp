// Pathfinder 32×32: growing the curves under the spacing rules and rendering them (layout and
// rules in pathfinder.h).
#include "polyak/data/pathfinder.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "polyak/core/error.h"
#include "polyak/data/example_stream.h"

namespace polyak {

namespace {

constexpr int32_t kSide = static_cast<int32_t>(kPathfinderSide);
constexpr int32_t kDash = 2;                 // pixels per dash
constexpr int32_t kLo = 1, kHi = kSide - 2;  // rows and columns a dash pixel may take
constexpr uint8_t kInk = 255;
constexpr int kTurnTries = 8;     // turns a dash tries before the dash before it is redrawn
constexpr int kTurnBudget = 4;    // turns per dash a start may try in all, backtracking included
constexpr int kCurveTries = 100;  // starts a curve tries before its image starts over
constexpr int64_t kImageTries = 1000;  // then the options leave no room: an error

using detail::mix64;
using detail::Words;

struct Pixel {
  int32_t r, c;
};

int32_t round_to_int(double x) {
  return static_cast<int32_t>(std::floor(x + 0.5));
}

// `from` moved n steps along `heading`, a step being the heading scaled to Chebyshev length
// 1: the result is at Chebyshev distance exactly n from `from` (the larger coordinate of the
// offset is ±n, the other is rounded), so steps of 1 give 8-connected pixels.
Pixel step(Pixel from, double heading, int32_t n) {
  const double dr = std::sin(heading), dc = std::cos(heading);
  const double scale = n / std::max(std::abs(dr), std::abs(dc));
  return {from.r + round_to_int(dr * scale), from.c + round_to_int(dc * scale)};
}

// A dash of kDash pixels from `first` along `heading`.
std::array<Pixel, kDash> dash_from(Pixel first, double heading) {
  std::array<Pixel, kDash> out{};
  for (int32_t t = 0; t < kDash; ++t) out[static_cast<size_t>(t)] = step(first, heading, t);
  return out;
}

// The image under construction: which curve owns each pixel, and which of its dashes.
class Canvas {
 public:
  Canvas() { clear(); }
  void clear() {
    owner_.fill(-1);
    dash_.fill(-1);
  }

  // Whether `p` may join dash `k` of curve `curve`: no pixel of another curve within
  // Chebyshev distance 2, none of the curve's dashes k ± 1 within 1, none of its other dashes
  // within 2.
  bool admits(Pixel p, int32_t curve, int32_t k) const {
    for (int32_t r = std::max(p.r - 2, 0); r <= std::min(p.r + 2, kSide - 1); ++r) {
      for (int32_t c = std::max(p.c - 2, 0); c <= std::min(p.c + 2, kSide - 1); ++c) {
        const int32_t o = owner_[index(r, c)];
        if (o < 0) continue;
        if (o != curve) return false;
        const int32_t d = dash_[index(r, c)];
        if (std::abs(d - k) >= 2) return false;
        if (std::abs(d - k) == 1 && std::abs(r - p.r) <= 1 && std::abs(c - p.c) <= 1) return false;
      }
    }
    return true;
  }
  void set(Pixel p, int32_t curve, int32_t k, std::vector<int32_t>& placed) {
    const size_t i = index(p.r, p.c);
    owner_[i] = static_cast<int8_t>(curve);
    dash_[i] = static_cast<int8_t>(k);
    placed.push_back(static_cast<int32_t>(i));
  }
  void erase(const std::vector<int32_t>& placed) {
    for (int32_t i : placed) {
      owner_[static_cast<size_t>(i)] = -1;
      dash_[static_cast<size_t>(i)] = -1;
    }
  }
  void render(std::vector<uint8_t>& pixels) const {
    pixels.assign(static_cast<size_t>(kSide * kSide), 0);
    for (size_t i = 0; i < pixels.size(); ++i)
      if (owner_[i] >= 0) pixels[i] = kInk;
  }

 private:
  static size_t index(int32_t r, int32_t c) { return static_cast<size_t>(r * kSide + c); }

  std::array<int8_t, kSide * kSide> owner_{}, dash_{};
};

// Where dash pixels may lie, and where any pixel may.
bool inside(Pixel p) {
  return p.r >= kLo && p.r <= kHi && p.c >= kLo && p.c <= kHi;
}
bool inside_image(Pixel p) {
  return p.r >= 0 && p.r < kSide && p.c >= 0 && p.c < kSide;
}

// The 3×3 block of a marker centred on `p` (inside the image, as p is at least 1 from the
// border).
std::array<Pixel, 9> marker_at(Pixel p) {
  std::array<Pixel, 9> out{};
  for (int32_t i = 0; i < 9; ++i) out[static_cast<size_t>(i)] = {p.r + i / 3 - 1, p.c + i % 3 - 1};
  return out;
}

struct Curve {
  Pixel first, last;  // the end pixels: the far pixels of dashes 0 and K − 1
};

// Grows curve `id` of `dashes` dashes on `canvas`, with markers on the requested ends; false
// (and the canvas as before) when every start fails.
//
// A curve grows from its middle: dash m = ⌊(K−1)/2⌋ starts at a uniform pixel with a uniform
// heading, then dashes m−1 … 0 continue backwards from its first pixel and dashes m+1 … K−1
// forwards from its last, so each arm is half the curve and a long curve fits a small image
// far more often than one grown from an end. Each dash draws its turn relative to the dash it
// continues. A dash that finds no admissible turn takes back the dash grown before it and
// redraws that one (depth first, within a budget of turns per start).
bool grow_curve(Canvas& canvas, Words& gen, int32_t id, int32_t dashes, double max_turn,
                bool mark_first, bool mark_last, Curve& curve) {
  const auto K = static_cast<size_t>(dashes);
  const size_t m = (K - 1) / 2;
  // Dashes in the order they grow, and the dash each continues.
  std::vector<size_t> order;
  for (size_t i = 0; i <= m; ++i) order.push_back(m - i);
  for (size_t i = m + 1; i < K; ++i) order.push_back(i);
  auto parent = [&](size_t k) { return k < m ? k + 1 : k - 1; };
  std::vector<std::vector<int32_t>> placed(K);  // the pixels each dash (and its marker) set
  // Each dash's pixels in the order of growth (dash[k][0] next to its parent) and heading.
  std::vector<std::array<Pixel, kDash>> dash(K);
  std::vector<double> heading(K);
  auto take_back = [&](size_t k) {
    canvas.erase(placed[k]);
    placed[k].clear();
  };
  // Places `pixels` as part of dash k when every one is admissible.
  auto place = [&](const auto& pixels, size_t k) {
    for (const Pixel& p : pixels)
      if (!inside_image(p) || !canvas.admits(p, id, static_cast<int32_t>(k))) return false;
    for (const Pixel& p : pixels) canvas.set(p, id, static_cast<int32_t>(k), placed[k]);
    return true;
  };
  // The end pixels of the curve: the far pixels of dashes 0 and K − 1.
  auto first_end = [&] { return m > 0 ? dash[0][kDash - 1] : dash[0][0]; };
  auto last_end = [&] { return K - 1 > m ? dash[K - 1][kDash - 1] : dash[m][kDash - 1]; };
  // Dash k with its markers, or nothing.
  auto place_dash = [&](size_t k) {
    const bool fits = std::all_of(dash[k].begin(), dash[k].end(), inside) && place(dash[k], k) &&
                      (!mark_first || k != 0 || place(marker_at(first_end()), 0)) &&
                      (!mark_last || k != K - 1 || place(marker_at(last_end()), k));
    if (!fits) take_back(k);
    return fits;
  };
  for (int attempt = 0; attempt < kCurveTries; ++attempt) {
    for (size_t k = 0; k < K; ++k) take_back(k);
    const Pixel start{kLo + gen.below(kHi - kLo + 1), kLo + gen.below(kHi - kLo + 1)};
    heading[m] = 2.0 * std::numbers::pi * gen.uniform();
    dash[m] = dash_from(start, heading[m]);
    if (!place_dash(m)) continue;
    size_t grown_count = 1;  // dashes of `order` placed
    for (int budget = kTurnBudget * dashes; grown_count < K && budget > 0;) {
      const size_t k = order[grown_count], from = parent(k);
      // Backwards from the middle dash's first pixel, else onwards from the parent's far end.
      const bool reverse = from == m && k < m;
      const Pixel anchor = reverse ? dash[m][0] : dash[from][kDash - 1];
      const double base = heading[from] + (reverse ? std::numbers::pi : 0.0);
      // The turns tried are spread over [−max_turn, max_turn]: the first is uniform, and the
      // others visit the kTurnTries strata of the range in a scrambled order.
      bool grown = false;
      const int first = gen.below(kTurnTries);
      const double jitter = gen.uniform();
      for (int t = 0; t < kTurnTries && !grown && budget > 0; ++t, --budget) {
        const int stratum = (first + 3 * t) % kTurnTries;
        const double u = (stratum + jitter) / kTurnTries;
        heading[k] = base + (2.0 * u - 1.0) * max_turn;
        // Past a one-pixel gap: the first pixel at Chebyshev distance 2 from the anchor.
        dash[k] = dash_from(step(anchor, heading[k], 2), heading[k]);
        grown = place_dash(k);
      }
      if (grown) {
        ++grown_count;
      } else if (grown_count > 1) {
        take_back(order[--grown_count]);
      } else {
        break;
      }
    }
    if (grown_count < K) continue;
    curve = Curve{first_end(), last_end()};
    return true;
  }
  for (size_t k = 0; k < K; ++k) take_back(k);
  return false;
}

}  // namespace

int64_t pathfinder_contour_length(const std::string& difficulty) {
  if (difficulty == "easy") return 6;
  if (difficulty == "intermediate") return 9;
  if (difficulty == "hard") return 14;
  fail("pathfinder_contour_length: difficulty = '", difficulty,
       "', expected easy (6), intermediate (9) or hard (14)");
}

PathfinderDataset::PathfinderDataset() : PathfinderDataset(Options{}) {}

PathfinderDataset::PathfinderDataset(const Options& options)
    : options_(options), split_(options.split) {
  const Options& o = options_;
  int64_t split_id = 0, default_size = 0;
  if (o.split == "train") {
    split_id = 1;
    default_size = 160000;
  } else if (o.split == "val") {
    split_id = 2;
    default_size = 20000;
  } else if (o.split == "test") {
    split_id = 3;
    default_size = 20000;
  }
  POLYAK_CHECK(split_id > 0, "PathfinderDataset: split = '", o.split,
               "', expected train, val or test");
  size_ = o.size.value_or(default_size);
  POLYAK_CHECK(size_ >= 1, "PathfinderDataset: size = ", size_, ", expected >= 1");
  POLYAK_CHECK(o.contour_length >= 2 && o.contour_length <= 16,
               "PathfinderDataset: contour_length = ", o.contour_length, ", expected 2 to 16");
  distractors_ = o.distractors.value_or(3);
  POLYAK_CHECK(distractors_ >= 0 && distractors_ <= 10,
               "PathfinderDataset: distractors = ", distractors_, ", expected 0 to 10");
  distractor_length_ = o.distractor_length.value_or((o.contour_length + 2) / 3);
  POLYAK_CHECK(distractor_length_ >= 1 && distractor_length_ <= o.contour_length,
               "PathfinderDataset: distractor_length = ", distractor_length_,
               ", expected 1 to contour_length = ", o.contour_length);
  POLYAK_CHECK(o.max_turn >= 0.0 && o.max_turn <= 90.0,
               "PathfinderDataset: max_turn = ", o.max_turn, ", expected 0 to 90 degrees");
  key_ = mix64(mix64(o.seed ^ 0x5061746846696eULL) + static_cast<uint64_t>(split_id));
}

PathfinderImage PathfinderDataset::generate(int64_t index, int64_t* restarts) const {
  POLYAK_CHECK(index >= 0 && index < size_, "PathfinderDataset::example: ", name(), ": index ",
               index, ", expected 0 <= index < ", size_);
  Generator generator(mix64(key_ + static_cast<uint64_t>(index)));
  Words gen(generator);
  const double max_turn = options_.max_turn * std::numbers::pi / 180.0;
  const auto K = static_cast<int32_t>(options_.contour_length);
  const auto D = static_cast<int32_t>(distractor_length_);
  PathfinderImage out;
  out.label = gen.below(2);
  const bool same = out.label == 1;
  Canvas canvas;
  for (int64_t attempt = 0; attempt < kImageTries; ++attempt) {
    canvas.clear();
    Curve a{}, b{};
    bool fits = grow_curve(canvas, gen, 0, K, max_turn, true, same, a) &&
                grow_curve(canvas, gen, 1, K, max_turn, !same, false, b);
    for (int32_t d = 0; fits && d < distractors_; ++d) {
      Curve unused{};
      fits = grow_curve(canvas, gen, 2 + d, D, max_turn, false, false, unused);
    }
    if (!fits) continue;
    canvas.render(out.pixels);
    out.a = {a.first.r, a.first.c};
    const Pixel other = same ? a.last : b.first;
    out.b = {other.r, other.c};
    if (restarts != nullptr) *restarts = attempt;
    return out;
  }
  fail("PathfinderDataset::example: ", name(), ": index ", index, ": no image fitted in ",
       kImageTries,
       " tries, expected fewer or shorter curves (contour_length = ", options_.contour_length,
       ", distractors = ", distractors_, " of length ", distractor_length_, ")");
}

PathfinderImage PathfinderDataset::image(int64_t index) const {
  return generate(index, nullptr);
}

int64_t PathfinderDataset::restarts(int64_t index) const {
  int64_t count = 0;
  generate(index, &count);
  return count;
}

Example PathfinderDataset::example(int64_t index) const {
  const PathfinderImage image = generate(index, nullptr);
  Example e;
  e.label = image.label;
  e.tokens.assign(image.pixels.begin(), image.pixels.end());
  return e;
}

}  // namespace polyak
