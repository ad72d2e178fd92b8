// Reading raw or gzip files (layout in byte_reader.h).
#include "polyak/data/byte_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "polyak/core/error.h"

namespace polyak {

namespace {
constexpr size_t kChunk = size_t{1} << 16;

std::string hex(unsigned byte) {
  const char* digits = "0123456789abcdef";
  return {digits[(byte >> 4) & 15], digits[byte & 15]};
}
}  // namespace

struct ByteReader::State {
  std::string path, fn;
  std::FILE* file = nullptr;
  bool gzip = false;
  bool inflating = false;  // inflateInit2 succeeded, inflateEnd is due
  bool finished = false;   // the last gzip member has ended and no input is left
  bool input_end = false;  // the file has no more bytes to read into `in`
  z_stream z{};
  std::vector<uint8_t> in = std::vector<uint8_t>(kChunk);
  size_t in_pos = 0, in_end = 0;  // the unread bytes of `in`
  uint64_t members = 0;           // gzip members completed
  uint64_t compressed = 0;        // bytes taken from the file so far

  ~State() {
    if (inflating) inflateEnd(&z);
    if (file) std::fclose(file);
  }

  // Makes `k` (≤ in.size()) unread bytes available in `in`, or as many as the file has
  // left; returns how many there are.
  size_t ensure(size_t k) {
    while (in_end - in_pos < k && !input_end) {
      std::memmove(in.data(), in.data() + in_pos, in_end - in_pos);
      in_end -= in_pos;
      in_pos = 0;
      errno = 0;
      const size_t got = std::fread(in.data() + in_end, 1, in.size() - in_end, file);
      POLYAK_CHECK(!std::ferror(file), fn, ": cannot read '", path,
                   "': ", errno ? std::strerror(errno) : "read error");
      if (got == 0) input_end = true;
      in_end += got;
      compressed += got;
    }
    return in_end - in_pos;
  }
  bool fill() { return ensure(1) > 0; }

  size_t read_raw(uint8_t* out, size_t n) {
    size_t got = 0;
    while (got < n && fill()) {
      const size_t take = std::min(n - got, in_end - in_pos);
      std::memcpy(out + got, in.data() + in_pos, take);
      in_pos += take;
      got += take;
    }
    return got;
  }

  size_t read_gzip(uint8_t* out, size_t n) {
    size_t got = 0;
    while (got < n && !finished) {
      POLYAK_CHECK(fill(), fn, ": '", path, "': the gzip stream is truncated: it ends after ",
                   compressed, " compressed bytes, in the middle of member ", members + 1,
                   ", expected the rest of the compressed data and the gzip trailer");
      z.next_in = in.data() + in_pos;
      z.avail_in = static_cast<uInt>(in_end - in_pos);
      z.next_out = out + got;
      z.avail_out = static_cast<uInt>(std::min<size_t>(n - got, UINT_MAX));
      const uInt out_before = z.avail_out;
      const size_t in_before = in_pos;
      const int status = inflate(&z, Z_NO_FLUSH);
      got += out_before - z.avail_out;
      in_pos = in_end - z.avail_in;
      const bool progress = in_pos != in_before || z.avail_out != out_before;
      if (status == Z_STREAM_END) {
        ++members;
        // Another member may follow (gzip -c a b > c); anything else is an error.
        const size_t left = ensure(2);
        if (left == 0) {
          finished = true;
        } else if (left >= 2 && in[in_pos] == 0x1f && in[in_pos + 1] == 0x8b) {
          POLYAK_CHECK(inflateReset(&z) == Z_OK, fn, ": '", path,
                       "': zlib could not restart for the next gzip member");
        } else {
          const unsigned first = in[in_pos];
          const uint64_t after = compressed - (in_end - in_pos);
          uint64_t trailing = in_end - in_pos;
          in_pos = in_end;
          while (fill()) {
            trailing += in_end - in_pos;
            in_pos = in_end;
          }
          fail(fn, ": '", path, "': ", trailing, trailing == 1 ? " byte" : " bytes",
               " (starting with 0x", hex(first), ") after the end of the gzip stream at byte ",
               after, ", expected the file to end there or another gzip member (1f 8b)");
        }
        continue;
      }
      // Z_BUF_ERROR without progress cannot happen with input and room at hand; should
      // zlib say so anyway, it is reported rather than retried forever.
      if (status == Z_OK || (status == Z_BUF_ERROR && progress)) continue;
      const char* why = z.msg ? z.msg : "zlib error";
      fail(fn, ": '", path, "': corrupt gzip stream in member ", members + 1, " (zlib: ", why,
           "), expected valid deflate data");
    }
    return got;
  }
};

ByteReader::ByteReader(const std::string& path, const std::string& fn)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.path = path;
  s.fn = fn;
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  POLYAK_CHECK(std::filesystem::exists(status), fn, ": no file '", path, "'",
               ec ? " (" + ec.message() + ")" : std::string());
  POLYAK_CHECK(!std::filesystem::is_directory(status), fn, ": '", path,
               "' is a folder, expected a file");
  errno = 0;
  s.file = std::fopen(path.c_str(), "rb");
  POLYAK_CHECK(s.file != nullptr, fn, ": cannot open '", path,
               "': ", errno ? std::strerror(errno) : "open failed");
  // Two bytes decide the format; they stay in `in` for either reader.
  s.ensure(2);
  s.gzip = s.in_end >= 2 && s.in[0] == 0x1f && s.in[1] == 0x8b;
  if (s.gzip) {
    // 16 + MAX_WBITS: gzip headers only (the magic is already known), 32 KiB window.
    POLYAK_CHECK(inflateInit2(&s.z, 16 + MAX_WBITS) == Z_OK, fn, ": '", path,
                 "': zlib could not start inflating");
    s.inflating = true;
  }
}

ByteReader::~ByteReader() = default;

size_t ByteReader::read(uint8_t* out, size_t n) {
  return state_->gzip ? state_->read_gzip(out, n) : state_->read_raw(out, n);
}

void ByteReader::read_rest(std::vector<uint8_t>& out) {
  for (;;) {
    const size_t old = out.size();
    // Grows with the data (geometrically), never with what a header claims.
    out.resize(old + std::max(kChunk, old / 2));
    const size_t want = out.size() - old;
    const size_t got = read(out.data() + old, want);
    out.resize(old + got);
    if (got < want) return;
  }
}

uint64_t ByteReader::skip_rest() {
  std::vector<uint8_t> scratch(kChunk);
  uint64_t total = 0;
  for (;;) {
    const size_t got = read(scratch.data(), scratch.size());
    total += got;
    if (got < scratch.size()) return total;
  }
}

bool ByteReader::gzip() const {
  return state_->gzip;
}
const std::string& ByteReader::path() const {
  return state_->path;
}

}  // namespace polyak
