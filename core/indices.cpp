#include "polyak/core/indices.h"

#include <limits>

#include "polyak/core/error.h"

namespace polyak {

Indices::Indices(Shape s, std::vector<int32_t> v) : shape(std::move(s)), values(std::move(v)) {
  for (int64_t d : shape)
    POLYAK_CHECK(d >= 0, "Indices: shape ", shape, " has a negative extent, expected sizes ≥ 0");
  POLYAK_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "Indices: values has ",
               values.size(), " entries, expected ", shape.numel(), " (the numel of shape ", shape,
               ")");
}

Indices to_indices(const char* fn, const char* arg, const Tensor& t) {
  check_defined(fn, arg, t);
  POLYAK_CHECK(t.dtype() == DType::i32 || t.dtype() == DType::i64, fn, ": ", arg, " is ", t.dtype(),
               ", expected an integer tensor (i32 or i64) of ids");
  const Tensor host = t.device().is_cpu() ? t : t.cpu();
  std::vector<int32_t> values(static_cast<size_t>(host.numel()));
  if (host.dtype() == DType::i32) {
    const int32_t* p = host.data<int32_t>();
    values.assign(p, p + values.size());
  } else {
    const int64_t* p = host.data<int64_t>();
    for (size_t i = 0; i < values.size(); ++i) {
      POLYAK_CHECK(p[i] >= std::numeric_limits<int32_t>::min() &&
                       p[i] <= std::numeric_limits<int32_t>::max(),
                   fn, ": ", arg, " has value ", p[i], " at index ", i,
                   ", expected values within i32");
      values[i] = static_cast<int32_t>(p[i]);
    }
  }
  return Indices(t.shape(), std::move(values));
}

Tensor to_tensor(const Indices& ids, DType dtype) {
  POLYAK_CHECK(dtype == DType::i32 || dtype == DType::i64, "to_tensor: dtype is ", dtype,
               ", expected i32 or i64");
  return Tensor::from_ints(std::vector<int64_t>(ids.values.begin(), ids.values.end()), ids.shape,
                           dtype);
}

}  // namespace polyak
