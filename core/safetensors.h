// safetensors (the format PyTorch and Hugging Face use): an 8-byte little-endian header
// size, a JSON header mapping each tensor name to {dtype, shape, data_offsets} plus an
// optional "__metadata__" object of strings, then the raw little-endian data.
// polyak reads and writes F32, F64, I32 and I64 tensors.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "polyak/core/tensor.h"

namespace polyak {

struct SafetensorsFile {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in file order (by data offset)
  std::map<std::string, std::string> metadata;
};

// Writes atomically (a temporary file beside `path`, fsync, rename): a failed or interrupted
// write leaves any previous file at `path` intact and removes the temporary file. Tensors
// must be defined and on the CPU, with distinct, non-empty UTF-8 names other than
// "__metadata__". The data is written in the order given (the header is padded with spaces
// to a multiple of 8 bytes), so load_safetensors returns the tensors in that order.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads and validates the whole file before creating any tensor: a missing file, a
// truncated file, a header that is not the JSON described above (including repeated keys
// and arrays or objects nested more than 64 deep), an unsupported dtype, offsets out of
// bounds, overlapping or leaving gaps or trailing bytes, or a size that disagrees with the
// shape is a polyak::Error naming the path and the fault. The tensors come back in
// data-offset order, on the CPU, not requiring grad.
SafetensorsFile load_safetensors(const std::string& path);

// The same checks and result for a whole file already in memory (load_safetensors shares
// them, and reads the tensors' data straight from the file). Errors name parse_safetensors
// and `source` (a path, or what the bytes are).
SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& source);

}  // namespace polyak
