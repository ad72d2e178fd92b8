// sequence_projection (docs/math.md §7, Linformer's projection of the sequence axis): against
// its definition by loops and by gradcheck; its checks.
#include <cmath>
#include <vector>

#include "ops/attention/helpers.h"
#include "polyak/ops/attention/sequence_projection.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

struct ProjectionReference {
  std::vector<double> y, dx, de;
};

// y_bh = E_N x_bh, dx_bh = E_Nᵀ dy_bh, de[:, 0:N] = Σ_bh dy_bh x_bhᵀ (0 beyond N), by loops.
ProjectionReference projection_reference(const Tensor& x, const Tensor& e, const Tensor& dy) {
  const int64_t BH = x.size(0) * x.size(1), N = x.size(2), D = x.size(3);
  const int64_t k = e.size(0), M = e.size(1);
  const std::vector<double> xs = x.to_vector(), es = e.to_vector(), dys = dy.to_vector();
  ProjectionReference r{std::vector<double>(static_cast<size_t>(BH * k * D), 0.0),
                        std::vector<double>(xs.size(), 0.0), std::vector<double>(es.size(), 0.0)};
  for (int64_t h = 0; h < BH; ++h)
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < N; ++j)
        for (int64_t a = 0; a < D; ++a) {
          const double eij = es[i * M + j], xja = xs[(h * N + j) * D + a];
          const double dyia = dys[(h * k + i) * D + a];
          r.y[(h * k + i) * D + a] += eij * xja;
          r.dx[(h * N + j) * D + a] += eij * dyia;
          r.de[i * M + j] += dyia * xja;
        }
  return r;
}

}  // namespace

// ---- sequence_projection ---------------------------------------------------------------

TEST_CASE("sequence_projection equals E[:, :N] x and its gradients, N < M and N = M") {
  struct Case {
    Shape x;
    int64_t k, M;
  };
  for (const Case& c : {Case{{2, 3, 5, 4}, 3, 7}, Case{{1, 2, 6, 3}, 4, 6},
                        Case{{2, 2, 40, 5}, 9, 64}, Case{{1, 1, 1, 2}, 2, 1}}) {
    CAPTURE(c.x);
    CAPTURE(c.k);
    CAPTURE(c.M);
    Generator gen(31);
    Tensor x = normal_leaf(c.x, gen), e = normal_leaf({c.k, c.M}, gen);
    Tensor y = sequence_projection(x, e);
    REQUIRE(y.shape() == Shape({c.x[0], c.x[1], c.k, c.x[3]}));
    const Tensor dy = Tensor::randn(y.shape(), gen, DType::f64);
    y.backward(dy);
    const ProjectionReference ref = projection_reference(x, e, dy);
    CHECK(scaled_error(y.to_vector(), ref.y) <= 1e-12);
    CHECK(scaled_error(x.grad().to_vector(), ref.dx) <= 1e-12);
    CHECK(scaled_error(e.grad().to_vector(), ref.de) <= 1e-12);

    Tensor x32 = as_leaf(x, DType::f32), e32 = as_leaf(e, DType::f32);
    Tensor y32 = sequence_projection(x32, e32);
    CHECK(y32.dtype() == DType::f32);
    y32.backward(dy.to(DType::f32));
    CHECK(scaled_error(y32.to_vector(), ref.y) <= 1e-5);
    CHECK(scaled_error(x32.grad().to_vector(), ref.dx) <= 1e-5);
    CHECK(scaled_error(e32.grad().to_vector(), ref.de) <= 1e-5);
  }
}

TEST_CASE("sequence_projection computes only the gradients asked for") {
  Generator gen(32);
  const Tensor x = Tensor::randn({2, 2, 4, 3}, gen, DType::f64);
  const Tensor e = Tensor::randn({3, 5}, gen, DType::f64);
  const Tensor dy = Tensor::randn({2, 2, 3, 3}, gen, DType::f64);
  const ProjectionReference ref = projection_reference(x, e, dy);

  Tensor x_leaf = as_leaf(x, DType::f64);
  sequence_projection(x_leaf, e).backward(dy);
  CHECK(scaled_error(x_leaf.grad().to_vector(), ref.dx) <= 1e-12);

  Tensor e_leaf = as_leaf(e, DType::f64);
  sequence_projection(x, e_leaf).backward(dy);
  CHECK(scaled_error(e_leaf.grad().to_vector(), ref.de) <= 1e-12);
}

TEST_CASE("sequence_projection passes gradcheck (f64, random cotangent)") {
  std::vector<GradcheckCase> cases = {
      {"sequence_projection N = 4 < M = 6",
       {Shape{2, 2, 4, 3}, Shape{3, 6}},
       [](const std::vector<Tensor>& in) { return sequence_projection(in[0], in[1]); }},
      {"sequence_projection N = M = 5",
       {Shape{1, 3, 5, 2}, Shape{2, 5}},
       [](const std::vector<Tensor>& in) { return sequence_projection(in[0], in[1]); }},
      {"softmax_attention on projected k, v",
       {Shape{1, 2, 5, 3}, Shape{1, 2, 5, 3}, Shape{1, 2, 5, 3}, Shape{2, 7}, Shape{2, 7}},
       [](const std::vector<Tensor>& in) {
         return softmax_attention(in[0], sequence_projection(in[1], in[3]),
                                  sequence_projection(in[2], in[4]), false);
       }},
  };
  run_gradcheck_table(cases);
}

TEST_CASE("sequence_projection rejects bad input, naming the argument") {
  const Tensor x = Tensor::zeros({2, 3, 5, 4}, DType::f64), e = Tensor::zeros({3, 7}, DType::f64);
  check_error(
      [&] {
        sequence_projection(Tensor::zeros({3, 5, 4}, DType::f64), e);
      },
      {"sequence_projection", "x has shape [3,5,4]", "rank 4", "[B,H,N,D]"});
  check_error([&] { sequence_projection(x, Tensor::zeros({7}, DType::f64)); },
              {"sequence_projection", "e has shape [7]", "rank 2", "[k,M]"});
  check_error(
      [&] {
        sequence_projection(x, Tensor::zeros({3, 4}, DType::f64));
      },
      {"sequence_projection", "x has shape [2,3,5,4]", "N = 5", "N ≤ M = 4", "e [3,4]"});
  check_error(
      [&] {
        sequence_projection(x, Tensor::zeros({0, 7}, DType::f64));
      },
      {"sequence_projection", "e has shape [0,7]", "k ≥ 1"});
  check_error(
      [&] {
        sequence_projection(x, Tensor::zeros({3, 7}));
      },
      {"sequence_projection", "e is f32", "x is f64"});
  check_error([&] { sequence_projection(Tensor(), e); }, {"sequence_projection", "x is undefined"});
}
