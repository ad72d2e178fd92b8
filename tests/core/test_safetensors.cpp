// safetensors: bit-exact round trips, the byte layout, hand-written files, one test per
// kind of corruption, and atomic writes that never destroy the previous file.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>

#include "files.h"
#include "polyak/core/safetensors.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::read_bytes;
using polyak::testing::TempDir;
using polyak::testing::write_bytes;
namespace fs = std::filesystem;

namespace {

std::string u64le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A file with this header text (as given, unpadded) followed by `data`.
std::string file_bytes(const std::string& header, const std::string& data) {
  return u64le(header.size()) + header + data;
}

// `n` bytes of data (the values do not matter to the header checks).
std::string zeros(size_t n) {
  return std::string(n, '\0');
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

// Tensors covering the cases that matter: both dtypes, a scalar, an empty tensor, and
// values that a text round trip would lose (−0, denormals, inf, nan, 1/3).
std::vector<std::pair<std::string, Tensor>> sample_tensors() {
  Generator gen(7);
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  return {
      {"zeta.weight", Tensor::randn({3, 4}, gen)},
      {"alpha", Tensor::from({1.0 / 3.0, -0.0, 1e-310, inf, -inf, nan}, DType::f64)},
      {"scalar", Tensor::scalar(2.5)},
      {"empty", Tensor::zeros({0, 3}, DType::f64)},
      {"mid.bias", Tensor::from({1e-40, -1.5, 3.0e38}, DType::f32)},
      {"deep", Tensor::randn({2, 1, 3, 2}, gen, DType::f64)},
  };
}

}  // namespace

TEST_CASE("safetensors: f32 and f64 round trip bit-exactly, in the given order, with metadata") {
  TempDir dir("polyak-test-safetensors");
  const std::string path = dir.file("t.safetensors");
  auto tensors = sample_tensors();
  std::map<std::string, std::string> metadata = {
      {"step", "1200"}, {"note", "π ≈ 3.14159, \"quoted\"\n"}, {"", "empty key"}};
  save_safetensors(path, tensors, metadata);

  SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata == metadata);
  REQUIRE(f.tensors.size() == tensors.size());
  // Zero-byte tensors sit at the offset where they were written: "empty" follows "scalar".
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO(tensors[i].first);
    CHECK(f.tensors[i].first == tensors[i].first);
    CHECK(f.tensors[i].second.shape() == tensors[i].second.shape());
    CHECK(f.tensors[i].second.dtype() == tensors[i].second.dtype());
    CHECK(same_bits(f.tensors[i].second, tensors[i].second));
    CHECK_FALSE(f.tensors[i].second.requires_grad());
  }
  CHECK(f.tensors[1].second.to_vector()[0] == 1.0 / 3.0);
  CHECK(std::signbit(f.tensors[1].second.to_vector()[1]));
  CHECK(f.tensors[2].second.shape() == Shape{});
  CHECK(f.tensors[2].second.item() == 2.5);
  CHECK(f.tensors[3].second.shape() == Shape({0, 3}));
  CHECK(dir.entries() == std::vector<std::string>{"t.safetensors"});
}

TEST_CASE("safetensors: the bytes on disk follow the format") {
  TempDir dir("polyak-test-safetensors");
  const std::string path = dir.file("t.safetensors");
  Tensor a = Tensor::from({1.0, 2.0, 3.0}, DType::f32);
  Tensor b = Tensor::from({-1.0, 0.5}, DType::f64);
  save_safetensors(path, {{"b", b}, {"a", a}}, {{"k", "v"}});
  std::string bytes = read_bytes(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  CHECK(n % 8 == 0);
  REQUIRE(bytes.size() == 8 + n + 16 + 12);
  std::string header = bytes.substr(8, n);
  CHECK(header.front() == '{');
  CHECK(header.find_last_not_of(' ') == header.find_last_of('}'));
  CHECK(header.find(R"("__metadata__":{"k":"v"})") != std::string::npos);
  CHECK(header.find(R"("b":{"dtype":"F64","shape":[2],"data_offsets":[0,16]})") !=
        std::string::npos);
  CHECK(header.find(R"("a":{"dtype":"F32","shape":[3],"data_offsets":[16,28]})") !=
        std::string::npos);
  // The data section: b's doubles, then a's floats, little-endian, as in memory.
  CHECK(std::memcmp(bytes.data() + 8 + n, b.raw_data(), 16) == 0);
  CHECK(std::memcmp(bytes.data() + 8 + n + 16, a.raw_data(), 12) == 0);
}

TEST_CASE("safetensors: a file written elsewhere loads in data-offset order") {
  // As the Python library writes: keys in another order, metadata, space padding.
  TempDir dir("polyak-test-safetensors");
  const std::string path = dir.file("py.safetensors");
  std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},)"
      R"("b":{"shape":[2],"data_offsets":[0,16],"dtype":"F64"}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  double bv[2] = {0.25, -8.0};
  float av[1] = {7.5f};
  std::string data(reinterpret_cast<const char*>(bv), 16);
  data += std::string(reinterpret_cast<const char*>(av), 4);
  write_bytes(path, file_bytes(header, data));

  SafetensorsFile f = load_safetensors(path);
  REQUIRE(f.tensors.size() == 2);
  CHECK(f.tensors[0].first == "b");
  CHECK(f.tensors[0].second.dtype() == DType::f64);
  CHECK(f.tensors[0].second.to_vector() == std::vector<double>{0.25, -8.0});
  CHECK(f.tensors[1].first == "a");
  CHECK(f.tensors[1].second.to_vector() == std::vector<double>{7.5});
  CHECK(f.metadata == std::map<std::string, std::string>{{"format", "pt"}});
}

