// Shape: the extents of a contiguous row-major tensor.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

namespace polyak {

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}

  int64_t rank() const { return static_cast<int64_t>(dims_.size()); }
  int64_t size() const { return rank(); }
  // Extent of axis `i`; negative `i` counts from the end.
  int64_t operator[](int64_t i) const { return dims_[static_cast<size_t>(i < 0 ? i + rank() : i)]; }
  int64_t& operator[](int64_t i) { return dims_[static_cast<size_t>(i < 0 ? i + rank() : i)]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : dims_) n *= d;
    return n;
  }
  // Product of the extents of axes [begin, end).
  int64_t numel(int64_t begin, int64_t end) const {
    int64_t n = 1;
    for (int64_t i = begin; i < end; ++i) n *= dims_[static_cast<size_t>(i)];
    return n;
  }
  const std::vector<int64_t>& dims() const { return dims_; }
  std::vector<int64_t>::const_iterator begin() const { return dims_.begin(); }
  std::vector<int64_t>::const_iterator end() const { return dims_.end(); }
  void push_back(int64_t d) { dims_.push_back(d); }
  bool operator==(const Shape& other) const { return dims_ == other.dims_; }
  bool operator!=(const Shape& other) const { return dims_ != other.dims_; }
  std::string str() const;

 private:
  std::vector<int64_t> dims_;
};

std::ostream& operator<<(std::ostream& os, const Shape& shape);

// Normalises a possibly negative axis against `rank`; throws naming `fn` when out of range.
int64_t normalize_axis(const char* fn, int64_t axis, int64_t rank);

}  // namespace polyak
