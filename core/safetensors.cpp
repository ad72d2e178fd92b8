// safetensors reading and writing.
//
//   [u64 N, little-endian] [N bytes: JSON header, space-padded] [data section]
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end)}, the
// offsets counted from the start of the data section, plus an optional "__metadata__"
// object of strings. The tensors tile the data section: sorted by offset, each begins where
// the previous one ends, the first at 0 and the last at the end of the file.
//
// polyak writes the tensors' data in the order it is given (a state dict keeps its module
// order) and reads them back in data-offset order, so a round trip keeps the order. (The
// Python library sorts by dtype, then name; readers do not depend on either.) The header is
// padded to a multiple of 8 bytes, as the Python library does, so that the data section is
// 8-byte aligned in the file.
#include "polyak/core/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <system_error>

#include "polyak/core/files.h"
#include "polyak/core/json_parse.h"

namespace polyak {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; polyak reads and writes it as stored in memory");

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr const char* kMetadataKey = "__metadata__";
// The Python library refuses larger headers; a size beyond this is a corrupt file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr uint64_t kMaxIndex = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// polyak's dtypes and their names in the format.
constexpr std::pair<DType, const char*> kDTypes[] = {
    {DType::f32, "F32"}, {DType::f64, "F64"}, {DType::i32, "I32"}, {DType::i64, "I64"}};

const char* safetensors_dtype(DType t) {
  for (const auto& [dtype, label] : kDTypes)
    if (dtype == t) return label;
  return "?";
}

bool is_valid_utf8(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

// ---- header parsing ----------------------------------------------------------------------

struct Entry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// A JSON value that is an integer in [0, 2^63), or nothing.
std::optional<uint64_t> as_index(const json& v) {
  if (v.is_number_unsigned()) {
    uint64_t x = v.get<uint64_t>();
    if (x <= kMaxIndex) return x;
  }
  return std::nullopt;
}

std::string in_quotes(const std::string& s) {
  return "'" + s + "'";
}

Entry parse_entry(const char* fn, const std::string& path, const std::string& name, const json& v) {
  const std::string where = "tensor " + in_quotes(name);
  POLYAK_CHECK(v.is_object(), fn, ": ", path, ": ", where, " is a JSON ", v.type_name(),
               ", expected an object with dtype, shape and data_offsets");
  for (const auto& [key, value] : v.items()) {
    (void)value;
    POLYAK_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", fn, ": ", path, ": ",
                 where, " has the unknown field ", in_quotes(key),
                 ", expected only dtype, shape and data_offsets");
  }
  for (const char* field : {"dtype", "shape", "data_offsets"})
    POLYAK_CHECK(v.contains(field), fn, ": ", path, ": ", where, " has no \"", field, "\"");

  Entry e;
  e.name = name;
  const json& dtype = v["dtype"];
  POLYAK_CHECK(dtype.is_string(), fn, ": ", path, ": ", where, ": dtype is a JSON ",
               dtype.type_name(), ", expected a string (F32, F64, I32 or I64)");
  const std::string& d = dtype.get_ref<const std::string&>();
  bool known = false;
  for (const auto& [t, label] : kDTypes) {
    if (d != label) continue;
    e.dtype = t;
    known = true;
  }
  POLYAK_CHECK(known, fn, ": ", path, ": ", where, ": dtype ", d,
               " is not supported, expected F32, F64, I32 or I64");

  const json& shape = v["shape"];
  POLYAK_CHECK(shape.is_array(), fn, ": ", path, ": ", where, ": shape is a JSON ",
               shape.type_name(), ", expected an array of non-negative integers");
  uint64_t numel = 1;
  bool overflow = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    std::optional<uint64_t> dim = as_index(shape[i]);
    POLYAK_CHECK(dim.has_value(), fn, ": ", path, ": ", where, ": shape ", shape.dump(),
                 " has dimension ", i, " = ", shape[i].dump(), ", expected a non-negative integer");
    e.shape.push_back(static_cast<int64_t>(*dim));
    if (*dim != 0 && numel > kMaxIndex / *dim) overflow = true;
    numel *= *dim;
  }
  const uint64_t item = itemsize(e.dtype);
  POLYAK_CHECK(!overflow && numel <= kMaxIndex / item, fn, ": ", path, ": ", where, ": shape ",
               shape.dump(), " has too many elements to address");

  const json& offsets = v["data_offsets"];
  std::optional<uint64_t> begin, end;
  if (offsets.is_array() && offsets.size() == 2) {
    begin = as_index(offsets[0]);
    end = as_index(offsets[1]);
  }
  POLYAK_CHECK(begin && end, fn, ": ", path, ": ", where, ": data_offsets is ", offsets.dump(),
               ", expected [begin, end] with non-negative integers");
  POLYAK_CHECK(*begin <= *end, fn, ": ", path, ": ", where, ": data_offsets ", offsets.dump(),
               " ends before it begins");
  POLYAK_CHECK(*end - *begin == numel * item, fn, ": ", path, ": ", where, ": data_offsets ",
               offsets.dump(), " hold ", *end - *begin, " bytes, expected ", numel * item,
               " for shape ", e.shape, " ", d);
  e.begin = *begin;
  e.end = *end;
  return e;
}

}  // namespace

