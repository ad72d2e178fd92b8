// Byte-level text: loading raw and gzip files, train windows, held-out windows, errors.
#include <zlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "byte_files.h"
#include "polyak/data/text.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::host_ids;

namespace {

using polyak::testing::ByteDir;
using polyak::testing::Bytes;
using polyak::testing::gzip;
namespace fs = std::filesystem;

Bytes random_bytes(size_t n, uint64_t seed) {
  Generator gen(seed);
  Bytes b(n);
  for (uint8_t& x : b) x = static_cast<uint8_t>(gen.integer(256));
  return b;
}

ByteText text_of(const Bytes& bytes, const std::string& path = "memory") {
  return ByteText{path, bytes, false};
}

// The offset at which `window` occurs in bytes [0, end), or -1.
int64_t find_window(const Bytes& bytes, int64_t end, const std::vector<int32_t>& window) {
  const auto n = static_cast<int64_t>(window.size());
  for (int64_t o = 0; o + n <= end; ++o) {
    bool same = true;
    for (int64_t t = 0; t < n && same; ++t)
      same = bytes[static_cast<size_t>(o + t)] == window[static_cast<size_t>(t)];
    if (same) return o;
  }
  return -1;
}

std::vector<int32_t> row(const Indices& ids, int64_t r, int64_t L) {
  return {ids.values.begin() + r * L, ids.values.begin() + (r + 1) * L};
}

}  // namespace

TEST_CASE("load_text reads plain and gzip files byte for byte") {
  const ByteDir dir("text");
  Bytes bytes = random_bytes(100000, 1);
  bytes[0] = 0;  // a byte 0 and a byte 255 inside the text
  bytes[1] = 255;
  const ByteText plain = load_text(dir.file("plain.txt", bytes));
  CHECK(plain.bytes == bytes);
  CHECK_FALSE(plain.gzip);
  CHECK(plain.path == (dir.path / "plain.txt").string());

  const std::string text = "A file's bytes, and the next byte after each one.\n";
  const Bytes words(text.begin(), text.end());
  const ByteText gz = load_text(dir.file("text.gz", gzip(words)));
  CHECK(gz.gzip);
  CHECK(gz.bytes == words);
  // Two members, as `cat a.gz b.gz` makes.
  Bytes two = gzip(words);
  const Bytes second = gzip(bytes);
  two.insert(two.end(), second.begin(), second.end());
  Bytes both = words;
  both.insert(both.end(), bytes.begin(), bytes.end());
  CHECK(load_text(dir.file("two.gz", two)).bytes == both);
  // A one-byte file is text too.
  CHECK(load_text(dir.file("one", {'x'})).bytes == Bytes{'x'});
}

TEST_CASE("load_text: missing, empty and corrupt files are errors naming the file") {
  const ByteDir dir("text");
  const std::string missing = (dir.path / "missing.txt").string();
  check_error([&] { load_text(missing); }, {"load_text", "no file", missing});
  const std::string empty = dir.file("empty.txt", {});
  check_error([&] { load_text(empty); }, {"load_text", empty, "is empty (0 bytes)"});
  const std::string empty_gz = dir.file("empty.gz", gzip({}));
  check_error([&] { load_text(empty_gz); }, {"load_text", empty_gz, "0 bytes after gunzip"});
  Bytes gz = gzip(random_bytes(5000, 2));
  const std::string cut = dir.file("cut.gz", Bytes(gz.begin(), gz.begin() + 2000));
  check_error([&] { load_text(cut); }, {"load_text", cut, "gzip stream is truncated"});
  gz[gz.size() - 3] ^= 1;  // the trailer's length
  const std::string bad = dir.file("bad.gz", gz);
  check_error([&] { load_text(bad); }, {"load_text", bad, "corrupt gzip stream"});
  check_error([&] { load_text(dir.path.string()); }, {"load_text", "is a folder"});
}

