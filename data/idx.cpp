// IDX files, Fashion-MNIST and images as token sequences (layout in idx.h).
#include "polyak/data/idx.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "polyak/core/error.h"
#include "polyak/data/byte_reader.h"

namespace polyak {

namespace {

constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;
constexpr int64_t kMaxBytes = int64_t{1} << 40;

std::string dims_string(const std::vector<int64_t>& dims) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? "," : "") << dims[i];
  os << ']';
  return os.str();
}

std::string hex(unsigned byte) {
  const char* digits = "0123456789abcdef";
  return {'0', 'x', digits[(byte >> 4) & 15], digits[byte & 15]};
}

const char* type_name(unsigned type) {
  switch (type) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0b:
      return "short";
    case 0x0c:
      return "int";
    case 0x0d:
      return "float";
    case 0x0e:
      return "double";
    default:
      return "no IDX type";
  }
}

// read_idx for `fn`; with `rank` > 0, a file of another rank is refused after its header,
// before its values are read.
IdxArray read_idx_as(const std::string& path, const char* fn, int rank = 0, const char* what = "") {
  ByteReader file(path, fn);
  const char* kind = file.gzip() ? " (after gunzip)" : "";
  uint8_t head[4];
  const size_t got = file.read(head, 4);
  POLYAK_CHECK(got == 4, fn, ": '", path, "': the file holds ", got, " bytes", kind,
               ", expected at least the 4-byte IDX header (0x00 0x00 type rank)");
  POLYAK_CHECK(head[0] == 0 && head[1] == 0, fn, ": '", path, "': wrong magic: it starts with ",
               hex(head[0]), " ", hex(head[1]), kind, ", expected 0x00 0x00 (an IDX file)");
  POLYAK_CHECK(head[2] == 0x08, fn, ": '", path, "': wrong magic: data type ", hex(head[2]), " (",
               type_name(head[2]), "), expected 0x08 (unsigned byte, the only type read here)");
  const int r = head[3];
  POLYAK_CHECK(r >= 1, fn, ": '", path, "': wrong magic: rank 0, expected a rank of 1 or more");
  POLYAK_CHECK(rank == 0 || r == rank, fn, ": '", path, "': rank ", r, ", expected rank ", rank,
               what);

  IdxArray out;
  std::vector<uint8_t> raw(static_cast<size_t>(4 * r));
  const size_t dim_bytes = file.read(raw.data(), raw.size());
  POLYAK_CHECK(dim_bytes == raw.size(), fn, ": '", path, "': truncated header: rank ", r, " needs ",
               raw.size(), " bytes of dimensions, the file holds ", dim_bytes);
  int64_t total = 1;
  for (int i = 0; i < r; ++i) {
    const uint8_t* b = raw.data() + 4 * i;
    const int64_t d = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
    out.dims.push_back(d);
    POLYAK_CHECK(d >= 1, fn, ": '", path, "': dimension ", i, " is 0, expected >= 1");
    POLYAK_CHECK(d <= kMaxDim, fn, ": '", path, "': dimension ", i, " is ", d,
                 ", expected less than 2^31 (the IDX dimensions are signed 32-bit)");
    // total · d ≤ 2⁴⁰ checked by division, so the product never overflows.
    POLYAK_CHECK(total <= kMaxBytes / d, fn, ": '", path, "': the dimensions ",
                 dims_string(out.dims), (i + 1 < r ? "…" : ""),
                 " multiply to more than 2^40 values (overflow), expected a real data set");
    total *= d;
  }

  // The values are read in chunks that at most double what has arrived, so memory follows
  // the data and not what a (possibly lying) header promises.
  const auto need = static_cast<size_t>(total);
  size_t have = 0;
  while (have < need) {
    const size_t want = std::min(need - have, std::max<size_t>(have, size_t{1} << 16));
    out.data.resize(have + want);
    const size_t read = file.read(out.data.data() + have, want);
    have += read;
    if (read < want) break;
  }
  POLYAK_CHECK(have == need, fn, ": '", path, "': truncated: the dimensions ",
               dims_string(out.dims), " promise ", need, " values, the file holds ", have, kind);
  const uint64_t trailing = file.skip_rest();
  POLYAK_CHECK(trailing == 0, fn, ": '", path, "': ", trailing, " trailing bytes", kind,
               " after the ", need, " values of dimensions ", dims_string(out.dims),
               ", expected the file to end there");
  return out;
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  return read_idx_as(path, "read_idx");
}