// ---- save --------------------------------------------------------------------------------

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const char* fn = "save_safetensors";
  POLYAK_CHECK(!path.empty(), fn, ": path is empty, expected a file path");
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json meta = ordered_json::object();
    for (const auto& [key, value] : metadata) {
      POLYAK_CHECK(is_valid_utf8(key), fn, ": ", path, ": metadata key ", in_quotes(key),
                   " is not valid UTF-8");
      POLYAK_CHECK(is_valid_utf8(value), fn, ": ", path, ": metadata[", in_quotes(key),
                   "] is not valid UTF-8");
      meta[key] = value;
    }
    header[kMetadataKey] = std::move(meta);
  }

  std::set<std::string> names;
  std::vector<std::string_view> data;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    POLYAK_CHECK(!name.empty(), fn, ": ", path, ": tensors[", i, "] has an empty name");
    POLYAK_CHECK(name != kMetadataKey, fn, ": ", path, ": tensors[", i, "] is named ", kMetadataKey,
                 ", which the format reserves for metadata");
    POLYAK_CHECK(is_valid_utf8(name), fn, ": ", path, ": tensors[", i, "] has a name that is not ",
                 "valid UTF-8");
    POLYAK_CHECK(names.insert(name).second, fn, ": ", path, ": tensor name ", in_quotes(name),
                 " appears twice, expected distinct names");
    POLYAK_CHECK(t.defined(), fn, ": ", path, ": tensor ", in_quotes(name), " is undefined");
    POLYAK_CHECK(t.device().is_cpu(), fn, ": ", path, ": tensor ", in_quotes(name), " is on ",
                 t.device(), ", expected cpu (copy it with .cpu())");
    const uint64_t bytes = t.nbytes();
    header[name] = {{"dtype", safetensors_dtype(t.dtype())},
                    {"shape", t.shape().dims()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.emplace_back(static_cast<const char*>(t.raw_data()), bytes);
  }

  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  char size[8];
  uint64_t n = text.size();
  std::memcpy(size, &n, 8);  // little-endian host (asserted above)

  std::vector<std::string_view> parts = {std::string_view(size, 8), text};
  parts.insert(parts.end(), data.begin(), data.end());
  write_file_atomically(path, parts, fn);
}

// ---- load --------------------------------------------------------------------------------

namespace {

// Checks the header size read from the first 8 bytes of a file of `file_size` bytes.
void check_header_size(uint64_t file_size, uint64_t header_size, const std::string& path,
                       const char* fn) {
  POLYAK_CHECK(header_size <= kMaxHeaderBytes, fn, ": ", path, ": header size is ", header_size,
               " bytes, expected at most ", kMaxHeaderBytes, " (not a safetensors file?)");
  POLYAK_CHECK(header_size <= file_size - 8, fn, ": ", path, ": header size is ", header_size,
               " bytes but only ", file_size - 8,
               " bytes follow it (truncated, or not a safetensors file)");
  POLYAK_CHECK(header_size >= 2, fn, ": ", path, ": header size is ", header_size,
               " bytes, expected at least 2 (a JSON object)");
}

// Validates the header `text` against a data section of `data_size` bytes: the metadata go
// to `out`, and the tensors come back in data-offset order, tiling the data section.
std::vector<Entry> parse_layout(const std::string& text, uint64_t data_size, SafetensorsFile& out,
                                const std::string& path, const char* fn) {
  detail::StrictJson parsed;
  try {
    parsed = detail::parse_strict_json(text);
  } catch (const json::exception& e) {
    fail(fn, ": ", path, ": the header is not valid JSON (", e.what(), ")");
  }
  POLYAK_CHECK(!parsed.too_deep, fn, ": ", path, ": the header nests arrays and objects more than ",
               detail::kMaxJsonNesting,
               " deep, expected 3 (the header, a tensor's fields, its shape)");
  const json& header = parsed.value;
  const auto& duplicate = parsed.duplicate;
  POLYAK_CHECK(header.is_object(), fn, ": ", path, ": the header is a JSON ", header.type_name(),
               ", expected an object");
  if (duplicate) {
    if (duplicate->second == 1)
      fail(fn, ": ", path, ": tensor name ", in_quotes(duplicate->first),
           " appears twice in the header");
    fail(fn, ": ", path, ": key ", in_quotes(duplicate->first),
         " appears twice in one object of the ", "header");
  }

  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == kMetadataKey) {
      POLYAK_CHECK(value.is_object(), fn, ": ", path, ": ", kMetadataKey, " is a JSON ",
                   value.type_name(), ", expected an object of strings");
      for (const auto& [key, v] : value.items()) {
        POLYAK_CHECK(v.is_string(), fn, ": ", path, ": ", kMetadataKey, "[", in_quotes(key),
                     "] is a JSON ", v.type_name(), ", expected a string");
        out.metadata[key] = v.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(fn, path, name, value));
  }

