// ListOps: labels against an evaluator of the test's own, tree shape and length limits, the
// string form, determinism across seeds, splits and threads, the label histogram, bad options.
#include <algorithm>
#include <array>
#include <thread>

#include "polyak/data/listops.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;

namespace {

// A recursive-descent reading of a token list, independent of the library's stack machine:
// the value (MED through a sorted copy, as int(np.median)) and the shape of the tree.
struct Reading {
  bool ok = true;
  int depth = 0;   // the most brackets open at once
  int levels = 0;  // tree levels, digits included (LRA's depth)
  int fewest_args = 1000, most_args = 0;
};

int read_node(const std::vector<int32_t>& t, size_t& pos, int open, Reading& r) {
  if (pos >= t.size()) {
    r.ok = false;
    return -1;
  }
  const int32_t token = t[pos++];
  r.levels = std::max(r.levels, open + 1);
  if (token >= 1 && token <= 10) return token - 1;
  if (token < 11 || token > 14) {
    r.ok = false;
    return -1;
  }
  r.depth = std::max(r.depth, open + 1);
  std::vector<int> args;
  while (r.ok && pos < t.size() && t[pos] != 15) args.push_back(read_node(t, pos, open + 1, r));
  if (!r.ok || pos >= t.size() || args.empty()) {
    r.ok = false;
    return -1;
  }
  ++pos;  // the "]"
  const int n = static_cast<int>(args.size());
  r.fewest_args = std::min(r.fewest_args, n);
  r.most_args = std::max(r.most_args, n);
  std::sort(args.begin(), args.end());
  int sum = 0;
  for (int a : args) sum += a;
  switch (token) {
    case 11:
      return args.back();
    case 12:
      return args.front();
    case 13: {
      const double median =
          n % 2 == 1
              ? args[static_cast<size_t>(n / 2)]
              : 0.5 * (args[static_cast<size_t>(n / 2 - 1)] + args[static_cast<size_t>(n / 2)]);
      return static_cast<int>(median);
    }
    default:
      return sum % 10;
  }
}

// The value of the whole sequence, or −1 when it is not one well-formed expression.
int independent_value(const std::vector<int32_t>& tokens, Reading& r) {
  size_t pos = 0;
  const int v = read_node(tokens, pos, 0, r);
  if (pos != tokens.size()) r.ok = false;
  return r.ok ? v : -1;
}

int value_of(const std::string& text) {
  Reading r;
  const int independent = independent_value(listops_from_string(text), r);
  CHECK(r.ok);
  const int library = listops_evaluate(listops_from_string(text));
  CHECK(library == independent);
  return library;
}

}  // namespace

TEST_CASE("ListOps: hand-written expressions evaluate to their values") {
  CHECK(value_of("[MAX 2 9 [MIN 4 7 ] 0 ]") == 9);
  CHECK(value_of("[MIN 3 [MAX 1 2 ] 5 ]") == 2);
  CHECK(value_of("7") == 7);
  // MED: the middle one for odd counts, the floor of the mean of the middle two for even ones.
  CHECK(value_of("[MED 3 4 ]") == 3);
  CHECK(value_of("[MED 2 9 ]") == 5);
  CHECK(value_of("[MED 9 1 8 2 ]") == 5);
  CHECK(value_of("[MED 0 9 9 ]") == 9);
  CHECK(value_of("[MED 6 0 1 7 3 ]") == 3);
  CHECK(value_of("[MED 0 1 ]") == 0);
  // SM: the sum modulo 10.
  CHECK(value_of("[SM 9 9 9 ]") == 7);
  CHECK(value_of("[SM 5 5 ]") == 0);
  CHECK(value_of("[SM 1 2 [SM 9 9 ] ]") == 1);
  CHECK(value_of("[MED [SM 4 4 ] [MIN 9 3 ] [MAX 0 1 ] 7 ]") == 5);  // MED 8 3 1 7 = ⌊5.0⌋
  // LRA's TSV form, with parentheses around every pair.
  CHECK(value_of("( ( ( [MAX 2 ) 9 ) ] )") == 9);
  CHECK(listops_evaluate({kListOpsSm, kListOpsDigit0 + 8, kListOpsDigit0 + 7, kListOpsClose}) == 5);
}

TEST_CASE("ListOps: the string form and the token table") {
  const std::vector<int32_t> tokens = {11, 3, 10, 12, 5, 8, 15, 1, 15};
  CHECK(listops_to_string(tokens) == "[MAX 2 9 [MIN 4 7 ] 0 ]");
  CHECK(listops_from_string("[MAX 2 9 [MIN 4 7 ] 0 ]") == tokens);
  CHECK(listops_from_string("  [MED\t0 [SM 1 9 ]\n]") ==
        std::vector<int32_t>{13, 1, 14, 2, 10, 15, 15});
  CHECK(listops_to_string({kListOpsMed, kListOpsSm, kListOpsClose}) == "[MED [SM ]");
  CHECK(listops_from_string("").empty());
  check_error([] { listops_from_string("[MAX 1 [FOO 2 ] ]"); },
              {"listops_from_string", "word 2", "[FOO"});
  check_error(
      [] {
        listops_to_string({11, 1, 0, 15});
      },
      {"listops_to_string", "token 0", "position 2"});
  check_error([] { listops_to_string({16}); }, {"listops_to_string", "token 16"});
}

