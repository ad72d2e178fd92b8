// libFuzzer target: config_from_json (models/checkpoint.h), the parser of the model config
// a checkpoint carries, on arbitrary text.
//
// A polyak::Error is the expected answer to a bad config. A config it accepts must survive
// config_to_json and config_from_json again unchanged (the same JSON text both times); a
// failure there, another exception, a crash, a sanitizer report or a hang is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "polyak/core/error.h"
#include "polyak/models/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  polyak::TransformerConfig config;
  try {
    config = polyak::config_from_json(text, "fuzz input");
  } catch (const polyak::Error&) {
    return 0;
  }
  // Accepted: the round trip must hold.
  try {
    const std::string once = polyak::config_to_json(config);
    const std::string twice =
        polyak::config_to_json(polyak::config_from_json(once, "fuzz round trip"));
    if (once != twice) {
      std::fprintf(stderr, "fuzz_config: the round trip changed the config\n  %s\n  %s\n",
                   once.c_str(), twice.c_str());
      std::abort();
    }
  } catch (const polyak::Error& e) {
    std::fprintf(stderr, "fuzz_config: an accepted config fails its round trip: %s\n", e.what());
    std::abort();
  }
  return 0;
}
