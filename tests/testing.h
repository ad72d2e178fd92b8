// Shared helpers for the test suites.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "polyak/polyak.h"

namespace polyak::testing {

// One entry of a table-driven gradcheck suite: a name, the inputs to build (f64, random
// normal unless `make_inputs` is given), and the function under test.
// Sets the thread count for one scope and restores the previous count after it.
class ThreadCount {
 public:
  explicit ThreadCount(int threads) : previous_(num_threads()) { set_num_threads(threads); }
  ~ThreadCount() { set_num_threads(previous_); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int previous_;
};

struct GradcheckCase {
  std::string name;
  std::vector<Shape> shapes;  // one f64 input per shape, all requiring grad
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  // Optional: builds the inputs instead (e.g. positive values for log, off-kink for relu).
  std::function<std::vector<Tensor>(Generator&)> make_inputs = nullptr;
  GradcheckOptions options = {};
};

inline std::vector<Tensor> random_inputs(const std::vector<Shape>& shapes, Generator& gen) {
  std::vector<Tensor> inputs;
  for (const Shape& s : shapes)
    inputs.push_back(Tensor::randn(s, gen, DType::f64).requires_grad_());
  return inputs;
}

// Runs every case as a doctest SUBCASE, failing with gradcheck's message.
inline void run_gradcheck_table(const std::vector<GradcheckCase>& cases, uint64_t seed = 1234) {
  for (const GradcheckCase& c : cases) {
    SUBCASE(c.name.c_str()) {
      Generator gen(seed);
      std::vector<Tensor> inputs =
          c.make_inputs ? c.make_inputs(gen) : random_inputs(c.shapes, gen);
      GradcheckResult r = gradcheck(c.fn, inputs, c.options);
      INFO(c.name << ": " << r.message);
      CHECK(r.ok);
    }
  }
}

// max |a − b| over all elements (shapes must match).
inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  std::vector<double> x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// Runs `body` and checks that it throws polyak::Error whose message contains every one of
// `fragments`.
inline void check_error(const std::function<void()>& body,
                        const std::vector<std::string>& fragments) {
  bool threw = false;
  try {
    body();
  } catch (const Error& e) {
    threw = true;
    std::string what = e.what();
    for (const std::string& f : fragments) {
      INFO("message: " << what << "\nmissing: " << f);
      CHECK(what.find(f) != std::string::npos);
    }
  }
  CHECK_MESSAGE(threw, "expected polyak::Error");
}

// Token ids as an i64 tensor of `shape`, and back on the host.
inline Tensor ids(const Shape& shape, const std::vector<int64_t>& values) {
  return Tensor::from_ints(values, shape);
}
inline Tensor ids_filled(const Shape& shape, int64_t value) {
  return Tensor::full(shape, static_cast<double>(value), DType::i64);
}
inline Indices host_ids(const Tensor& t) {
  return to_indices("host_ids", "t", t);
}

}  // namespace polyak::testing