TEST_CASE("ListOps: malformed sequences do not evaluate") {
  check_error([] { listops_evaluate(listops_from_string("[MAX ]")); },
              {"listops_evaluate", "[MAX", "no arguments"});
  check_error([] { listops_evaluate(listops_from_string("[MAX 1 [MIN 2 ]")); },
              {"listops_evaluate", "1 operator(s) left open"});
  check_error([] { listops_evaluate(listops_from_string("[MAX 1 ] 2")); },
              {"listops_evaluate", "position 3", "follows the end"});
  check_error([] { listops_evaluate(listops_from_string("1 ]")); },
              {"listops_evaluate", "position 1"});
  check_error([] { listops_evaluate(listops_from_string("]")); },
              {"listops_evaluate", "']' at position 0", "closes no operator"});
  check_error([] { listops_evaluate({}); }, {"listops_evaluate", "no tokens"});
  check_error([] { listops_evaluate({11, 0, 15}); }, {"listops_evaluate", "token 0"});
}

TEST_CASE("ListOpsDataset: defaults follow LRA") {
  ListOpsDataset train;
  CHECK(train.name() == "listops/train");
  CHECK(train.size() == 96000);
  CHECK(train.max_length() == 2000);
  CHECK(train.vocab() == 16);
  CHECK(train.classes() == 10);
  CHECK(ListOpsDataset({.split = "val"}).size() == 2000);
  CHECK(ListOpsDataset({.split = "test"}).size() == 2000);
  CHECK(ListOpsDataset({.split = "test", .size = 17}).size() == 17);
  CHECK(ListOpsDataset({.split = "val"}).name() == "listops/val");
}

TEST_CASE("ListOpsDataset: every example is well formed and labelled with its value") {
  ListOpsDataset data({.split = "test", .seed = 5});
  std::array<int, 10> histogram{};
  int64_t trees = 0;
  size_t shortest = 1 << 20, longest = 0;
  const int64_t n = 2000;
  for (int64_t i = 0; i < n; ++i) {
    CAPTURE(i);
    const Example e = data.example(i);
    Reading r;
    const int value = independent_value(e.tokens, r);
    REQUIRE(r.ok);
    CHECK(value == e.label);
    CHECK(r.depth <= 9);  // operators nest at most max_depth − 1 deep
    CHECK(r.levels <= 10);
    CHECK(r.fewest_args >= 2);
    CHECK(r.most_args <= 10);
    CHECK(e.tokens.size() >= 500);
    CHECK(e.tokens.size() <= 2000);
    shortest = std::min(shortest, e.tokens.size());
    longest = std::max(longest, e.tokens.size());
    ++histogram[static_cast<size_t>(e.label)];
    if (i < 500) trees += data.trees_drawn(i);
  }
  // The window is reached from both sides, and about a third of LRA's trees fall in it.
  CHECK(shortest < 520);
  CHECK(longest > 1800);
  const double acceptance = 500.0 / static_cast<double>(trees);
  CHECK(acceptance > 0.25);
  CHECK(acceptance < 0.45);
  // All ten classes, none dominant; MAX and MIN make 9 and 0 the most common (≈ 17% each).
  for (int c = 0; c < 10; ++c) {
    CAPTURE(c);
    const double share = histogram[static_cast<size_t>(c)] / static_cast<double>(n);
    CHECK(share > 0.04);
    CHECK(share < 0.25);
  }
  CHECK(histogram[0] > histogram[5]);
  CHECK(histogram[9] > histogram[5]);
  MESSAGE("listops labels 0..9: " << histogram[0] << " " << histogram[1] << " " << histogram[2]
                                  << " " << histogram[3] << " " << histogram[4] << " "
                                  << histogram[5] << " " << histogram[6] << " " << histogram[7]
                                  << " " << histogram[8] << " " << histogram[9] << "; acceptance "
                                  << acceptance);
}

TEST_CASE("ListOpsDataset: small trees obey the depth, argument and length limits") {
  ListOpsDataset data({.size = 400,
                       .seed = 3,
                       .min_length = 10,
                       .max_length = 40,
                       .max_depth = 3,
                       .max_args = 3,
                       .operator_probability = 0.5});
  CHECK(data.max_length() == 40);
  int deepest = 0;
  for (int64_t i = 0; i < data.size(); ++i) {
    CAPTURE(i);
    const Example e = data.example(i);
    Reading r;
    CHECK(independent_value(e.tokens, r) == e.label);
    REQUIRE(r.ok);
    CHECK(r.depth <= 2);
    CHECK(r.most_args <= 3);
    CHECK(r.fewest_args >= 2);
    CHECK(e.tokens.size() >= 10);
    CHECK(e.tokens.size() <= 40);
    CHECK(listops_evaluate(e.tokens) == e.label);
    CHECK(listops_from_string(listops_to_string(e.tokens)) == e.tokens);
    deepest = std::max(deepest, r.depth);
  }
  CHECK(deepest == 2);
}

