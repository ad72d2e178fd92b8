#include "polyak/nn/positions.h"

#include <algorithm>
#include <cmath>

#include "polyak/nn/init.h"
#include "polyak/ops/elementwise.h"

namespace polyak {

namespace {
void check_input(const char* fn, const Tensor& x, int64_t dim, int64_t offset) {
  check_rank(fn, "x", x, 3, "[B, N, d]");
  POLYAK_CHECK(x.size(2) == dim, fn, ": x has shape ", x.shape(), ", expected [B, N, ", dim, "]");
  POLYAK_CHECK(offset >= 0, fn, ": offset = ", offset, ", expected ≥ 0");
}
}  // namespace

Tensor sinusoidal_table(int64_t len, int64_t dim) {
  Tensor t = Tensor::empty({len, dim}, DType::f64);
  double* p = t.data<double>();
  for (int64_t pos = 0; pos < len; ++pos)
    for (int64_t i = 0; i < dim; i += 2) {
      double angle = static_cast<double>(pos) /
                     std::pow(10000.0, static_cast<double>(i) / static_cast<double>(dim));
      p[pos * dim + i] = std::sin(angle);
      if (i + 1 < dim) p[pos * dim + i + 1] = std::cos(angle);
    }
  return t;
}

SinusoidalPositions::SinusoidalPositions(int64_t max_len, int64_t dim) : dim_(dim) {
  POLYAK_CHECK(max_len > 0 && dim > 0, "SinusoidalPositions: max_len = ", max_len, ", dim = ", dim,
               ", expected both positive");
  table = sinusoidal_table(max_len, dim).to(DType::f32);
  register_buffer("table", table, /*persistent=*/false);
}

Tensor SinusoidalPositions::forward(const Tensor& x, int64_t offset) {
  check_input("SinusoidalPositions", x, dim_, offset);
  int64_t end = offset + x.size(1);
  if (end > table.size(0)) {
    // Grows geometrically so that step-by-step generation rebuilds the table O(log N) times.
    // The rows already there are kept as they are (after to(f64) they are f32-rounded), so
    // a position's encoding never depends on how far the table has grown.
    int64_t len = std::max(end, 2 * table.size(0));
    Tensor grown = sinusoidal_table(len, dim_).to(table.dtype()).to(table.device());
    grown.narrow0(0, table.size(0)).copy_(table);
    grown.set_name(table.name());
    table = grown;
  }
  return x + table.narrow0(offset, end);
}

LearnedPositions::LearnedPositions(int64_t max_len, int64_t dim, Generator& gen, double stddev) {
  POLYAK_CHECK(max_len > 0 && dim > 0, "LearnedPositions: max_len = ", max_len, ", dim = ", dim,
               ", expected both positive");
  weight = Tensor::empty({max_len, dim});
  normal_(weight, 0.0, stddev, gen);
  register_parameter("weight", weight);
}

Tensor LearnedPositions::forward(const Tensor& x, int64_t offset) {
  check_input("LearnedPositions", x, weight.size(1), offset);
  int64_t end = offset + x.size(1);
  POLYAK_CHECK(end <= weight.size(0), "LearnedPositions: positions [", offset, ", ", end,
               ") exceed max_len = ", weight.size(0));
  return x + weight.narrow0(offset, end);
}

const std::vector<std::string>& positions_kinds() {
  static const std::vector<std::string> kinds = {"sinusoidal", "learned"};
  return kinds;
}

std::shared_ptr<Positions> make_positions(const std::string& kind, int64_t max_len, int64_t dim,
                                          Generator& gen) {
  check_choice("make_positions", "kind", kind, positions_kinds());
  if (kind == "learned") return std::make_shared<LearnedPositions>(max_len, dim, gen);
  return std::make_shared<SinusoidalPositions>(max_len, dim);
}

}  // namespace polyak
