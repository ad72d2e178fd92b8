// Indices: integer token ids / class targets with a shape (embedding, cross_entropy, data),
// and the conversion from an integer tensor (i32 or i64), which those ops also take.
#pragma once

#include <cstdint>
#include <vector>

#include "polyak/core/shape.h"
#include "polyak/core/tensor.h"

namespace polyak {

struct Indices {
  Shape shape;
  std::vector<int32_t> values;  // row-major, shape.numel() entries

  Indices() = default;
  Indices(Shape s, std::vector<int32_t> v);  // throws when numel and size disagree
  static Indices filled(Shape s, int32_t value) {
    return Indices(s, std::vector<int32_t>(static_cast<size_t>(s.numel()), value));
  }
  int64_t numel() const { return static_cast<int64_t>(values.size()); }
  int32_t& operator[](int64_t i) { return values[static_cast<size_t>(i)]; }
  int32_t operator[](int64_t i) const { return values[static_cast<size_t>(i)]; }
};

// The values of `t`, argument `arg` of `fn`: an i32 or i64 tensor on any device (copied to
// the host), every value within i32. Throws naming fn and arg otherwise.
Indices to_indices(const char* fn, const char* arg, const Tensor& t);
// An i32 or i64 tensor holding `ids`, of their shape.
Tensor to_tensor(const Indices& ids, DType dtype = DType::i64);

}  // namespace polyak
