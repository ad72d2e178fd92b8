// Byte-level text corpora (layout in text.h).
#include "polyak/data/text.h"

#include <algorithm>
#include <cmath>

#include "polyak/core/error.h"
#include "polyak/data/byte_reader.h"

namespace polyak {

ByteText load_text(const std::string& path) {
  ByteReader file(path, "load_text");
  ByteText out;
  out.path = path;
  out.gzip = file.gzip();
  file.read_rest(out.bytes);
  out.bytes.shrink_to_fit();
  POLYAK_CHECK(!out.bytes.empty(), "load_text: '", path, "' is empty (0 bytes",
               out.gzip ? " after gunzip" : "", "), expected some text");
  return out;
}

std::string default_text_path() {
  return "/usr/share/dictd/devil.dict.dz";
}

TextCorpus::TextCorpus(ByteText text, const Options& options)
    : text_(std::move(text)), length_(options.length), train_(0), gen_(options.seed) {
  const char* fn = "TextCorpus";
  const int64_t L = length_, n = size();
  POLYAK_CHECK(L >= 1, fn, ": length = ", L, ", expected >= 1");
  POLYAK_CHECK(options.held_out >= 0.0 && options.held_out < 1.0, fn,
               ": held_out = ", options.held_out, ", expected a share in [0, 1)");
  const auto held = static_cast<int64_t>(std::floor(static_cast<double>(n) * options.held_out));
  train_ = n - held;
  POLYAK_CHECK(train_ >= L + 1, fn, ": '", text_.path, "' holds ", n,
               " bytes, of which the train "
               "split (the first ",
               train_, ", held_out = ", options.held_out,
               ") is shorter than one window: expected at least length + 1 = ", L + 1, " bytes");
  POLYAK_CHECK(options.held_out == 0.0 || held >= L + 1, fn, ": '", text_.path, "' holds ", n,
               " bytes, of which the held-out split (the last ", held,
               ", held_out = ", options.held_out,
               ") is shorter than one window: expected at least length + 1 = ", L + 1, " bytes");
}

Batch TextCorpus::windows(const std::vector<int64_t>& offsets) const {
  const auto B = static_cast<int64_t>(offsets.size());
  const int64_t L = length_;
  Batch out;
  out.tokens = Tensor::zeros(Shape{B, L}, DType::i64);
  out.targets = Tensor::zeros(Shape{B, L}, DType::i64);
  out.mask = Tensor::ones(Shape{B, L}, DType::f32);
  int64_t* tokens = out.tokens.data<int64_t>();
  int64_t* targets = out.targets.data<int64_t>();
  const uint8_t* bytes = text_.bytes.data();
  for (int64_t b = 0; b < B; ++b) {
    const uint8_t* window = bytes + offsets[static_cast<size_t>(b)];
    std::copy(window, window + L, tokens + b * L);
    std::copy(window + 1, window + L + 1, targets + b * L);
  }
  return out;
}

Batch TextCorpus::batch(int64_t batch_size) {
  POLYAK_CHECK(batch_size > 0, "TextCorpus::batch: batch_size = ", batch_size, ", expected > 0");
  std::vector<int64_t> offsets(static_cast<size_t>(batch_size));
  const auto starts = static_cast<uint64_t>(train_ - length_);  // offsets 0 … train − L − 1
  for (int64_t& o : offsets) o = static_cast<int64_t>(gen_.integer(starts));
  return windows(offsets);
}

int64_t TextCorpus::held_out_windows() const {
  const int64_t held = held_out_bytes();
  return held > 0 ? (held - 1) / length_ : 0;
}

int64_t TextCorpus::held_out_batches(int64_t batch_size) const {
  POLYAK_CHECK(batch_size > 0, "TextCorpus::held_out_batches: batch_size = ", batch_size,
               ", expected > 0");
  return (held_out_windows() + batch_size - 1) / batch_size;
}

Batch TextCorpus::held_out_batch(int64_t index, int64_t batch_size) const {
  const int64_t batches = held_out_batches(batch_size);
  POLYAK_CHECK(index >= 0 && index < batches, "TextCorpus::held_out_batch: index ", index,
               ", expected 0 <= index < ", batches, " (", held_out_windows(),
               " held-out windows of ", length_, " in batches of ", batch_size, ")");
  const int64_t first = index * batch_size;
  const int64_t last = std::min(first + batch_size, held_out_windows());
  std::vector<int64_t> offsets;
  for (int64_t k = first; k < last; ++k) offsets.push_back(train_ + k * length_);
  return windows(offsets);
}

}  // namespace polyak
