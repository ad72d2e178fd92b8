// IDX files (raw and gzip), their faults, Fashion-MNIST and images as token sequences.
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "byte_files.h"
#include "polyak/data/idx.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::host_ids;

namespace {

using polyak::testing::ByteDir;
using polyak::testing::Bytes;
using polyak::testing::gzip;
namespace fs = std::filesystem;

void put_u32(Bytes& b, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<uint8_t>(v >> shift));
}

// An IDX file: magic 0 0, `type`, the rank, the dimensions, then `values`.
Bytes idx(const std::vector<uint32_t>& dims, const Bytes& values, uint8_t type = 0x08) {
  Bytes b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) put_u32(b, d);
  b.insert(b.end(), values.begin(), values.end());
  return b;
}

Bytes iota_bytes(size_t n, int start = 0) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i)
    b[i] = static_cast<uint8_t>((static_cast<int>(i) * 7 + start) % 256);
  return b;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Sets an environment variable for one scope and restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      setenv(name, value->c_str(), 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

bool fashion_present() {
  const fs::path dir = default_fashion_mnist_dir();
  return fs::exists(dir / "train-images-idx3-ubyte.gz") &&
         fs::exists(dir / "t10k-images-idx3-ubyte.gz");
}

}  // namespace

TEST_CASE("read_idx reads raw and gzip IDX files exactly") {
  const ByteDir dir("idx");
  const Bytes values = iota_bytes(3 * 2 * 4, 5);
  const Bytes file = idx({3, 2, 4}, values);

  SUBCASE("raw, rank 3") {
    const IdxArray a = read_idx(dir.file("a.idx", file));
    CHECK(a.dims == std::vector<int64_t>{3, 2, 4});
    CHECK(a.data == values);
  }
  SUBCASE("gzip, rank 3") {
    const Bytes gz = gzip(file);
    REQUIRE(gz[0] == 0x1f);
    const IdxArray a = read_idx(dir.file("a.idx.gz", gz));
    CHECK(a.dims == std::vector<int64_t>{3, 2, 4});
    CHECK(a.data == values);
  }
  SUBCASE("gzip in two members, split inside the header and inside the values") {
    const Bytes head(file.begin(), file.begin() + 6), rest(file.begin() + 6, file.end());
    const IdxArray a = read_idx(dir.file("two.gz", concat(gzip(head), gzip(rest))));
    CHECK(a.dims == std::vector<int64_t>{3, 2, 4});
    CHECK(a.data == values);
  }
  SUBCASE("rank 1 and rank 4, dimensions above 2^16") {
    const IdxArray one = read_idx(dir.file("one", idx({1}, {200})));
    CHECK(one.dims == std::vector<int64_t>{1});
    CHECK(one.data == Bytes{200});
    const Bytes big = iota_bytes(70000 * 2, 1);
    const IdxArray four = read_idx(dir.file("four.gz", gzip(idx({1, 70000, 2, 1}, big))));
    CHECK(four.dims == std::vector<int64_t>{1, 70000, 2, 1});
    CHECK(four.data == big);
  }
  SUBCASE("a file much larger than the reader's chunks") {
    const Bytes big = iota_bytes(3 * 1000 * 1000, 3);
    const IdxArray a = read_idx(dir.file("big.gz", gzip(idx({3000, 1000}, big))));
    CHECK(a.dims == std::vector<int64_t>{3000, 1000});
    CHECK(a.data == big);
  }
}

