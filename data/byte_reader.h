// A file's bytes, read in order and gunzipped on the way when the file is gzip: the one
// reader under the IDX image sets (data/idx.h) and the text corpora (data/text.h).
//
//   file starts with 1f 8b   → gzip: one or more members (gzip -c a b > c, dictd's .dict.dz),
//                              inflated through zlib; nothing may follow the last member
//   anything else            → the bytes as they are
//
// Every fault is a polyak::Error that names the calling function, the path and the fault:
// a missing or unreadable file, a corrupt or truncated gzip stream, bytes after it. Memory
// grows only with the bytes actually read, whatever a file claims, so arbitrary input is safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace polyak {

class ByteReader {
 public:
  // Opens `path`; `fn` names the caller in messages ("read_idx", "load_text").
  ByteReader(const std::string& path, const std::string& fn);
  ~ByteReader();
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  // Reads up to `n` bytes into `out` and returns how many: fewer than `n` only at the end.
  size_t read(uint8_t* out, size_t n);
  // Reads and appends everything that is left to `out`.
  void read_rest(std::vector<uint8_t>& out);
  // Reads to the end and returns how many bytes were left.
  uint64_t skip_rest();

  bool gzip() const;
  const std::string& path() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace polyak
