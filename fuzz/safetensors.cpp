// libFuzzer target: parse_safetensors (core/safetensors.h) on arbitrary bytes.
//
// A polyak::Error is the expected answer to a bad file. Anything else (another exception, a
// crash, a sanitizer report, a hang) is a finding, as is a file that parses into tensors
// that disagree with the header: each tensor must hold exactly its shape's elements.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "polyak/core/error.h"
#include "polyak/core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    polyak::SafetensorsFile file = polyak::parse_safetensors(bytes, "fuzz input");
    size_t total = 0;
    for (const auto& [name, tensor] : file.tensors) {
      if (!tensor.defined() || tensor.requires_grad() || name.empty()) {
        std::fprintf(stderr, "fuzz_safetensors: tensor '%s' came back malformed\n", name.c_str());
        std::abort();
      }
      total += tensor.nbytes();
    }
    // The tensors tile the data section: their bytes and the header fill the input.
    if (total > size) {
      std::fprintf(stderr, "fuzz_safetensors: %zu bytes of tensors from a %zu-byte input\n", total,
                   size);
      std::abort();
    }
  } catch (const polyak::Error&) {
  }
  return 0;
}