TEST_CASE("read_idx: every malformed file is an error naming the file and the fault") {
  const ByteDir dir("idx");
  const Bytes good = idx({2, 3}, iota_bytes(6));
  auto bad = [&](const std::string& name, const Bytes& bytes, std::vector<std::string> fragments) {
    CAPTURE(name);
    const std::string path = dir.file(name, bytes);
    fragments.push_back("read_idx");
    fragments.push_back(path);
    check_error([&] { read_idx(path); }, fragments);
  };
  const std::string missing = (dir.path / "missing.idx").string();
  check_error([&] { read_idx(missing); }, {"read_idx", "no file", missing});
  check_error([&] { read_idx(dir.path.string()); }, {"read_idx", dir.path.string(), "is a folder"});

  bad("empty", {}, {"holds 0 bytes", "4-byte IDX header"});
  bad("three", {0, 0, 8}, {"holds 3 bytes", "4-byte IDX header"});
  bad("magic", concat({1, 0}, Bytes(good.begin() + 2, good.end())),
      {"wrong magic", "0x01 0x00", "expected 0x00 0x00"});
  bad("text", {'h', 'e', 'l', 'l', 'o'}, {"wrong magic", "0x68 0x65"});
  bad("float", idx({2}, Bytes(8), 0x0d), {"wrong magic", "data type 0x0d", "float", "0x08"});
  bad("type", idx({2}, Bytes(2), 0x42), {"data type 0x42", "no IDX type"});
  bad("rank0", {0, 0, 8, 0}, {"rank 0"});
  bad("header", Bytes{0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0},
      {"truncated header", "rank 3 needs 12 bytes", "holds 10"});
  bad("zero", idx({2, 0, 3}, {}), {"dimension 1 is 0", ">= 1"});
  bad("absurd", idx({0x80000000u, 1}, {}), {"dimension 0 is 2147483648", "2^31"});
  bad("overflow", idx({0x7fffffffu, 0x7fffffffu, 0x7fffffffu}, {}),
      {"[2147483647,2147483647]", "2^40", "overflow"});
  bad("short", idx({2, 3}, iota_bytes(5)), {"truncated", "[2,3]", "promise 6 values", "holds 5"});
  bad("long", idx({2, 3}, iota_bytes(8)), {"2 trailing bytes", "after the 6 values", "[2,3]"});
  bad("lying.gz", gzip(idx({1000, 1000, 1000}, iota_bytes(10))),
      {"truncated", "promise 1000000000 values", "holds 10", "after gunzip"});

  // gzip faults.
  const Bytes gz = gzip(good);
  bad("magic-only.gz", {0x1f, 0x8b}, {"gzip stream is truncated"});
  bad("cut.gz", Bytes(gz.begin(), gz.end() - 5), {"gzip stream is truncated", "expected the rest"});
  Bytes flipped = gz;
  flipped[flipped.size() - 6] ^= 0xff;  // the CRC-32 of the trailer
  bad("crc.gz", flipped, {"corrupt gzip stream", "incorrect data check"});
  Bytes header = gz;
  header[2] = 7;  // compression method 7: not deflate
  bad("method.gz", header, {"corrupt gzip stream", "unknown compression method"});
  bad("trailing.gz", concat(gz, {'x', 'y', 'z'}),
      {"3 bytes", "0x78", "after the end of the gzip stream", "expected the file to end"});
  bad("half-member.gz", concat(gz, {0x1f}), {"1 byte", "after the end of the gzip stream"});
}

TEST_CASE("read_idx never crashes on arbitrary or damaged bytes") {
  // Random byte strings and random damage to valid files, raw and gzip: each read either
  // succeeds with a consistent array or throws polyak::Error.
  const ByteDir dir("idx");
  Generator gen(77);
  const Bytes raw = idx({4, 3, 5}, iota_bytes(60));
  const Bytes gz = gzip(raw);
  int errors = 0, reads = 0;
  for (int round = 0; round < 600; ++round) {
    Bytes bytes;
    switch (round % 3) {
      case 0: {
        bytes.resize(gen.integer(40));
        for (uint8_t& b : bytes) b = static_cast<uint8_t>(gen.integer(256));
        // Often pass the magic, to reach the dimensions.
        if (!bytes.empty() && gen.integer(2)) bytes[0] = 0;
        if (bytes.size() > 3 && gen.integer(2)) {
          bytes[1] = 0;
          bytes[2] = 8;
        }
        break;
      }
      default: {
        bytes = round % 3 == 1 ? raw : gz;
        const uint64_t edits = 1 + gen.integer(4);
        for (uint64_t e = 0; e < edits; ++e) {
          const uint64_t kind = gen.integer(3);
          const size_t at = gen.integer(bytes.size());
          if (kind == 0) bytes[at] = static_cast<uint8_t>(gen.integer(256));
          if (kind == 1) bytes.resize(at);
          if (kind == 2)
            bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                         static_cast<uint8_t>(gen.integer(256)));
          if (bytes.empty()) break;
        }
      }
    }
    // A new name each round: rewriting one file makes ext4 flush it on every close.
    const std::string path = dir.file("fuzz-" + std::to_string(round), bytes);
    try {
      const IdxArray a = read_idx(path);
      int64_t total = 1;
      for (int64_t d : a.dims) total *= d;
      CHECK(static_cast<int64_t>(a.data.size()) == total);
      ++reads;
    } catch (const Error&) {
      ++errors;
    }
  }
  CHECK(errors > 300);  // most damage is found
  CHECK(reads + errors == 600);
}

