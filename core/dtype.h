// Scalar types and devices, and the dispatch from a runtime DType to a C++ scalar type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

#include "polyak/core/error.h"

namespace polyak {

// f32 for training, f64 for gradient checks; i32 and i64 hold integers (token ids,
// targets, masks), which only the ops that take indices accept.
enum class DType : uint8_t { f32, f64, i32, i64 };

inline size_t itemsize(DType t) {
  return t == DType::f32 || t == DType::i32 ? 4 : 8;
}
inline const char* name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
  }
  return "?";
}
inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64;
}
inline std::ostream& operator<<(std::ostream& os, DType t) {
  return os << name(t);
}

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::f64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::i32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}

// cpu is built in; cuda is the backend in cuda/; ext is a slot for a backend registered
// from outside the library (the tests' fake device, which keeps its memory on the host).
enum class DeviceType : uint8_t { cpu, cuda, ext };
constexpr int kDeviceTypes = 3;
inline const char* name(DeviceType t) {
  return t == DeviceType::cpu ? "cpu" : t == DeviceType::cuda ? "cuda" : "ext";
}

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  static Device ext(int index = 0) { return {DeviceType::ext, index}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const {
    return is_cpu() ? "cpu" : std::string(name(type)) + ":" + std::to_string(index);
  }
};
inline std::ostream& operator<<(std::ostream& os, const Device& d) {
  return os << d.str();
}

// dispatch(dtype, [&]<class T>() { ... }) runs the body with T = float or double: the
// float ops' kernels. An integer dtype is an error (ops check it first, naming themselves:
// check_floating in core/tensor.h).
template <class F>
decltype(auto) dispatch(DType t, F&& body) {
  if (t == DType::f32) return body.template operator()<float>();
  POLYAK_CHECK(t == DType::f64, "dispatch: dtype ", name(t),
               " is not a floating type, expected f32 or f64 (integer tensors hold ids and "
               "targets, which float ops do not take)");
  return body.template operator()<double>();
}

// dispatch_any: the same over every dtype (T = float, double, int32_t or int64_t), for what
// moves or converts elements without arithmetic (factories, conversions, printing).
template <class F>
decltype(auto) dispatch_any(DType t, F&& body) {
  switch (t) {
    case DType::f32:
      return body.template operator()<float>();
    case DType::f64:
      return body.template operator()<double>();
    case DType::i32:
      return body.template operator()<int32_t>();
    case DType::i64:
      break;
  }
  return body.template operator()<int64_t>();
}

}  // namespace polyak