TEST_CASE("safetensors: i32 and i64 tensors round trip, and an I64 file written elsewhere loads") {
  TempDir dir("polyak-test-safetensors");
  const std::string path = dir.file("ids.safetensors");
  const int64_t big = int64_t{1} << 40;
  const Tensor ids = Tensor::from_ints({3, -1, 2147483647, -2147483647 - 1}, {2, 2}, DType::i32);
  const Tensor wide = Tensor::from_ints({big, -big, 0}, {3});
  save_safetensors(path, {{"ids", ids}, {"wide", wide}, {"w", Tensor::ones({2})}});
  const std::string header = read_bytes(path).substr(8);
  CHECK(header.find(R"("ids":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]})") !=
        std::string::npos);
  CHECK(header.find(R"("wide":{"dtype":"I64","shape":[3],"data_offsets":[16,40]})") !=
        std::string::npos);
  SafetensorsFile f = load_safetensors(path);
  REQUIRE(f.tensors.size() == 3);
  CHECK(same_bits(f.tensors[0].second, ids));
  CHECK(same_bits(f.tensors[1].second, wide));
  CHECK(f.tensors[1].second.data<int64_t>()[1] == -big);

  // As the Python library writes token ids (torch.long → I64).
  const std::string py = dir.file("py.safetensors");
  std::string text = R"({"tokens":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})";
  text.append((8 - text.size() % 8) % 8, ' ');
  const int64_t tv[2] = {7, -3};
  write_bytes(py, file_bytes(text, std::string(reinterpret_cast<const char*>(tv), 16)));
  SafetensorsFile g = load_safetensors(py);
  REQUIRE(g.tensors.size() == 1);
  CHECK(g.tensors[0].second.dtype() == DType::i64);
  CHECK(g.tensors[0].second.to_vector() == std::vector<double>{7, -3});
}

TEST_CASE("safetensors: an empty file of tensors round trips") {
  TempDir dir("polyak-test-safetensors");
  const std::string path = dir.file("empty.safetensors");
  save_safetensors(path, {});
  CHECK(read_bytes(path) == u64le(8) + "{}      ");
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.tensors.empty());
  CHECK(f.metadata.empty());
}

TEST_CASE("save_safetensors: rejects bad arguments before touching the file") {
  TempDir dir("polyak-test-safetensors");
  const std::string path = dir.file("t.safetensors");
  Tensor a = Tensor::ones({2});
  check_error([&] { save_safetensors("", {{"a", a}}); }, {"save_safetensors", "path is empty"});
  check_error(
      [&] {
        save_safetensors(path, {{"a", a}, {"a", a}});
      },
      {"save_safetensors", path, "'a' appears twice"});
  check_error(
      [&] {
        save_safetensors(path, {{"__metadata__", a}});
      },
      {"save_safetensors", "reserves for metadata"});
  check_error([&] { save_safetensors(path, {{"", a}}); }, {"tensors[0] has an empty name"});
  check_error(
      [&] {
        save_safetensors(path, {{"a", a}, {"u", Tensor()}});
      },
      {"tensor 'u' is undefined"});
  check_error([&] { save_safetensors(path, {{"a\xff", a}}); }, {"not valid UTF-8"});
  check_error(
      [&] {
        save_safetensors(path, {{"a", a}}, {{"k", "\xc3"}});
      },
      {"metadata['k'] is not valid UTF-8"});
  CHECK(dir.entries().empty());
}

// ---- corrupt files: each names the path and the fault -------------------------------------