TEST_CASE("load_idx_images pairs images and labels and checks them") {
  const ByteDir dir("idx");
  const Bytes pixels = iota_bytes(4 * 2 * 3, 9);
  const std::string images = dir.file("images", idx({4, 2, 3}, pixels));
  const std::string labels = dir.file("labels.gz", gzip(idx({4}, {3, 0, 9, 1})));
  const ImageSet set = load_idx_images(images, labels);
  CHECK(set.count == 4);
  CHECK(set.rows == 2);
  CHECK(set.cols == 3);
  CHECK(set.classes == 10);
  CHECK(set.pixels == pixels);
  CHECK(set.labels == Bytes{3, 0, 9, 1});

  check_error([&] { load_idx_images(labels, labels); },
              {"load_idx_images", labels, "rank 1, expected rank 3", "images"});
  check_error([&] { load_idx_images(images, images); },
              {"load_idx_images", images, "rank 3, expected rank 1", "labels"});
  const std::string three = dir.file("three", idx({3}, {0, 1, 2}));
  check_error([&] { load_idx_images(images, three); },
              {"load_idx_images", images, "holds 4 images", three, "holds 3 labels"});
  check_error([&] { load_idx_images(images, labels, 5); },
              {"load_idx_images", labels, "label 9 at index 2", "expected 0 to 4", "classes = 5"});
  check_error([&] { load_idx_images(images, labels, 0); }, {"load_idx_images", "classes = 0"});
  check_error([&] { load_idx_images(images, labels, 300); }, {"load_idx_images", "classes = 300"});
  const std::string missing = (dir.path / "nothing").string();
  check_error([&] { load_idx_images(images, missing); }, {"load_idx_images", "no file", missing});
}

TEST_CASE("load_fashion_mnist: folders, file names and the hint when the data is missing") {
  const ByteDir dir("idx");
  // A small stand-in with the real file names: the train files gzip, the test files raw.
  dir.file("train-images-idx3-ubyte.gz", gzip(idx({2, 2, 2}, iota_bytes(8))));
  dir.file("train-labels-idx1-ubyte.gz", gzip(idx({2}, {7, 1})));
  dir.file("t10k-images-idx3-ubyte", idx({1, 2, 2}, {1, 2, 3, 4}));
  dir.file("t10k-labels-idx1-ubyte", idx({1}, {9}));
  const ImageSet train = load_fashion_mnist("train", dir.path.string());
  CHECK(train.count == 2);
  CHECK(train.labels == Bytes{7, 1});
  const ImageSet test = load_fashion_mnist("test", dir.path.string());
  CHECK(test.pixels == Bytes{1, 2, 3, 4});
  CHECK(test.labels == Bytes{9});

  {
    ScopedEnv env("POLYAK_FASHION_MNIST", dir.path.string());
    CHECK(default_fashion_mnist_dir() == dir.path.string());
    CHECK(load_fashion_mnist("test").labels == Bytes{9});
  }
  {
    ScopedEnv env("POLYAK_FASHION_MNIST", std::nullopt);
    CHECK(default_fashion_mnist_dir() == "/usr/share/datasets/fashion-mnist");
  }

  check_error([&] { load_fashion_mnist("validation", dir.path.string()); },
              {"load_fashion_mnist", "split 'validation'", "train or test"});
  const std::string nowhere = (dir.path / "nowhere").string();
  check_error([&] { load_fashion_mnist("train", nowhere); },
              {"load_fashion_mnist", "no folder", nowhere, "dataset-fashion-mnist",
               "scripts/setup.sh", "POLYAK_FASHION_MNIST"});
  {
    ScopedEnv env("POLYAK_FASHION_MNIST", nowhere);
    check_error([&] { load_fashion_mnist("train"); },
                {"no folder", nowhere, "from POLYAK_FASHION_MNIST", "dataset-fashion-mnist"});
  }
  fs::remove(dir.path / "t10k-labels-idx1-ubyte");
  check_error([&] { load_fashion_mnist("test", dir.path.string()); },
              {"load_fashion_mnist", "t10k-labels-idx1-ubyte.gz", "dataset-fashion-mnist",
               "POLYAK_FASHION_MNIST"});
  CHECK(fashion_mnist_classes().size() == 10);
  CHECK(fashion_mnist_classes()[9] == "Ankle boot");
}

TEST_CASE("Fashion-MNIST: 60000 train and 10000 test images of 28x28, balanced classes") {
  if (!fashion_present()) {
    MESSAGE("skipped: Fashion-MNIST is not in ", default_fashion_mnist_dir(),
            " (Debian package dataset-fashion-mnist)");
    return;
  }
  for (const auto& [split, count] : {std::pair{"train", 60000}, std::pair{"test", 10000}}) {
    CAPTURE(split);
    const ImageSet set = load_fashion_mnist(split);
    CHECK(set.count == count);
    CHECK(set.rows == 28);
    CHECK(set.cols == 28);
    CHECK(set.classes == 10);
    REQUIRE(set.pixels.size() == static_cast<size_t>(count) * 28 * 28);
    REQUIRE(set.labels.size() == static_cast<size_t>(count));
    std::vector<int64_t> per_class(10, 0);
    for (uint8_t y : set.labels) ++per_class[y];
    for (int64_t c : per_class) CHECK(c == count / 10);
    CHECK(*std::min_element(set.pixels.begin(), set.pixels.end()) == 0);
    CHECK(*std::max_element(set.pixels.begin(), set.pixels.end()) == 255);
    // Not a blank image set: the mean pixel of clothing on black is well inside (0, 255).
    double sum = 0;
    for (uint8_t p : set.pixels) sum += p;
    const double mean = sum / static_cast<double>(set.pixels.size());
    CHECK(mean > 40);
    CHECK(mean < 110);
  }
}

