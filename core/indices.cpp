#include "polyak/core/indices.h"

#include "polyak/core/error.h"

namespace polyak {

Indices::Indices(Shape s, std::vector<int32_t> v) : shape(std::move(s)), values(std::move(v)) {
  for (int64_t d : shape)
    POLYAK_CHECK(d >= 0, "Indices: shape ", shape, " has a negative extent, expected sizes ≥ 0");
  POLYAK_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "Indices: values has ",
               values.size(), " entries, expected ", shape.numel(), " (the numel of shape ", shape,
               ")");
}

}  // namespace polyak
