// Pathfinder 32×32 (Linsley et al. 2018; the Long Range Arena's pathfinder32, Tay et al.
// 2021 §3.5): are the two marked endpoints on the same curve? Curves are chains of short
// dashes ("paddles") on a black image; the class is 1 when one curve joins the two markers,
// 0 when each marker ends a curve of its own.
//
// Legend: S = 32 the side, K = contour_length dashes per marked curve.
//
//   tokens[32·r + c] = pixel (row r, column c) ∈ {0, 255}: 1024 tokens, vocab 256, 2 classes
//
// Every image holds two main curves of K dashes (A and B) and `distractors` curves of
// distractor_length dashes, all pixel-disjoint:
//   label 1   markers on both ends of A, none on B
//   label 0   a marker on one end of A and one on one end of B
// The label is drawn first (each class with probability 1/2), then the image is built to fit.
//
// A dash is 2 pixels, 8-connected. A curve is a smooth random walk: its heading turns by a
// uniform angle in [−max_turn, max_turn] degrees from one dash to the next, and each dash
// starts at Chebyshev distance exactly 2 from the last pixel of the one before, past a
// one-pixel gap. A marker is the 3×3 block centred on the end pixel of a curve. Dash pixels
// stay in rows and columns 1 … 30, so markers fit inside the image.
//
// The connectivity rule (what a flood fill checks): two ink pixels are neighbours when their
// Chebyshev distance is at most 2 (the 5×5 neighbourhood). The construction guarantees
//   · the pixels of one curve, its markers included, are connected under that rule (through
//     the one-pixel gaps);
//   · pixels of different curves are at Chebyshev distance ≥ 3 (two background pixels apart);
//   · within a curve, consecutive dashes are at Chebyshev distance ≥ 2 (the gap is visible),
//     other dashes at ≥ 3, and a marker counts as part of the dash it sits on.
// So a flood fill from one marker reaches the other exactly when the label is 1, and the
// component of a marker splits into exactly K 8-connected pieces, one per dash.
//
// A curve grows from a middle dash at a uniform pixel with a uniform heading, both ways, the
// two main curves first. Placements that break a rule are redrawn: a dash tries other turns
// (and, failing those, takes back the dash before it), a curve another start, and an image that
// cannot be completed starts over; after 1000 such restarts example() throws. A curve of K
// dashes runs about 3K pixels, so long curves must bend to fit the 30 pixels between the
// margins: with the defaults K = 14 fits (an image restarts 0.5 times on average), while
// K = 14 with max_turn 15° or K = 16 with 20° rarely fits.
//
// Example i of a split depends on (seed, split, i) alone: a Generator of its own, keyed by a
// hash of the three, draws it, so examples are made on demand, in any order, from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "polyak/data/sequences.h"

namespace polyak {

constexpr int64_t kPathfinderSide = 32;

struct PathfinderImage {
  std::vector<uint8_t> pixels;  // S·S values, row by row
  int32_t label = 0;            // 1: the markers are on one curve
  std::array<int32_t, 2> a{};   // (row, column) of the centre of the first marker
  std::array<int32_t, 2> b{};   // and of the second
};

// The contour length of the LRA difficulty `difficulty`: "easy" 6, "intermediate" 9, "hard" 14.
int64_t pathfinder_contour_length(const std::string& difficulty);

class PathfinderDataset : public SequenceDataset {
 public:
  struct Options {
    std::string split = "train";                 // "train", "val" or "test"
    std::optional<int64_t> size = std::nullopt;  // default 160000 / 20000 / 20000
    uint64_t seed = 0;
    int64_t contour_length = 14;                              // K dashes of a main curve, 2 … 16
    std::optional<int64_t> distractors = std::nullopt;        // extra curves; default 3, 0 … 10
    std::optional<int64_t> distractor_length = std::nullopt;  // dashes; default ⌈K/3⌉, 1 … K
    double max_turn = 30.0;                                   // degrees per dash, in [0, 90]
  };

  PathfinderDataset();
  explicit PathfinderDataset(const Options& options);

  std::string name() const override { return "pathfinder32/" + split_; }
  int64_t size() const override { return size_; }
  int64_t max_length() const override { return kPathfinderSide * kPathfinderSide; }
  int64_t vocab() const override { return 256; }
  int64_t classes() const override { return 2; }
  Example example(int64_t index) const override;

  // The image of example `index`, with its label and the marker centres.
  PathfinderImage image(int64_t index) const;
  // How many times example `index` had to start its image over (0 when the first try fit).
  int64_t restarts(int64_t index) const;

  int64_t contour_length() const { return options_.contour_length; }
  int64_t distractors() const { return distractors_; }
  int64_t distractor_length() const { return distractor_length_; }

 private:
  PathfinderImage generate(int64_t index, int64_t* restarts) const;

  Options options_;
  std::string split_;
  int64_t size_, distractors_, distractor_length_;
  uint64_t key_;  // the hash of (seed, split) that per-example keys derive from
};

}  // namespace polyak