TEST_CASE("load_safetensors: a missing file, a directory, a file too short for the size") {
  TempDir dir("polyak-test-safetensors");
  const std::string missing = dir.file("nope.safetensors");
  check_error([&] { load_safetensors(missing); }, {"load_safetensors", missing, "no such file"});
  check_error([&] { load_safetensors(dir.path.string()); }, {"not a regular file"});
  const std::string tiny = dir.file("tiny.safetensors");
  write_bytes(tiny, std::string("\x10\0\0\0\0", 5));
  check_error([&] { load_safetensors(tiny); }, {tiny, "file is 5 bytes, expected at least 8"});
}

TEST_CASE("load_safetensors: a file truncated anywhere is an error naming the fault") {
  TempDir dir("polyak-test-safetensors");
  const std::string good = dir.file("good.safetensors");
  save_safetensors(good, {{"w", Tensor::ones({4, 4})}, {"b", Tensor::ones({4}, DType::f64)}},
                   {{"k", "v"}});
  const std::string bytes = read_bytes(good);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const size_t header_end = 8 + n;
  struct Cut {
    size_t at;
    std::string fragment;
  };
  std::vector<Cut> cuts = {
      {0, "file is 0 bytes, expected at least 8"},
      {7, "file is 7 bytes"},
      {8, "bytes but only 0 bytes follow it"},
      {20, "only 12 bytes follow it"},
      {header_end - 1, "bytes follow it (truncated"},
      {header_end, "run past the data section of 0 bytes"},
      {header_end + 30, "run past the data section of 30 bytes"},
      {bytes.size() - 1, "tensor 'b': data_offsets [64,96] run past the data section of 95 bytes"},
  };
  for (const Cut& c : cuts) {
    CAPTURE(c.at);
    const std::string path = dir.file("cut.safetensors");
    write_bytes(path, bytes.substr(0, c.at));
    check_error([&] { load_safetensors(path); }, {"load_safetensors", path, c.fragment});
  }
  // The untouched file still loads.
  CHECK(load_safetensors(good).tensors.size() == 2);
}

TEST_CASE("load_safetensors: a wrong header size") {
  TempDir dir("polyak-test-safetensors");
  const std::string good = dir.file("good.safetensors");
  save_safetensors(good, {{"w", Tensor::ones({4})}});
  std::string bytes = read_bytes(good);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const std::string path = dir.file("bad.safetensors");

  write_bytes(path, u64le(uint64_t{1} << 40) + bytes.substr(8));
  check_error([&] { load_safetensors(path); },
              {path, "header size is 1099511627776 bytes, expected at most 100000000"});
  write_bytes(path, u64le(~uint64_t{0}) + bytes.substr(8));
  check_error([&] { load_safetensors(path); }, {path, "expected at most"});
  write_bytes(path, u64le(n + 17) + bytes.substr(8));
  check_error([&] { load_safetensors(path); },
              {path, "only " + std::to_string(n + 16) + " bytes follow it"});
  write_bytes(path, u64le(n - 8) + bytes.substr(8));
  check_error([&] { load_safetensors(path); }, {path, "the header is not valid JSON"});
  write_bytes(path, u64le(0) + bytes.substr(8));
  check_error([&] { load_safetensors(path); }, {path, "header size is 0 bytes"});
}