ImageSet load_idx_images(const std::string& images_path, const std::string& labels_path,
                         int64_t classes) {
  const char* fn = "load_idx_images";
  POLYAK_CHECK(classes >= 1 && classes <= 256, fn, ": classes = ", classes,
               ", expected 1 to 256 (labels are bytes)");
  IdxArray images = read_idx_as(images_path, fn, 3, " (images [count, rows, cols])");
  IdxArray labels = read_idx_as(labels_path, fn, 1, " (labels [count])");
  POLYAK_CHECK(images.dims[0] == labels.dims[0], fn, ": '", images_path, "' holds ", images.dims[0],
               " images but '", labels_path, "' holds ", labels.dims[0],
               " labels, expected one label per image");
  for (size_t i = 0; i < labels.data.size(); ++i)
    POLYAK_CHECK(labels.data[i] < classes, fn, ": '", labels_path, "': label ", int{labels.data[i]},
                 " at index ", i, ", expected 0 to ", classes - 1, " (classes = ", classes, ")");
  ImageSet out;
  out.count = images.dims[0];
  out.rows = images.dims[1];
  out.cols = images.dims[2];
  out.pixels = std::move(images.data);
  out.labels = std::move(labels.data);
  out.classes = classes;
  return out;
}

std::string default_fashion_mnist_dir() {
  const char* env = std::getenv("POLYAK_FASHION_MNIST");
  return env && *env ? env : "/usr/share/datasets/fashion-mnist";
}

ImageSet load_fashion_mnist(const std::string& split, const std::string& dir) {
  const char* fn = "load_fashion_mnist";
  POLYAK_CHECK(split == "train" || split == "test", fn, ": split '", split,
               "', expected train or test");
  const std::string hint =
      "install the Debian package dataset-fashion-mnist (scripts/setup.sh installs it) or set "
      "POLYAK_FASHION_MNIST to a folder holding train-images-idx3-ubyte.gz, "
      "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz";
  const char* env = std::getenv("POLYAK_FASHION_MNIST");
  const std::string folder = dir.empty() ? default_fashion_mnist_dir() : dir;
  const char* source = !dir.empty()  ? "the folder given"
                       : env && *env ? "from POLYAK_FASHION_MNIST"
                                     : "the default folder";
  std::error_code ec;
  POLYAK_CHECK(std::filesystem::is_directory(folder, ec), fn, ": no folder '", folder, "' (",
               source, "): ", hint);
  const std::string prefix = split == "train" ? "train" : "t10k";
  auto find = [&](const std::string& name) {
    const std::filesystem::path base = std::filesystem::path(folder) / name;
    const std::string gz = base.string() + ".gz";
    if (std::filesystem::exists(gz, ec)) return gz;
    if (std::filesystem::exists(base, ec)) return base.string();
    fail(fn, ": no file '", gz, "' (nor '", base.string(), "') in ", source, ": ", hint);
  };
  const std::string images = find(prefix + "-images-idx3-ubyte");
  const std::string labels = find(prefix + "-labels-idx1-ubyte");
  return load_idx_images(images, labels, 10);
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

ImageSequences::ImageSequences(std::shared_ptr<const ImageSet> images, std::string name,
                               int64_t first, std::optional<int64_t> count)
    : images_(std::move(images)), name_(std::move(name)), first_(first), count_(0) {
  POLYAK_CHECK(images_ != nullptr, "ImageSequences: ", name_, ": no image set");
  const ImageSet& set = *images_;
  // Sizes within read_idx's limits first, so that count·rows·cols cannot overflow.
  const bool sized = set.count >= 1 && set.rows >= 1 && set.cols >= 1 && set.rows <= kMaxDim &&
                     set.cols <= kMaxDim && set.count <= kMaxBytes / (set.rows * set.cols);
  POLYAK_CHECK(
      sized && static_cast<int64_t>(set.pixels.size()) == set.count * set.rows * set.cols &&
          static_cast<int64_t>(set.labels.size()) == set.count,
      "ImageSequences: ", name_, ": the image set has count ", set.count, ", rows ", set.rows,
      ", cols ", set.cols, ", ", set.pixels.size(), " pixels and ", set.labels.size(),
      " labels, expected count, rows, cols >= 1, count·rows·cols "
      "pixels and count labels");
  POLYAK_CHECK(set.classes >= 1 && set.classes <= 256, "ImageSequences: ", name_,
               ": classes = ", set.classes, ", expected 1 to 256");
  POLYAK_CHECK(first >= 0 && first < set.count, "ImageSequences: ", name_, ": first = ", first,
               ", expected 0 <= first < ", set.count, " (the images in the set)");
  count_ = count.value_or(set.count - first);
  POLYAK_CHECK(count_ >= 1 && count_ <= set.count - first, "ImageSequences: ", name_,
               ": count = ", count_, " from first = ", first, ", expected 1 to ", set.count - first,
               " (the set holds ", set.count, " images)");
}

Example ImageSequences::example(int64_t index) const {
  POLYAK_CHECK(index >= 0 && index < count_, "ImageSequences::example: ", name_, ": index ", index,
               ", expected 0 <= index < ", count_);
  const ImageSet& set = *images_;
  const int64_t image = first_ + index, n = set.rows * set.cols;
  const uint8_t* pixels = set.pixels.data() + image * n;
  Example e;
  e.tokens.assign(pixels, pixels + n);
  e.label = set.labels[static_cast<size_t>(image)];
  return e;
}

}  // namespace polyak
