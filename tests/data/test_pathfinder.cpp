// Pathfinder 32×32: labels against a flood fill of the rendered image, the spacing rules, the
// curve lengths, class balance, determinism, bad options.
#include <algorithm>
#include <array>
#include <thread>

#include "polyak/data/pathfinder.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;

namespace {

constexpr int S = 32;

bool ink(const std::vector<uint8_t>& img, int r, int c) {
  return r >= 0 && r < S && c >= 0 && c < S && img[static_cast<size_t>(r * S + c)] != 0;
}

// The ink pixels reachable from (r, c) through ink pixels at Chebyshev distance ≤ `reach`
// (2: the rule of pathfinder.h; 1: 8-connectivity), restricted to `within` when given.
std::vector<int> flood(const std::vector<uint8_t>& img, int r0, int c0, int reach,
                       const std::vector<char>* within = nullptr) {
  std::vector<char> seen(S * S, 0);
  std::vector<int> stack = {r0 * S + c0}, component;
  seen[static_cast<size_t>(r0 * S + c0)] = 1;
  while (!stack.empty()) {
    const int p = stack.back();
    stack.pop_back();
    component.push_back(p);
    for (int dr = -reach; dr <= reach; ++dr) {
      for (int dc = -reach; dc <= reach; ++dc) {
        const int r = p / S + dr, c = p % S + dc;
        if (!ink(img, r, c)) continue;
        const int q = r * S + c;
        if (seen[static_cast<size_t>(q)] || (within && !(*within)[static_cast<size_t>(q)]))
          continue;
        seen[static_cast<size_t>(q)] = 1;
        stack.push_back(q);
      }
    }
  }
  return component;
}

// The number of components of the ink under the Chebyshev-`reach` rule, restricted to
// `within` when given.
int components(const std::vector<uint8_t>& img, int reach,
               const std::vector<char>* within = nullptr) {
  std::vector<char> done(S * S, 0);
  int count = 0;
  for (int p = 0; p < S * S; ++p) {
    if (done[static_cast<size_t>(p)] || !ink(img, p / S, p % S)) continue;
    if (within && !(*within)[static_cast<size_t>(p)]) continue;
    ++count;
    for (int q : flood(img, p / S, p % S, reach, within)) done[static_cast<size_t>(q)] = 1;
  }
  return count;
}

// A marker: the 3×3 block around (r, c) is all ink.
bool is_marker(const std::vector<uint8_t>& img, int r, int c) {
  for (int dr = -1; dr <= 1; ++dr)
    for (int dc = -1; dc <= 1; ++dc)
      if (!ink(img, r + dr, c + dc)) return false;
  return true;
}

struct Checked {
  int positives = 0;
  double component_ink = 0;  // mean ink pixels reachable from marker a
};

// Checks `n` examples of `data` against the flood fill and the spacing rules of pathfinder.h.
Checked check_examples(const PathfinderDataset& data, int64_t n) {
  Checked out;
  const int K = static_cast<int>(data.contour_length());
  for (int64_t i = 0; i < n; ++i) {
    CAPTURE(i);
    const PathfinderImage im = data.image(i);
    REQUIRE(im.pixels.size() == 1024);
    REQUIRE((im.label == 0 || im.label == 1));
    for (uint8_t v : im.pixels) CHECK((v == 0 || v == 255));
    const auto [ar, ac] = im.a;
    const auto [br, bc] = im.b;
    CHECK(is_marker(im.pixels, ar, ac));
    CHECK(is_marker(im.pixels, br, bc));
    CHECK((ar != br || ac != bc));
    const std::vector<int> from_a = flood(im.pixels, ar, ac, 2);
    const bool reached = std::find(from_a.begin(), from_a.end(), br * S + bc) != from_a.end();
    CHECK(reached == (im.label == 1));
    // Two main curves and the distractors, kept apart by the rule.
    CHECK(components(im.pixels, 2) == 2 + data.distractors());
    // Marker a's curve is K dashes: K pieces under 8-connectivity.
    std::vector<char> curve(S * S, 0);
    for (int p : from_a) curve[static_cast<size_t>(p)] = 1;
    CHECK(components(im.pixels, 1, &curve) == K);
    // Marker b's curve likewise when it is another one.
    if (!reached) {
      const std::vector<int> from_b = flood(im.pixels, br, bc, 2);
      std::vector<char> other(S * S, 0);
      for (int p : from_b) other[static_cast<size_t>(p)] = 1;
      CHECK(components(im.pixels, 1, &other) == K);
    }
    out.positives += im.label;
    out.component_ink += static_cast<double>(from_a.size()) / static_cast<double>(n);
    // The tokens are the pixels.
    if (i < 20) {
      const Example e = data.example(i);
      CHECK(e.label == im.label);
      CHECK(std::equal(e.tokens.begin(), e.tokens.end(), im.pixels.begin(), im.pixels.end()));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("PathfinderDataset: defaults") {
  PathfinderDataset train;
  CHECK(train.name() == "pathfinder32/train");
  CHECK(train.size() == 160000);
  CHECK(train.max_length() == 1024);
  CHECK(train.vocab() == 256);
  CHECK(train.classes() == 2);
  CHECK(train.contour_length() == 14);
  CHECK(train.distractors() == 3);
  CHECK(train.distractor_length() == 5);
  CHECK(PathfinderDataset({.split = "val"}).size() == 20000);
  CHECK(PathfinderDataset({.split = "test"}).size() == 20000);
  CHECK(PathfinderDataset({.split = "test"}).name() == "pathfinder32/test");
  CHECK(pathfinder_contour_length("easy") == 6);
  CHECK(pathfinder_contour_length("intermediate") == 9);
  CHECK(pathfinder_contour_length("hard") == 14);
}

TEST_CASE("PathfinderDataset: the label is what a flood fill of the image says") {
  PathfinderDataset data({.split = "test", .seed = 2});
  const Checked c = check_examples(data, 1000);
  CHECK(c.positives > 450);
  CHECK(c.positives < 550);
}

TEST_CASE("PathfinderDataset: the contour length sets the length of the marked curves") {
  double previous = 0;
  for (const char* difficulty : {"easy", "intermediate", "hard"}) {
    CAPTURE(difficulty);
    PathfinderDataset data(
        {.size = 200, .seed = 4, .contour_length = pathfinder_contour_length(difficulty)});
    const Checked c = check_examples(data, 200);
    CHECK(c.component_ink > previous + 4);
    previous = c.component_ink;
  }
}

TEST_CASE("PathfinderDataset: other distractor settings and straight curves keep the rules") {
  check_examples(PathfinderDataset({.size = 100, .contour_length = 9, .distractors = 0}), 100);
  check_examples(PathfinderDataset(
                     {.size = 100, .contour_length = 6, .distractors = 4, .distractor_length = 6}),
                 100);
  check_examples(PathfinderDataset({.size = 100, .contour_length = 6, .max_turn = 0}), 100);
  check_examples(PathfinderDataset(
                     {.size = 100, .contour_length = 2, .distractors = 6, .distractor_length = 1}),
                 100);
}

TEST_CASE("PathfinderDataset: the classes are balanced") {
  PathfinderDataset data({.seed = 9});
  int positives = 0;
  const int n = 4000;
  for (int64_t i = 0; i < n; ++i) positives += data.example(i).label;
  MESSAGE("pathfinder positives: " << positives << " of " << n);
  CHECK(positives > 0.45 * n);
  CHECK(positives < 0.55 * n);
}

TEST_CASE("PathfinderDataset: examples depend on (seed, split, index) alone") {
  PathfinderDataset a({.seed = 1}), b({.seed = 1}), other_seed({.seed = 2});
  PathfinderDataset val({.split = "val", .seed = 1});
  for (int64_t i : {3, 0, 159999, 3}) {
    CAPTURE(i);
    const PathfinderImage x = a.image(i), y = b.image(i);
    CHECK(x.pixels == y.pixels);
    CHECK(x.label == y.label);
    CHECK(x.a == y.a);
    CHECK(x.b == y.b);
  }
  int differ = 0;
  for (int64_t i = 0; i < 20; ++i) {
    const auto x = a.image(i).pixels;
    differ += (x != other_seed.image(i).pixels) + (x != val.image(i).pixels) +
              (x != a.image(i + 1).pixels);
  }
  CHECK(differ == 60);

  std::vector<Example> serial, parallel(48);
  for (int64_t i = 0; i < 48; ++i) serial.push_back(a.example(i));
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      for (int64_t i = t; i < 48; i += 3) parallel[static_cast<size_t>(i)] = a.example(i);
    });
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < 48; ++i) {
    CAPTURE(i);
    CHECK(parallel[i].tokens == serial[i].tokens);
    CHECK(parallel[i].label == serial[i].label);
  }
}

TEST_CASE("PathfinderDataset: bad options throw, naming the option") {
  check_error([] { PathfinderDataset({.split = "training"}); },
              {"PathfinderDataset", "split", "'training'", "train, val or test"});
  check_error([] { PathfinderDataset({.size = -4}); }, {"PathfinderDataset", "size = -4"});
  check_error([] { PathfinderDataset({.contour_length = 1}); },
              {"PathfinderDataset", "contour_length = 1"});
  check_error([] { PathfinderDataset({.contour_length = 17}); },
              {"PathfinderDataset", "contour_length = 17", "2 to 16"});
  check_error([] { PathfinderDataset({.distractors = -1}); },
              {"PathfinderDataset", "distractors = -1"});
  check_error([] { PathfinderDataset({.distractors = 11}); },
              {"PathfinderDataset", "distractors = 11"});
  check_error([] { PathfinderDataset({.contour_length = 6, .distractor_length = 7}); },
              {"PathfinderDataset", "distractor_length = 7", "contour_length = 6"});
  check_error([] { PathfinderDataset({.distractor_length = 0}); },
              {"PathfinderDataset", "distractor_length = 0"});
  check_error([] { PathfinderDataset({.max_turn = 95}); }, {"PathfinderDataset", "max_turn = 95"});
  check_error([] { pathfinder_contour_length("medium"); },
              {"pathfinder_contour_length", "'medium'", "easy", "hard"});
  PathfinderDataset data({.size = 3});
  check_error([&] { data.example(3); },
              {"PathfinderDataset::example", "pathfinder32/train", "index 3"});
  check_error([&] { data.image(-2); }, {"PathfinderDataset::example", "index -2"});
}