TEST_CASE("load_safetensors: a header that is not the expected JSON") {
  TempDir dir("polyak-test-safetensors");
  const std::string path = dir.file("bad.safetensors");
  auto check = [&](const std::string& header, const std::string& data,
                   const std::vector<std::string>& fragments) {
    CAPTURE(header);
    write_bytes(path, file_bytes(header, data));
    std::vector<std::string> all = {"load_safetensors", path};
    all.insert(all.end(), fragments.begin(), fragments.end());
    check_error([&] { load_safetensors(path); }, all);
  };
  const std::string ok = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";

  check("{\"w\": garbage}", zeros(8), {"the header is not valid JSON"});
  check("\x01\x02\x03\x04\x05\x06\x07\x08", zeros(8), {"the header is not valid JSON"});
  check(R"({"w":{)" + ok + "}", zeros(8), {"the header is not valid JSON"});
  check("[1, 2]   ", "", {"the header is a JSON array, expected an object"});
  check(R"({"w": 3})", zeros(8), {"tensor 'w' is a JSON number, expected an object"});
  check(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", zeros(8), {"tensor 'w' has no \"dtype\""});
  check(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", zeros(8), {"tensor 'w' has no \"shape\""});
  check(R"({"w":{"dtype":"F32","shape":[2]}})", zeros(8), {"tensor 'w' has no \"data_offsets\""});
  check(R"({"w":{)" + ok + R"(,"extra":1}})", zeros(8), {"unknown field 'extra'"});
  check(R"({"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", zeros(4),
        {"tensor 'w': dtype BF16 is not supported, expected F32, F64, I32 or I64"});
  check(R"({"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", zeros(8),
        {"dtype f32 is not supported"});
  check(R"({"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", zeros(8),
        {"dtype is a JSON number, expected a string"});
  check(R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", zeros(8),
        {"shape is a JSON string, expected an array"});
  check(R"({"w":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,8]}})", zeros(8),
        {"tensor 'w': shape [2,-2] has dimension 1 = -2, expected a non-negative integer"});
  check(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", zeros(8),
        {"has dimension 0 = 2.0"});
  check(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", zeros(8),
        {"has too many elements"});
  check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", zeros(8),
        {"data_offsets is [0], expected [begin, end]"});
  check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}})", zeros(8),
        {"data_offsets is [0,-8]"});
  check(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", zeros(8),
        {"ends before it begins"});
  check(R"({"__metadata__":[],"w":{)" + ok + "}}", zeros(8),
        {"__metadata__ is a JSON array, expected an object of strings"});
  check(R"({"__metadata__":{"step":12},"w":{)" + ok + "}}", zeros(8),
        {"__metadata__['step'] is a JSON number, expected a string"});
  check(R"({"w":{)" + ok + R"(},"w":{)" + ok + "}}", zeros(8), {"tensor name 'w' appears twice"});
  check(R"({"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", zeros(8),
        {"key 'dtype' appears twice"});
}

TEST_CASE("load_safetensors: offsets that disagree with the shapes or do not tile the data") {
  TempDir dir("polyak-test-safetensors");
  const std::string path = dir.file("bad.safetensors");
  auto check = [&](const std::string& header, size_t data_bytes,
                   const std::vector<std::string>& fragments) {
    CAPTURE(header);
    write_bytes(path, file_bytes(header, zeros(data_bytes)));
    std::vector<std::string> all = {"load_safetensors", path};
    all.insert(all.end(), fragments.begin(), fragments.end());
    check_error([&] { load_safetensors(path); }, all);
  };
  auto entry = [](const std::string& name, int64_t n, int64_t begin, int64_t end) {
    return "\"" + name + R"(":{"dtype":"F32","shape":[)" + std::to_string(n) +
           R"(],"data_offsets":[)" + std::to_string(begin) + "," + std::to_string(end) + "]}";
  };
  // Size mismatch: 3 floats need 12 bytes.
  check("{" + entry("w", 3, 0, 8) + "}", 8,
        {"tensor 'w': data_offsets [0,8] hold 8 bytes, expected 12 for shape [3] F32"});
  // Overlap.
  check("{" + entry("a", 2, 0, 8) + "," + entry("b", 2, 4, 12) + "}", 12,
        {"tensor 'b' at data_offsets [4,12] overlaps tensor 'a' at [0,8]"});
  // Same range twice.
  check("{" + entry("a", 2, 0, 8) + "," + entry("b", 2, 0, 8) + "}", 8, {"overlaps tensor 'a'"});
  // Out of range.
  check("{" + entry("a", 2, 0, 8) + "," + entry("b", 2, 8, 16) + "}", 12,
        {"tensor 'b': data_offsets [8,16] run past the data section of 12 bytes"});
  check("{" + entry("a", 2, 1000000, 1000008) + "}", 8, {"run past the data section of 8 bytes"});
  // Gaps.
  check("{" + entry("a", 2, 0, 8) + "," + entry("b", 2, 12, 20) + "}", 20,
        {"a gap of 4 bytes between tensor 'a' (ends at 8) and tensor 'b' (begins at 12)"});
  check("{" + entry("a", 2, 4, 12) + "}", 12,
        {"the first tensor 'a' begins at data offset 4, expected 0"});
  // Trailing bytes.
  check("{" + entry("a", 2, 0, 8) + "}", 12,
        {"the tensors end at data offset 8 but the data section has 12 bytes (4 trailing bytes)"});
  check("{}", 3, {"(3 trailing bytes)"});
}

// ---- atomic writes ---------------------------------------------------------------------------

TEST_CASE("save_safetensors: a failed save leaves the previous file byte-identical") {
  TempDir dir("polyak-test-safetensors");
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"w", Tensor::full({8}, 3.0)}}, {{"step", "1"}});
  const std::string before = read_bytes(path);

  // Invalid arguments: nothing is written.
  check_error(
      [&] {
        save_safetensors(path, {{"w", Tensor::ones({2})}, {"w", Tensor::ones({2})}});
      },
      {"appears twice"});
  CHECK(read_bytes(path) == before);

  // A directory that does not exist: the temporary file cannot be created.
  const std::string nowhere = dir.file("missing-dir/ckpt.safetensors");
  check_error(
      [&] {
        save_safetensors(nowhere, {{"w", Tensor::ones({2})}});
      },
      {"save_safetensors", nowhere, "cannot create the temporary file"});

  // The target is a directory: the data is written, the rename fails, the temporary file
  // is removed and the directory is left alone.
  fs::create_directories(dir.path / "taken" / "inner");
  const std::string taken = dir.file("taken");
  check_error(
      [&] {
        save_safetensors(taken, {{"w", Tensor::ones({2})}});
      },
      {"save_safetensors", "cannot rename", "the previous file is untouched"});
  CHECK(fs::is_directory(dir.path / "taken" / "inner"));

  CHECK(read_bytes(path) == before);
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors", "taken"});

  // A successful save replaces the file and leaves nothing else behind.
  save_safetensors(path, {{"w", Tensor::full({8}, 4.0)}}, {{"step", "2"}});
  CHECK(load_safetensors(path).metadata.at("step") == "2");
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors", "taken"});
}

