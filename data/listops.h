// ListOps (Nangia & Bowman 2018) as the Long Range Arena uses it (Tay et al. 2021, §3.1):
// nested prefix expressions over the digits 0–9 whose value, a digit, is the class.
//
//   [MAX 2 9 [MIN 4 7 ] 0 ]   →   9
//
// Operators, over their 2 … max_args arguments a_1 … a_n:
//   MAX  max a_i        MIN  min a_i        SM  (Σ a_i) mod 10
//   MED  the median: with the a_i sorted s_0 ≤ … ≤ s_{n−1}, ⌊(s_{⌊(n−1)/2⌋} + s_{⌊n/2⌋}) / 2⌋,
//        the middle element for odd n and the floor of the mean of the two middle ones for
//        even n — LRA's int(np.median(·)): MED 3 4 = 3, MED 2 9 = 5, MED 1 2 8 9 = 5.
//
// Tokens (vocab 16; an operator and its opening bracket are one token, as LRA tokenizes "[MAX"):
//   0 pad (never inside an example)   1 … 10 the digits 0 … 9 (token = digit + 1)
//   11 [MAX   12 [MIN   13 [MED   14 [SM   15 ]
//
// Trees are drawn as LRA's generator draws them: a node on level < max_depth (the root is on
// level 1) is an operator with probability operator_probability (LRA: 0.25), else a digit; a
// node on level max_depth is a digit, so operators nest at most max_depth − 1 deep (9 for
// LRA's max_depth 10). An operator takes 2 … max_args arguments (uniform) and is MAX, MIN,
// MED or SM (uniform); digits are uniform. Trees whose length in tokens falls outside
// [min_length, max_length] are rejected and redrawn (LRA's generator keeps 500 < length < 2000;
// polyak keeps both ends). The root is drawn as an operator outright: a digit root (length 1) would
// be rejected anyway, so this leaves the distribution of the kept trees unchanged. About a third of
// the drawn trees are kept (the rest mostly fall short of 500 tokens), and the labels are far from
// uniform: MAX and MIN of many arguments pull towards 9 and 0 (about 17% each, the other digits
// 7–10%).
//
// Example i of a split depends on (seed, split, i) alone: a Generator of its own, keyed by a
// hash of the three, draws it, so examples are made on demand, in any order, from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "polyak/data/sequences.h"

namespace polyak {

constexpr int32_t kListOpsPad = 0;
constexpr int32_t kListOpsDigit0 = 1;  // digit d is token kListOpsDigit0 + d
constexpr int32_t kListOpsMax = 11, kListOpsMin = 12, kListOpsMed = 13, kListOpsSm = 14;
constexpr int32_t kListOpsClose = 15;
constexpr int32_t kListOpsVocab = 16;

// "[MAX 2 9 [MIN 4 7 ] 0 ]": the words of the tokens separated by single spaces. Throws
// polyak::Error on a token outside 1 … 15 (the pad token included).
std::string listops_to_string(const std::vector<int32_t>& tokens);

// The tokens of whitespace-separated words ("0" … "9", "[MAX", "[MIN", "[MED", "[SM", "]").
// The words "(" and ")" are skipped, so the Source column of LRA's TSV files reads as it is.
// Throws polyak::Error naming the first unknown word and its position.
std::vector<int32_t> listops_from_string(const std::string& text);

// The value of the expression `tokens` (one digit, or one operator with its arguments and
// its "]"). Throws polyak::Error on a malformed sequence: an operator without arguments, an
// unmatched bracket, tokens after the end of the expression, or a token outside 1 … 15.
int32_t listops_evaluate(const std::vector<int32_t>& tokens);

class ListOpsDataset : public SequenceDataset {
 public:
  struct Options {
    std::string split = "train";                 // "train", "val" or "test"
    std::optional<int64_t> size = std::nullopt;  // default LRA's 96000 / 2000 / 2000
    uint64_t seed = 0;
    int64_t min_length = 500;   // tokens, inclusive; ≥ 1
    int64_t max_length = 2000;  // tokens, inclusive; ≥ min_length
    int64_t max_depth = 10;     // tree levels, the root on level 1; ≥ 2
    int64_t max_args = 10;      // arguments of an operator: 2 … max_args; 2 ≤ max_args ≤ 64
    double operator_probability = 0.25;  // in (0, 1)
  };

  ListOpsDataset();
  explicit ListOpsDataset(const Options& options);

  std::string name() const override { return "listops/" + split_; }
  int64_t size() const override { return size_; }
  int64_t max_length() const override { return options_.max_length; }
  int64_t vocab() const override { return kListOpsVocab; }
  int64_t classes() const override { return 10; }
  Example example(int64_t index) const override;

  // How many trees were drawn to make example `index` (1 + the rejected ones): the
  // acceptance rate of the length window is size / Σ trees_drawn.
  int64_t trees_drawn(int64_t index) const;

  const Options& options() const { return options_; }

 private:
  Example generate(int64_t index, int64_t* trees) const;

  Options options_;
  std::string split_;
  int64_t size_;
  uint64_t key_;  // the hash of (seed, split) that per-example keys derive from
};

}  // namespace polyak
