// libFuzzer target: read_idx (data/idx.h) on arbitrary bytes, raw or gzip (an input that
// starts with gzip's magic goes through zlib).
//
// read_idx reads a file, so each input is written to a file of this process first. A
// polyak::Error is the expected answer to a bad file. Anything else (another exception, a
// crash, a sanitizer report, a hang) is a finding, as is an array whose bytes disagree with
// its dimensions.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "polyak/core/error.h"
#include "polyak/data/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    const std::filesystem::path shm("/dev/shm");
    const std::filesystem::path dir =
        std::filesystem::is_directory(shm) ? shm : std::filesystem::temp_directory_path();
    return (dir / ("polyak-fuzz-idx-" + std::to_string(getpid()))).string();
  }();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const polyak::IdxArray a = polyak::read_idx(path);
    uint64_t elements = 1;
    for (int64_t d : a.dims) elements *= static_cast<uint64_t>(d);
    if (a.dims.empty() || elements != a.data.size()) {
      std::fprintf(stderr, "fuzz_idx: %zu dimensions holding %zu bytes, expected their product\n",
                   a.dims.size(), a.data.size());
      std::abort();
    }
  } catch (const polyak::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