TEST_CASE("save_safetensors: a write that fails midway leaves the previous file byte-identical") {
  // The file-size limit makes write() fail (EFBIG) after the first 64 KiB of a 1 MiB save.
  TempDir dir("polyak-test-safetensors");
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"w", Tensor::full({8}, 3.0)}});
  const std::string before = read_bytes(path);

  struct rlimit old_limit {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 64 * 1024;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  bool threw = false;
  std::string message;
  try {
    save_safetensors(path, {{"big", Tensor::zeros({256 * 1024})}});
  } catch (const Error& e) {
    threw = true;
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);

  INFO(message);
  CHECK(threw);
  CHECK(message.find("writing") != std::string::npos);
  CHECK(message.find("the previous file is untouched") != std::string::npos);
  CHECK(read_bytes(path) == before);
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
}

// ---- readable without polyak ---------------------------------------------------------------

TEST_CASE("safetensors: a plain Python reader (json + struct) reads the file") {
  const char* python = "/usr/bin/python3";
  if (!fs::exists(python)) {
    MESSAGE("skipped: no /usr/bin/python3");
    return;
  }
  TempDir dir("polyak-test-safetensors");
  const std::string path = dir.file("t.safetensors");
  save_safetensors(path,
                   {{"w", Tensor::from({0.1, -2.0, 3.0, 1e-30}, {2, 2}, DType::f32)},
                    {"d", Tensor::from({1.0 / 3.0, -1e300}, DType::f64)}},
                   {{"who", "polyak"}});
  const std::string script = dir.file("read.py");
  write_bytes(script, R"(import json, struct, sys
with open(sys.argv[1], "rb") as f:
    raw = f.read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n])
meta = header.pop("__metadata__")
data = raw[8 + n:]
for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
    b, end = e["data_offsets"]
    fmt = {"F32": "f", "F64": "d"}[e["dtype"]]
    count = (end - b) // struct.calcsize(fmt)
    values = struct.unpack("<%d%s" % (count, fmt), data[b:end])
    print(name, e["dtype"], e["shape"], " ".join(repr(v) for v in values))
print("meta", meta["who"])
)");
  const std::string out = dir.file("out.txt");
  const std::string cmd = std::string(python) + " " + script + " " + path + " > " + out + " 2>&1";
  int status = std::system(cmd.c_str());
  std::string printed = fs::exists(out) ? read_bytes(out) : "";
  INFO(printed);
  REQUIRE(status == 0);
  std::istringstream lines(printed);
  std::string line;
  std::vector<std::string> got;
  while (std::getline(lines, line)) got.push_back(line);
  REQUIRE(got.size() == 3);
  CHECK(got[0].rfind("w F32 [2, 2] ", 0) == 0);
  CHECK(got[1].rfind("d F64 [2] ", 0) == 0);
  CHECK(got[2] == "meta polyak");
  // Python's repr round-trips doubles exactly; f32 values arrive widened.
  auto values = [](const std::string& l, size_t skip) {
    std::istringstream is(l);
    std::string word;
    for (size_t i = 0; i < skip; ++i) is >> word;
    std::vector<double> v;
    while (is >> word) v.push_back(std::stod(word));
    return v;
  };
  CHECK(values(got[0], 4) ==
        std::vector<double>{static_cast<double>(0.1f), -2.0, 3.0, static_cast<double>(1e-30f)});
  CHECK(values(got[1], 3) == std::vector<double>{1.0 / 3.0, -1e300});
}
