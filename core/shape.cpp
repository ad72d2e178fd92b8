#include "polyak/core/shape.h"

#include "polyak/core/error.h"

namespace polyak {

std::string Shape::str() const {
  std::string s = "[";
  for (size_t i = 0; i < dims_.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(dims_[i]);
  }
  return s + "]";
}

std::ostream& operator<<(std::ostream& os, const Shape& shape) {
  return os << shape.str();
}

int64_t normalize_axis(const char* fn, int64_t axis, int64_t rank) {
  POLYAK_CHECK(axis >= -rank && axis < rank, fn, ": axis ", axis, " is out of range for rank ",
               rank, ", expected an axis in [", -rank, ", ", rank, ")");
  return axis < 0 ? axis + rank : axis;
}

}  // namespace polyak