TEST_CASE("TextCorpus: train windows come from the train split, targets shifted by one") {
  const Bytes bytes = random_bytes(1000, 3);
  const int64_t L = 16;
  TextCorpus corpus(text_of(bytes), {.length = L, .held_out = 0.1, .seed = 5});
  CHECK(corpus.size() == 1000);
  CHECK(corpus.train_bytes() == 900);
  CHECK(corpus.held_out_bytes() == 100);
  CHECK(corpus.vocab() == 256);
  CHECK(corpus.length() == L);

  std::set<int64_t> offsets;
  for (int step = 0; step < 200; ++step) {
    const Batch b = corpus.batch(64);
    REQUIRE(b.tokens.shape() == Shape{64, L});
    REQUIRE(b.targets.shape() == Shape{64, L});
    REQUIRE(b.tokens.dtype() == DType::i64);
    CHECK(b.word_lengths.empty());
    if (step == 0) {
      REQUIRE(b.mask.dtype() == DType::f32);
      const std::vector<double> mask = b.mask.to_vector();
      CHECK(std::all_of(mask.begin(), mask.end(), [](double m) { return m == 1.0; }));
    }
    const Indices tokens = host_ids(b.tokens), targets = host_ids(b.targets);
    for (int64_t r = 0; r < 64; ++r) {
      const int64_t o = find_window(bytes, 900, row(tokens, r, L));
      REQUIRE(o >= 0);  // inside the train split
      REQUIRE(o + L + 1 <= 900);
      for (int64_t t = 0; t < L; ++t)
        CHECK(targets[r * L + t] == bytes[static_cast<size_t>(o + t + 1)]);
      offsets.insert(o);
    }
  }
  // 12800 draws over 884 offsets: every one of them, the first and the last included.
  CHECK(offsets.size() == 884);
  CHECK(*offsets.begin() == 0);
  CHECK(*offsets.rbegin() == 900 - L - 1);
}

TEST_CASE("TextCorpus: the same seed gives the same batches, and a saved position resumes") {
  const Bytes bytes = random_bytes(5000, 4);
  TextCorpus a(text_of(bytes), {.length = 32, .seed = 9}),
      b(text_of(bytes), {.length = 32, .seed = 9});
  TextCorpus c(text_of(bytes), {.length = 32, .seed = 10});
  const Batch a1 = a.batch(8);
  CHECK(host_ids(a1.tokens).values == host_ids(b.batch(8).tokens).values);
  CHECK(host_ids(a1.tokens).values != host_ids(c.batch(8).tokens).values);
  const uint64_t offset = a.generator().offset();
  const Batch a2 = a.batch(8);
  CHECK(host_ids(a2.tokens).values != host_ids(a1.tokens).values);
  TextCorpus d(text_of(bytes), {.length = 32, .seed = 9});
  d.generator().set_offset(offset);
  CHECK(host_ids(d.batch(8).tokens).values == host_ids(a2.tokens).values);
}

TEST_CASE("TextCorpus: held-out windows tile the end of the file, the same every time") {
  const Bytes bytes = random_bytes(1000, 6);
  const int64_t L = 16;
  TextCorpus corpus(text_of(bytes), {.length = L, .held_out = 0.1, .seed = 1});
  // 100 held-out bytes [900, 1000): windows at 900, 916, …, 980; (100 − 1) / 16 = 6.
  CHECK(corpus.held_out_windows() == 6);
  CHECK(corpus.held_out_batches(4) == 2);
  CHECK(corpus.held_out_batches(6) == 1);
  CHECK(corpus.held_out_batches(100) == 1);
  const Batch first = corpus.held_out_batch(0, 4), last = corpus.held_out_batch(1, 4);
  CHECK(first.tokens.shape() == Shape{4, L});
  CHECK(last.tokens.shape() == Shape{2, L});  // the last batch is shorter
  const Indices t0 = host_ids(first.tokens), y0 = host_ids(first.targets);
  const Indices t1 = host_ids(last.tokens), y1 = host_ids(last.targets);
  for (int64_t k = 0; k < 6; ++k) {
    CAPTURE(k);
    const Indices& tokens = k < 4 ? t0 : t1;
    const Indices& targets = k < 4 ? y0 : y1;
    const int64_t r = k % 4, start = 900 + k * L;
    for (int64_t t = 0; t < L; ++t) {
      CHECK(tokens[r * L + t] == bytes[static_cast<size_t>(start + t)]);
      CHECK(targets[r * L + t] == bytes[static_cast<size_t>(start + t + 1)]);
    }
  }
  // Deterministic, and the train generator is untouched by evaluation.
  CHECK(host_ids(corpus.held_out_batch(1, 4).targets).values == y1.values);
  CHECK(corpus.generator().offset() == 0);
  const std::vector<double> mask = last.mask.to_vector();
  CHECK(mask == std::vector<double>(static_cast<size_t>(2 * L), 1.0));

  check_error([&] { corpus.held_out_batch(2, 4); },
              {"TextCorpus::held_out_batch", "index 2", "0 <= index < 2", "6 held-out windows"});
  check_error([&] { corpus.held_out_batch(-1, 4); }, {"TextCorpus::held_out_batch", "index -1"});
  check_error([&] { corpus.held_out_batches(0); }, {"held_out_batches", "batch_size = 0"});

  // No held-out split.
  TextCorpus all(text_of(bytes), {.length = L, .held_out = 0.0});
  CHECK(all.train_bytes() == 1000);
  CHECK(all.held_out_windows() == 0);
  CHECK(all.held_out_batches(4) == 0);
  check_error([&] { all.held_out_batch(0, 4); },
              {"TextCorpus::held_out_batch", "0 held-out windows"});
}