  // The tensors must tile the data section exactly.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected_begin = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    POLYAK_CHECK(e.end <= data_size, fn, ": ", path, ": tensor ", in_quotes(e.name),
                 ": data_offsets [", e.begin, ",", e.end, "] run past the data section of ",
                 data_size, " bytes (truncated file?)");
    if (e.begin < expected_begin)
      fail(fn, ": ", path, ": tensor ", in_quotes(e.name), " at data_offsets [", e.begin, ",",
           e.end, "] overlaps tensor ", in_quotes(entries[i - 1].name), " at [",
           entries[i - 1].begin, ",", entries[i - 1].end, "]");
    if (e.begin > expected_begin) {
      if (i == 0)
        fail(fn, ": ", path, ": the first tensor ", in_quotes(e.name), " begins at data offset ",
             e.begin, ", expected 0 (a gap of ", e.begin, " bytes)");
      fail(fn, ": ", path, ": a gap of ", e.begin - expected_begin, " bytes between tensor ",
           in_quotes(entries[i - 1].name), " (ends at ", expected_begin, ") and tensor ",
           in_quotes(e.name), " (begins at ", e.begin, ")");
    }
    expected_begin = e.end;
  }
  POLYAK_CHECK(expected_begin == data_size, fn, ": ", path, ": the tensors end at data offset ",
               expected_begin, " but the data section has ", data_size, " bytes (",
               data_size - expected_begin, " trailing bytes)");
  return entries;
}

}  // namespace

SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& source) {
  const char* fn = "parse_safetensors";
  const uint64_t size = bytes.size();
  POLYAK_CHECK(size >= 8, fn, ": ", source, ": file is ", size,
               " bytes, expected at least 8 (the header size)");
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);  // little-endian host (asserted above)
  check_header_size(size, header_size, source, fn);
  const std::string_view data = bytes.substr(8 + header_size);
  SafetensorsFile out;
  const std::vector<Entry> entries =
      parse_layout(std::string(bytes.substr(8, header_size)), data.size(), out, source, fn);
  out.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin) std::memcpy(t.raw_data(), data.data() + e.begin, e.end - e.begin);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

SafetensorsFile load_safetensors(const std::string& path) {
  const char* fn = "load_safetensors";
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  POLYAK_CHECK(fs::exists(status), fn, ": ", path, ": no such file");
  POLYAK_CHECK(fs::is_regular_file(status), fn, ": ", path, ": not a regular file");
  std::ifstream f(path, std::ios::binary);
  POLYAK_CHECK(f.is_open(), fn, ": ", path, ": cannot open for reading");
  f.seekg(0, std::ios::end);
  const std::streamoff end_pos = f.tellg();
  POLYAK_CHECK(end_pos >= 0, fn, ": ", path, ": cannot determine the file size");
  const uint64_t file_size = static_cast<uint64_t>(end_pos);
  f.seekg(0, std::ios::beg);

  POLYAK_CHECK(file_size >= 8, fn, ": ", path, ": file is ", file_size,
               " bytes, expected at least 8 (the header size)");
  char size_bytes[8];
  f.read(size_bytes, 8);
  POLYAK_CHECK(f.gcount() == 8, fn, ": ", path, ": reading the header size failed");
  uint64_t header_size = 0;
  std::memcpy(&header_size, size_bytes, 8);
  check_header_size(file_size, header_size, path, fn);

  std::string text(header_size, '\0');
  f.read(text.data(), static_cast<std::streamsize>(header_size));
  POLYAK_CHECK(static_cast<uint64_t>(f.gcount()) == header_size, fn, ": ", path,
               ": reading the header failed");
  SafetensorsFile out;
  const std::vector<Entry> entries = parse_layout(text, file_size - 8 - header_size, out, path, fn);

  // Everything is consistent: read the data straight into the tensors.
  out.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    const uint64_t bytes = e.end - e.begin;
    if (bytes > 0) {
      f.seekg(static_cast<std::streamoff>(8 + header_size + e.begin), std::ios::beg);
      f.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(bytes));
      POLYAK_CHECK(f.good() && static_cast<uint64_t>(f.gcount()) == bytes, fn, ": ", path,
                   ": reading tensor ", in_quotes(e.name),
                   " failed (the file changed while reading?)");
    }
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

}  // namespace polyak
