// IDX files (the format of MNIST and Fashion-MNIST), raw or gzip-compressed, and image
// classification as token sequences: each image read row by row, one pixel one token.
//
// An IDX file, all integers big-endian:
//
//   offset   0      1      2      3      4 … 4+4r−1               4+4r …
//   bytes    0x00   0x00   type   r      d_0 … d_{r−1} (u32 each)   d_0·…·d_{r−1} values
//
// type 0x08 (unsigned byte) is the only one read here: images [count, rows, cols] (r = 3)
// and labels [count] (r = 1). Every dimension is ≥ 1 and < 2³¹, and the file ends exactly
// where the values do.
//
// Fashion-MNIST (Xiao et al. 2017): 28×28 grey images of 10 kinds of clothing, 60000 train
// and 10000 test, 6000 and 1000 per class. Debian's dataset-fashion-mnist installs it to
// /usr/share/datasets/fashion-mnist; POLYAK_FASHION_MNIST names another folder.
//
// As a SequenceDataset (data/sequences.h), image i of rows R and columns C is
//
//   tokens   pixel(i, 0, 0) … pixel(i, 0, C−1)  pixel(i, 1, 0) …  pixel(i, R−1, C−1)
//            (R·C tokens in 0 … 255: vocab 256, max_length R·C)
//   label    labels[i] in [0, classes)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "polyak/data/sequences.h"

namespace polyak {

struct IdxArray {
  std::vector<int64_t> dims;  // d_0 … d_{r−1}
  std::vector<uint8_t> data;  // d_0·…·d_{r−1} values, row-major
};

// Reads an IDX file of unsigned bytes; gzip is detected by its magic (1f 8b) and inflated.
// Throws polyak::Error naming the file and the fault for anything else than a well-formed
// file: missing or unreadable, corrupt gzip, wrong magic or type, a dimension that is 0 or
// ≥ 2³¹, dimensions whose product passes 2⁴⁰ bytes, fewer values than the dimensions
// promise, or bytes after them.
IdxArray read_idx(const std::string& path);

struct ImageSet {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // [count, rows, cols], row-major
  std::vector<uint8_t> labels;  // [count], each < classes
  int64_t classes = 0;
};

// Images (rank 3) and their labels (rank 1, as many, each < classes ≤ 256) from two IDX files.
ImageSet load_idx_images(const std::string& images_path, const std::string& labels_path,
                         int64_t classes = 10);

// The folder load_fashion_mnist reads when given none: $POLYAK_FASHION_MNIST when set and
// not empty, else /usr/share/datasets/fashion-mnist.
std::string default_fashion_mnist_dir();

// Split "train" (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz) or "test"
// (t10k-…) of Fashion-MNIST from `dir` (empty: default_fashion_mnist_dir()). Each file may
// also be there uncompressed, without ".gz". A missing folder or file is an error that says
// how to install the data set.
ImageSet load_fashion_mnist(const std::string& split, const std::string& dir = "");

// The names of Fashion-MNIST's ten classes, label 0 to 9 ("T-shirt/top" … "Ankle boot").
const std::vector<std::string>& fashion_mnist_classes();

// The images [first, first + count) of a shared ImageSet as a SequenceDataset (layout
// above): a train set and a validation set can be two ranges of one ImageSet, with no copy.
class ImageSequences : public SequenceDataset {
 public:
  // count: default all images from `first` to the end.
  ImageSequences(std::shared_ptr<const ImageSet> images, std::string name, int64_t first = 0,
                 std::optional<int64_t> count = std::nullopt);

  std::string name() const override { return name_; }
  int64_t size() const override { return count_; }
  int64_t max_length() const override { return images_->rows * images_->cols; }
  int64_t vocab() const override { return 256; }
  int64_t classes() const override { return images_->classes; }
  Example example(int64_t index) const override;

  int64_t first() const { return first_; }  // image `index` is images()[first() + index]
  const ImageSet& images() const { return *images_; }

 private:
  std::shared_ptr<const ImageSet> images_;
  std::string name_;
  int64_t first_, count_;
};

}  // namespace polyak