TEST_CASE("ListOpsDataset: examples depend on (seed, split, index) alone") {
  ListOpsDataset a({.seed = 11}), b({.seed = 11}), other_seed({.seed = 12});
  ListOpsDataset val({.split = "val", .seed = 11});
  // Out of order and repeated: the same example every time.
  for (int64_t i : {7, 0, 95999, 7, 123}) {
    CAPTURE(i);
    const Example x = a.example(i), y = b.example(i);
    CHECK(x.tokens == y.tokens);
    CHECK(x.label == y.label);
  }
  int same_seed_diff = 0, same_split_diff = 0, same_index_diff = 0;
  for (int64_t i = 0; i < 20; ++i) {
    const auto x = a.example(i).tokens;
    same_seed_diff += x != other_seed.example(i).tokens;
    same_split_diff += x != val.example(i).tokens;
    same_index_diff += x != a.example(i + 1).tokens;
  }
  CHECK(same_seed_diff == 20);
  CHECK(same_split_diff == 20);
  CHECK(same_index_diff == 20);

  // Several threads at once read what one thread reads.
  std::vector<Example> serial;
  for (int64_t i = 0; i < 64; ++i) serial.push_back(a.example(i));
  std::vector<Example> parallel(64);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int64_t i = t; i < 64; i += 4) parallel[static_cast<size_t>(i)] = a.example(i);
    });
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < 64; ++i) {
    CAPTURE(i);
    CHECK(parallel[i].tokens == serial[i].tokens);
    CHECK(parallel[i].label == serial[i].label);
  }
}

TEST_CASE("ListOpsDataset: gather_batch pads the examples into one batch") {
  ListOpsDataset data({.split = "val"});
  const ClassBatch batch = gather_batch(data, {3, 1, 4});
  const int64_t N = batch.tokens.size(1);
  CHECK(N <= 2000);
  const std::vector<double> tokens = batch.tokens.to_vector(), labels = batch.labels.to_vector();
  for (int64_t b = 0; b < 3; ++b) {
    const Example e = data.example(std::array<int64_t, 3>{3, 1, 4}[static_cast<size_t>(b)]);
    CHECK(batch.lengths[static_cast<size_t>(b)] == static_cast<int64_t>(e.tokens.size()));
    CHECK(labels[static_cast<size_t>(b)] == e.label);
    CHECK(tokens[static_cast<size_t>(b * N)] == e.tokens[0]);
  }
}

TEST_CASE("ListOpsDataset: bad options throw, naming the option") {
  check_error([] { ListOpsDataset({.split = "dev"}); },
              {"ListOpsDataset", "split", "'dev'", "train, val or test"});
  check_error([] { ListOpsDataset({.size = 0}); }, {"ListOpsDataset", "size = 0"});
  check_error([] { ListOpsDataset({.min_length = 0}); }, {"ListOpsDataset", "min_length = 0"});
  check_error([] { ListOpsDataset({.min_length = 600, .max_length = 550}); },
              {"ListOpsDataset", "max_length = 550", "min_length = 600"});
  check_error([] { ListOpsDataset({.min_length = 1, .max_length = 3}); },
              {"ListOpsDataset", "max_length = 3", ">= 4"});
  check_error([] { ListOpsDataset({.max_depth = 1}); }, {"ListOpsDataset", "max_depth = 1"});
  check_error([] { ListOpsDataset({.max_args = 1}); }, {"ListOpsDataset", "max_args = 1"});
  check_error([] { ListOpsDataset({.max_args = 65}); }, {"ListOpsDataset", "max_args = 65"});
  check_error([] { ListOpsDataset({.operator_probability = 1.0}); },
              {"ListOpsDataset", "operator_probability = 1"});
  check_error([] { ListOpsDataset({.operator_probability = 0.0}); },
              {"ListOpsDataset", "operator_probability = 0"});
  // max_depth 3, max_args 2: at most [op [op d d ] [op d d ] ], 10 tokens.
  check_error([] { ListOpsDataset({.min_length = 11, .max_depth = 3, .max_args = 2}); },
              {"ListOpsDataset", "min_length = 11", "<= 10", "max_depth = 3"});
  ListOpsDataset data({.size = 5});
  check_error([&] { data.example(5); }, {"ListOpsDataset::example", "listops/train", "index 5"});
  check_error([&] { data.example(-1); }, {"ListOpsDataset::example", "index -1"});
}