TEST_CASE("ImageSequences: tokens are the pixels row by row, over a range of the set") {
  auto set = std::make_shared<ImageSet>();
  set->count = 5;
  set->rows = 2;
  set->cols = 3;
  set->pixels = iota_bytes(5 * 6, 250);  // values wrap past 255 to 0
  set->labels = {4, 0, 2, 2, 1};
  set->classes = 5;
  const ImageSequences all(set, "toy/train");
  CHECK(all.name() == "toy/train");
  CHECK(all.size() == 5);
  CHECK(all.max_length() == 6);
  CHECK(all.vocab() == 256);
  CHECK(all.classes() == 5);
  for (int64_t i = 0; i < 5; ++i) {
    CAPTURE(i);
    const Example e = all.example(i);
    REQUIRE(e.tokens.size() == 6);
    for (int64_t t = 0; t < 6; ++t)
      CHECK(e.tokens[static_cast<size_t>(t)] == set->pixels[static_cast<size_t>(i * 6 + t)]);
    CHECK(e.label == set->labels[static_cast<size_t>(i)]);
  }

  // A train / validation split of one set, without copying it.
  const ImageSequences train(set, "toy/train", 0, 3), valid(set, "toy/validation", 3);
  CHECK(train.size() == 3);
  CHECK(valid.size() == 2);
  CHECK(valid.first() == 3);
  CHECK(&valid.images() == set.get());
  CHECK(valid.example(1).tokens == all.example(4).tokens);
  CHECK(valid.example(0).label == 2);

  const ClassBatch b = gather_batch(valid, {1, 0});
  CHECK(b.tokens.shape() == Shape{2, 6});
  CHECK(host_ids(b.labels).values == std::vector<int32_t>{1, 2});
  CHECK(b.lengths == std::vector<int64_t>{6, 6});
  std::vector<int32_t> expected(set->pixels.begin() + 24, set->pixels.begin() + 30);
  expected.insert(expected.end(), set->pixels.begin() + 18, set->pixels.begin() + 24);
  CHECK(host_ids(b.tokens).values == expected);

  check_error([&] { valid.example(2); }, {"ImageSequences::example", "toy/validation", "index 2"});
  check_error([&] { valid.example(-1); }, {"ImageSequences::example", "index -1"});
  check_error([&] { ImageSequences(set, "x", 5); }, {"ImageSequences", "first = 5"});
  check_error([&] { ImageSequences(set, "x", 2, 4); }, {"ImageSequences", "count = 4", "1 to 3"});
  check_error([&] { ImageSequences(set, "x", 0, 0); }, {"ImageSequences", "count = 0"});
  check_error([&] { ImageSequences(nullptr, "x"); }, {"ImageSequences", "no image set"});
  auto broken = std::make_shared<ImageSet>(*set);
  broken->pixels.pop_back();
  check_error([&] { ImageSequences(broken, "broken"); }, {"ImageSequences", "broken", "29 pixels"});
}

TEST_CASE("ImageSequences over Fashion-MNIST: a validation range of the train set") {
  if (!fashion_present()) {
    MESSAGE("skipped: Fashion-MNIST is not in ", default_fashion_mnist_dir());
    return;
  }
  auto set = std::make_shared<const ImageSet>(load_fashion_mnist("train"));
  const ImageSequences train(set, "fashion-mnist/train", 0, 55000);
  const ImageSequences valid(set, "fashion-mnist/validation", 55000);
  CHECK(train.size() == 55000);
  CHECK(valid.size() == 5000);
  CHECK(valid.max_length() == 784);
  CHECK(valid.classes() == 10);
  const Example e = valid.example(17);
  REQUIRE(e.tokens.size() == 784);
  CHECK(std::equal(e.tokens.begin(), e.tokens.end(), set->pixels.begin() + (55000 + 17) * 784));
  CHECK(e.label == set->labels[55017]);
  const ClassBatch b = gather_batch(train, {0, 1, 2, 3});
  CHECK(b.tokens.shape() == Shape{4, 784});
}
