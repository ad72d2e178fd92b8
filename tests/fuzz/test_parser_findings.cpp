// The parsers' answers to the inputs that crashed them: each is a polyak::Error naming the
// function, the source and what was wrong. (The reproducers are in fuzz/corpus/ as well.)
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "polyak/polyak.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;

namespace {

// A safetensors file of the header `header` and no data.
std::string safetensors_bytes(const std::string& header) {
  const uint64_t n = header.size();
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &n, 8);
  return bytes + header;
}

std::string nested_arrays(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

}  // namespace

TEST_CASE(
    "fuzz findings: parse_safetensors: arrays nested a million deep are an error, not a stack "
    "overflow") {
  const std::string bytes = safetensors_bytes(
      R"({"a":{"dtype":"F32","shape":)" + nested_arrays(1'000'000) + R"(,"data_offsets":[0,0]}})");
  check_error([&] { parse_safetensors(bytes, "deep.safetensors"); },
              {"parse_safetensors", "deep.safetensors",
               "nests arrays and objects more than 64 deep", "expected 3"});
  // Objects too, and anywhere in the header.
  std::string objects;
  for (int i = 0; i < 100'000; ++i) objects += R"({"a":)";
  objects += "1" + std::string(100'000, '}');
  check_error(
      [&] {
        parse_safetensors(safetensors_bytes(R"({"__metadata__":)" + objects + "}"), "objects");
      },
      {"parse_safetensors", "objects", "more than 64 deep"});
  // Within the limit, the usual message about the value.
  check_error(
      [&] {
        parse_safetensors(safetensors_bytes(R"({"a":{"dtype":"F32","shape":)" + nested_arrays(60) +
                                            R"(,"data_offsets":[0,0]}})"),
                          "shallow");
      },
      {"shallow", "tensor 'a'", "has dimension 0", "expected a non-negative integer"});
}

TEST_CASE("fuzz: parse_safetensors reads tensors and metadata from bytes in memory") {
  const std::string bytes =
      safetensors_bytes(
          R"({"__metadata__":{"k":"v"},"b":{"dtype":"I64","shape":[1],"data_offsets":[4,12]},)"
          R"("a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})") +
      std::string("\0\0\x80\x3f\x07\0\0\0\0\0\0\0", 12);
  SafetensorsFile f = parse_safetensors(bytes, "in memory");
  REQUIRE(f.tensors.size() == 2);
  CHECK(f.tensors[0].first == "a");
  CHECK(f.tensors[0].second.item() == 1.0);
  CHECK(f.tensors[1].first == "b");
  CHECK(f.tensors[1].second.data<int64_t>()[0] == 7);
  CHECK(f.metadata.at("k") == "v");
  check_error([&] { parse_safetensors(bytes.substr(0, bytes.size() - 1), "in memory"); },
              {"parse_safetensors", "in memory", "run past the data section"});
}

TEST_CASE(
    "fuzz findings: config_from_json: arrays nested a million deep are an error, not a stack "
    "overflow") {
  const std::string text = config_to_json(TransformerConfig{});
  const std::string vocab = R"("vocab":11)";
  REQUIRE(text.find(vocab) != std::string::npos);
  auto with_vocab = [&](const std::string& value) {
    std::string t = text;
    return t.replace(t.find(vocab), vocab.size(), R"("vocab":)" + value);
  };
  check_error([&] { config_from_json(with_vocab(nested_arrays(1'000'000)), "deep.json"); },
              {"config_from_json", "deep.json", "nest more than 64 deep", "expected 2"});
  check_error([&] { config_from_json(with_vocab(nested_arrays(60)), "shallow.json"); },
              {"config_from_json", "shallow.json", "'vocab' is [[[", "expected an integer"});
}