TEST_CASE("TextCorpus: texts shorter than one window and bad options are errors") {
  const ByteDir dir("text");
  const std::string tiny = dir.file("tiny.txt", random_bytes(10, 7));
  check_error([&] { TextCorpus(load_text(tiny), {.length = 16, .held_out = 0.0}); },
              {"TextCorpus", tiny, "holds 10 bytes", "train split", "length + 1 = 17"});
  // Just long enough: 17 bytes give exactly one window.
  TextCorpus exact(text_of(random_bytes(17, 8)), {.length = 16, .held_out = 0.0});
  const Batch b = exact.batch(3);
  CHECK(host_ids(b.tokens).values == host_ids(exact.batch(3).tokens).values);
  // The held-out split of 100 bytes at 10% is 10 bytes.
  check_error([&] { TextCorpus(text_of(random_bytes(100, 9), "hundred"), {.length = 16}); },
              {"TextCorpus", "hundred", "holds 100 bytes", "held-out split (the last 10",
               "length + 1 = 17"});
  check_error([&] { TextCorpus(text_of(random_bytes(9, 9)), {.length = 16, .held_out = 0.01}); },
              {"TextCorpus", "holds 9 bytes", "17"});
  check_error([&] { TextCorpus(text_of(random_bytes(100, 9)), {.length = 0}); },
              {"TextCorpus", "length = 0", ">= 1"});
  check_error([&] { TextCorpus(text_of(random_bytes(100, 9)), {.length = 4, .held_out = 1.0}); },
              {"TextCorpus", "held_out = 1", "[0, 1)"});
  check_error([&] { TextCorpus(text_of(random_bytes(100, 9)), {.length = 4, .held_out = -0.1}); },
              {"TextCorpus", "held_out = -0.1"});
  TextCorpus ok(text_of(random_bytes(100, 9)), {.length = 4});
  check_error([&] { ok.batch(0); }, {"TextCorpus::batch", "batch_size = 0"});
}

TEST_CASE("The Devil's Dictionary loads as the default text") {
  const std::string path = default_text_path();
  CHECK(path == "/usr/share/dictd/devil.dict.dz");
  if (!fs::exists(path)) {
    MESSAGE("skipped: ", path, " is not installed (Debian package dict-devil)");
    return;
  }
  const ByteText text = load_text(path);
  CHECK(text.gzip);
  CHECK(text.bytes.size() > 300000);
  const std::string s(text.bytes.begin(), text.bytes.end());
  CHECK(s.find("The Devil's Dictionary") != std::string::npos);
  CHECK(s.find("CYNIC") != std::string::npos);
  TextCorpus corpus(text, {.length = 256});
  const int64_t held = static_cast<int64_t>(text.bytes.size()) / 10;
  CHECK(corpus.held_out_bytes() == held);
  CHECK(corpus.held_out_windows() == (held - 1) / 256);
  const Batch b = corpus.batch(4);
  CHECK(b.tokens.shape() == Shape{4, 256});
}
