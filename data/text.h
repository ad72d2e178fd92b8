// Byte-level text for language modelling: a file's bytes are the tokens (vocabulary 256),
// and the model predicts each next byte.
//
// Legend: B batch, L sequence length, n bytes in the file, h = ⌊n·held_out⌋ held-out bytes.
//
//   bytes      0 … n−h−1 (train)                    n−h … n−1 (held out: the end of the file)
//   batch()    row b at a random offset o ∈ [0, n−h−L−1], uniform:
//              tokens[b, t] = bytes[o + t], targets[b, t] = bytes[o + t + 1], t = 0 … L−1
//   held out   window k = 0 … W−1, W = ⌊(h − 1) / L⌋, at offset n−h + k·L: consecutive and
//              not overlapping, so every held-out byte after the first is a target at most
//              once and bits per byte over the windows is one fixed number
//   mask       1 everywhere (every position counts), word_lengths empty
//
// gzip files (magic 1f 8b) are inflated on reading, dictd's .dict.dz among them. The
// default text is Ambrose Bierce's "The Devil's Dictionary" (1906, public domain) from
// Debian's dict-devil package.
//
// Training windows come from a counter-based Generator seeded with `seed`; generator()
// exposes its position so a run can resume exactly, as CopyTask::generator().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "polyak/core/rng.h"
#include "polyak/data/copy_task.h"

namespace polyak {

struct ByteText {
  std::string path;            // for messages
  std::vector<uint8_t> bytes;  // the file's bytes, inflated when it was gzip
  bool gzip = false;           // the file was gzip
};

// The whole of `path` as bytes; a gzip file is inflated. Throws polyak::Error naming the
// file for a missing or unreadable file, a corrupt gzip stream or an empty text.
ByteText load_text(const std::string& path);

// /usr/share/dictd/devil.dict.dz (Debian package dict-devil): The Devil's Dictionary.
std::string default_text_path();

class TextCorpus {
 public:
  struct Options {
    int64_t length = 256;   // L ≥ 1
    double held_out = 0.1;  // the share of the file, from its end, kept out; in [0, 1)
    uint64_t seed = 0;
  };

  // Throws when the train split (or, with held_out > 0, the held-out split) is shorter than
  // one window of L + 1 bytes, naming the file, the split's size and the size needed.
  TextCorpus(ByteText text, const Options& options);

  // `batch_size` (> 0) windows drawn uniformly from the train split; advances the generator.
  Batch batch(int64_t batch_size);

  // Held-out windows [index·batch_size, min((index+1)·batch_size, W)) as one batch (the
  // last batch may be shorter); the same index always gives the same batch.
  Batch held_out_batch(int64_t index, int64_t batch_size) const;
  int64_t held_out_windows() const;                    // W
  int64_t held_out_batches(int64_t batch_size) const;  // ⌈W / batch_size⌉

  int64_t length() const { return length_; }
  int64_t vocab() const { return 256; }
  int64_t size() const { return static_cast<int64_t>(text_.bytes.size()); }  // n
  int64_t train_bytes() const { return train_; }                             // n − h
  int64_t held_out_bytes() const { return size() - train_; }                 // h
  const std::string& path() const { return text_.path; }
  const std::vector<uint8_t>& bytes() const { return text_.bytes; }
  Generator& generator() { return gen_; }
  const Generator& generator() const { return gen_; }

 private:
  // Rows of L tokens and targets from the windows starting at `offsets`.
  Batch windows(const std::vector<int64_t>& offsets) const;

  ByteText text_;
  int64_t length_, train_;
  Generator gen_;
};

}  // namespace polyak
