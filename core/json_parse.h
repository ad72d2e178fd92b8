// Strict JSON parsing for the files polyak reads (safetensors headers, checkpoint configs,
// training checkpoints' metadata): the library's own sources only (this header includes
// nlohmann/json, so it is not installed).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

namespace polyak::detail {

// Deeper nesting of arrays and objects than any polyak file has, and shallow enough that the
// recursive copy and dump (of an error message) a JSON value goes through cannot overflow
// the stack.
constexpr int kMaxJsonNesting = 64;

struct StrictJson {
  nlohmann::json value;
  // The first key that repeats within one object (a JSON parser otherwise keeps one of the
  // two values silently), with its depth (1: the top level).
  std::optional<std::pair<std::string, size_t>> duplicate;
  // Arrays or objects nested deeper than kMaxJsonNesting: they are dropped unread.
  bool too_deep = false;
};

// Parses `text`; throws nlohmann::json::exception when it is not JSON.
StrictJson parse_strict_json(const std::string& text);

}  // namespace polyak::detail
