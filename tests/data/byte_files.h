// Helpers of the data suites that write files: a temporary folder that takes bytes, and
// gzip members made with zlib.
#pragma once

#include <zlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "testing.h"

namespace polyak::testing {

using Bytes = std::vector<uint8_t>;

// A fresh folder under the system's temporary folder, removed with everything in it.
struct ByteDir {
  std::filesystem::path path;
  explicit ByteDir(const std::string& prefix) {
    Generator gen(
        static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
    path = std::filesystem::temp_directory_path() /
           ("polyak-" + prefix + "-" + std::to_string(gen.integer(1ULL << 40)));
    std::filesystem::create_directories(path);
  }
  ~ByteDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  ByteDir(const ByteDir&) = delete;
  ByteDir& operator=(const ByteDir&) = delete;
  // Writes `bytes` to the file `name` in the folder; returns its path.
  std::string file(const std::string& name, const Bytes& bytes) const {
    const std::string p = (path / name).string();
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
    return p;
  }
};

// One gzip member holding `data` (zlib's deflate with a gzip wrapper).
inline Bytes gzip(const Bytes& data, int level = 6) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  Bytes out(deflateBound(&z, static_cast<uLong>(data.size())) + 64);
  z.next_in = const_cast<uint8_t*>(data.data());
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

}  // namespace polyak::testing
