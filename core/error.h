// polyak::Error and the checking helpers every public function uses.
//
// Messages name the function, the argument, what was seen and what was expected:
//   matmul: b has shape [3,5], expected [K,N] with K = 4 matching a [2,4]
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace polyak {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}
}  // namespace detail

// Throws polyak::Error with the concatenation of `parts`.
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  throw Error(detail::concat(std::forward<Parts>(parts)...));
}

}  // namespace polyak

// POLYAK_CHECK(cond, "op: x has shape ", x.shape(), ", expected ...")
#define POLYAK_CHECK(cond, ...)               \
  do {                                        \
    if (!(cond)) ::polyak::fail(__VA_ARGS__); \
  } while (0)
