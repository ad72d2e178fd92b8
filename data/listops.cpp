// ListOps: drawing trees, their values, and the string form (layout in listops.h).
#include "polyak/data/listops.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>

#include "polyak/core/error.h"
#include "polyak/data/example_stream.h"

namespace polyak {

namespace {

constexpr const char* kWords[kListOpsVocab] = {
    "<pad>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "[MAX", "[MIN", "[MED", "[SM", "]"};

// A tree that has drawn this many trees without one of an admissible length gives up: the
// options leave (almost) no tree in the window.
constexpr int64_t kMaxTrees = 100000;

bool is_digit(int32_t t) {
  return t >= kListOpsDigit0 && t < kListOpsDigit0 + 10;
}
bool is_operator(int32_t t) {
  return t >= kListOpsMax && t <= kListOpsSm;
}

using detail::mix64;
using detail::Words;

// The arguments of one operator as a histogram of digits: all MED needs, in constant space.
struct Operands {
  std::array<int32_t, 10> count{};
  int32_t n = 0, sum = 0;

  void add(int32_t digit) {
    ++count[static_cast<size_t>(digit)];
    ++n;
    sum += digit;
  }
  // The k-th smallest argument, k ∈ [0, n).
  int32_t sorted(int32_t k) const {
    for (int32_t d = 0; d < 10; ++d) {
      if (k < count[static_cast<size_t>(d)]) return d;
      k -= count[static_cast<size_t>(d)];
    }
    return 9;
  }
  int32_t apply(int32_t op) const {
    switch (op) {
      case kListOpsMax:
        return sorted(n - 1);
      case kListOpsMin:
        return sorted(0);
      case kListOpsMed:
        return (sorted((n - 1) / 2) + sorted(n / 2)) / 2;  // int(np.median)
      default:
        return sum % 10;  // kListOpsSm
    }
  }
};

// One draw of LRA's tree distribution into `out`, abandoned (too_long) as soon as the tokens
// written plus the brackets still to close pass max_length.
class TreeDraw {
 public:
  TreeDraw(Words& gen, const ListOpsDataset::Options& o, std::vector<int32_t>& out)
      : gen_(gen),
        o_(o),
        out_(out),
        operator_below_(static_cast<uint64_t>(std::ldexp(o.operator_probability, 32))) {}

  // Appends a node on `level` and returns its value (meaningless once too_long()).
  int32_t node(int64_t level, bool root) {
    const bool op = root || (level < o_.max_depth && gen_.next() < operator_below_);
    if (!op) {
      const int32_t digit = gen_.below(10);
      push(kListOpsDigit0 + digit);
      return digit;
    }
    const int32_t token = kListOpsMax + gen_.below(4);
    const int32_t args = 2 + gen_.below(static_cast<int32_t>(o_.max_args - 1));
    push(token);
    ++open_;
    Operands operands;
    for (int32_t i = 0; i < args && !too_long_; ++i) operands.add(node(level + 1, false));
    --open_;
    push(kListOpsClose);
    return operands.apply(token);
  }
  bool too_long() const { return too_long_; }

 private:
  void push(int32_t token) {
    out_.push_back(token);
    if (static_cast<int64_t>(out_.size()) + open_ > o_.max_length) too_long_ = true;
  }

  Words& gen_;
  const ListOpsDataset::Options& o_;
  std::vector<int32_t>& out_;
  uint64_t operator_below_;  // a word below this makes an operator: probability p
  int64_t open_ = 0;         // operators whose "]" is not yet written
  bool too_long_ = false;
};

// The most tokens a tree can have when its root is on `level` (saturating).
int64_t longest_tree(int64_t level, int64_t max_depth, int64_t max_args) {
  if (level >= max_depth) return 1;
  const int64_t below = longest_tree(level + 1, max_depth, max_args);
  constexpr int64_t kCap = int64_t{1} << 40;
  return below >= kCap / max_args ? kCap : 2 + max_args * below;
}

}  // namespace

std::string listops_to_string(const std::vector<int32_t>& tokens) {
  std::string out;
  out.reserve(tokens.size() * 2);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    POLYAK_CHECK(t > kListOpsPad && t < kListOpsVocab, "listops_to_string: token ", t,
                 " at position ", i, ", expected 1 to ", kListOpsVocab - 1);
    if (i > 0) out += ' ';
    out += kWords[t];
  }
  return out;
}

std::vector<int32_t> listops_from_string(const std::string& text) {
  std::istringstream in(text);
  std::vector<int32_t> tokens;
  std::string word;
  for (int64_t position = 0; in >> word; ++position) {
    if (word == "(" || word == ")") continue;
    const auto* found = std::find_if(std::begin(kWords) + 1, std::end(kWords),
                                     [&](const char* w) { return word == w; });
    POLYAK_CHECK(found != std::end(kWords), "listops_from_string: word ", position, " is '", word,
                 "', expected 0 to 9, [MAX, [MIN, [MED, [SM, ] (or a parenthesis)");
    tokens.push_back(static_cast<int32_t>(found - std::begin(kWords)));
  }
  return tokens;
}

int32_t listops_evaluate(const std::vector<int32_t>& tokens) {
  struct Frame {
    int32_t op;
    Operands operands;
  };
  std::vector<Frame> stack;
  int32_t value = -1;  // the value of the whole expression once it is complete
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    POLYAK_CHECK(t > kListOpsPad && t < kListOpsVocab, "listops_evaluate: token ", t,
                 " at position ", i, ", expected 1 to ", kListOpsVocab - 1);
    POLYAK_CHECK(value < 0, "listops_evaluate: token '", kWords[t], "' at position ", i,
                 " follows the end of the expression, expected nothing after it");
    int32_t done = -1;  // a value completed by this token
    if (is_digit(t)) {
      done = t - kListOpsDigit0;
    } else if (is_operator(t)) {
      stack.push_back(Frame{t, {}});
    } else {
      POLYAK_CHECK(!stack.empty(), "listops_evaluate: ']' at position ", i, " closes no operator");
      const Frame& top = stack.back();
      POLYAK_CHECK(top.operands.n > 0, "listops_evaluate: ']' at position ", i, " closes ",
                   kWords[top.op], " with no arguments, expected at least one");
      done = top.operands.apply(top.op);
      stack.pop_back();
    }
    if (done >= 0) {
      if (stack.empty())
        value = done;
      else
        stack.back().operands.add(done);
    }
  }
  POLYAK_CHECK(stack.empty(), "listops_evaluate: ", stack.size(),
               " operator(s) left open at the end, expected every '[' closed by ']'");
  POLYAK_CHECK(value >= 0, "listops_evaluate: no tokens, expected an expression");
  return value;
}

ListOpsDataset::ListOpsDataset() : ListOpsDataset(Options{}) {}

ListOpsDataset::ListOpsDataset(const Options& options) : options_(options), split_(options.split) {
  const Options& o = options_;
  int64_t split_id = 0, default_size = 0;
  if (o.split == "train") {
    split_id = 1;
    default_size = 96000;
  } else if (o.split == "val") {
    split_id = 2;
    default_size = 2000;
  } else if (o.split == "test") {
    split_id = 3;
    default_size = 2000;
  }
  POLYAK_CHECK(split_id > 0, "ListOpsDataset: split = '", o.split,
               "', expected train, val or test");
  size_ = o.size.value_or(default_size);
  POLYAK_CHECK(size_ >= 1, "ListOpsDataset: size = ", size_, ", expected >= 1");
  POLYAK_CHECK(o.max_depth >= 2, "ListOpsDataset: max_depth = ", o.max_depth,
               ", expected >= 2 (the root, on level 1, is an operator)");
  POLYAK_CHECK(o.max_args >= 2 && o.max_args <= 64, "ListOpsDataset: max_args = ", o.max_args,
               ", expected 2 to 64");
  POLYAK_CHECK(o.operator_probability > 0.0 && o.operator_probability < 1.0,
               "ListOpsDataset: operator_probability = ", o.operator_probability,
               ", expected in (0, 1)");
  POLYAK_CHECK(o.min_length >= 1, "ListOpsDataset: min_length = ", o.min_length, ", expected >= 1");
  POLYAK_CHECK(o.max_length >= std::max<int64_t>(o.min_length, 4),
               "ListOpsDataset: max_length = ", o.max_length,
               ", expected >= min_length = ", o.min_length,
               " and >= 4 (the shortest expression, as '[MAX 0 0 ]')");
  const int64_t longest = longest_tree(1, o.max_depth, o.max_args);
  POLYAK_CHECK(o.min_length <= longest, "ListOpsDataset: min_length = ", o.min_length,
               ", expected <= ", longest, ", the longest tree max_depth = ", o.max_depth,
               " and max_args = ", o.max_args, " allow");
  key_ = mix64(mix64(o.seed ^ 0x4c6973744f7073ULL) + static_cast<uint64_t>(split_id));
}

Example ListOpsDataset::generate(int64_t index, int64_t* trees) const {
  POLYAK_CHECK(index >= 0 && index < size_, "ListOpsDataset::example: ", name(), ": index ", index,
               ", expected 0 <= index < ", size_);
  Generator generator(mix64(key_ + static_cast<uint64_t>(index)));
  Words gen(generator);
  Example e;
  e.tokens.reserve(static_cast<size_t>(options_.max_length) + 1);
  for (int64_t drawn = 1; drawn <= kMaxTrees; ++drawn) {
    e.tokens.clear();
    TreeDraw draw(gen, options_, e.tokens);
    const int32_t value = draw.node(1, /*root=*/true);
    const auto n = static_cast<int64_t>(e.tokens.size());
    if (!draw.too_long() && n >= options_.min_length) {
      e.label = value;
      if (trees != nullptr) *trees = drawn;
      return e;
    }
  }
  fail("ListOpsDataset::example: ", name(), ": index ", index, ": none of ", kMaxTrees,
       " trees had a length in [min_length, max_length] = [", options_.min_length, ", ",
       options_.max_length,
       "], expected a window the tree distribution reaches (widen it, or "
       "change max_depth, max_args or operator_probability)");
}

Example ListOpsDataset::example(int64_t index) const {
  return generate(index, nullptr);
}

int64_t ListOpsDataset::trees_drawn(int64_t index) const {
  int64_t trees = 0;
  generate(index, &trees);
  return trees;
}

}  // namespace polyak
