// matmul and linear: gradients (f64 gradcheck), values, f32 accuracy, bad input.
#include <cmath>
#include <string>
#include <vector>

#include "polyak/ops/gemm_kernel.h"
#include "testing.h"

using namespace polyak;
using namespace polyak::testing;

namespace {

// Stored shape of an operand [.., rows, cols], transposed when `t`.
Shape stored(std::vector<int64_t> batch, int64_t rows, int64_t cols, bool t) {
  batch.push_back(t ? cols : rows);
  batch.push_back(t ? rows : cols);
  return Shape(batch);
}

std::string flags_name(bool ta, bool tb) {
  return std::string(ta ? "T" : "N") + (tb ? "T" : "N");
}

// The product C = op(a) · op(b) of two stored 2-D operands, C = out [m, n], no extras.
SgemmArgs product_args(const Tensor& a, const Tensor& b, bool ta, bool tb, Tensor& out) {
  SgemmArgs args;
  args.trans_a = ta;
  args.trans_b = tb;
  args.m = out.size(0);
  args.n = out.size(1);
  args.k = a.size(ta ? 0 : 1);
  args.a = a.data<float>();
  args.lda = a.size(1);
  args.b = b.data<float>();
  args.ldb = b.size(1);
  args.c = out.data<float>();
  args.ldc = out.size(1);
  return args;
}

// Naive f64 reference of op(a)·op(b) for [batch, M, K] × [batch or shared, K, N].
std::vector<double> reference_matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  std::vector<double> av = a.to_vector(), bv = b.to_vector();
  const int64_t M = a.size(ta ? -1 : -2), K = a.size(ta ? -2 : -1), N = b.size(tb ? -2 : -1);
  const int64_t batch = a.numel() / (M * K);
  const bool shared = b.dim() == 2;
  std::vector<double> out(static_cast<size_t>(batch * M * N), 0.0);
  for (int64_t z = 0; z < batch; ++z) {
    const double* pa = av.data() + z * M * K;
    const double* pb = bv.data() + (shared ? 0 : z * K * N);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k)
          s += (ta ? pa[k * M + i] : pa[i * K + k]) * (tb ? pb[j * K + k] : pb[k * N + j]);
        out[static_cast<size_t>((z * M + i) * N + j)] = s;
      }
  }
  return out;
}

double max_rel_error(const std::vector<double>& got, const std::vector<double>& want) {
  double scale = 1e-30, err = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::abs(want[i]));
    err = std::max(err, std::abs(got[i] - want[i]));
  }
  return err / scale;
}

}  // namespace

TEST_CASE("matmul and linear: gradcheck") {
  std::vector<GradcheckCase> cases;
  const int64_t M = 3, K = 4, N = 5;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const std::string f = flags_name(ta, tb);
      auto fn = [ta, tb](const std::vector<Tensor>& in) { return matmul(in[0], in[1], ta, tb); };
      cases.push_back({"matmul 2-D " + f, {stored({}, M, K, ta), stored({}, K, N, tb)}, fn});
      cases.push_back({"matmul batched " + f, {stored({2}, M, K, ta), stored({2}, K, N, tb)}, fn});
      cases.push_back(
          {"matmul batched x 2-D " + f, {stored({2, 3}, M, K, ta), stored({}, K, N, tb)}, fn});
      cases.push_back(
          {"matmul 4-D " + f, {stored({2, 2}, M, K, ta), stored({2, 2}, K, N, tb)}, fn});
    }
  // Only one operand needing a gradient skips the other's work.
  cases.push_back({"matmul only b requires grad",
                   {},
                   [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); },
                   [](Generator& gen) {
                     return std::vector<Tensor>{
                         Tensor::randn({2, 3, 4}, gen, DType::f64),
                         Tensor::randn({4, 5}, gen, DType::f64).requires_grad_()};
                   }});
  auto lin = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
  auto lin_nobias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); };
  cases.push_back({"linear with bias", {{3, 4}, {5, 4}, {5}}, lin});
  cases.push_back({"linear without bias", {{3, 4}, {5, 4}}, lin_nobias});
  cases.push_back({"linear 3-D x", {{2, 3, 4}, {5, 4}, {5}}, lin});
  cases.push_back({"linear 3-D x without bias", {{2, 3, 4}, {5, 4}}, lin_nobias});
  for (const bool training : {true, false})
    cases.push_back({std::string("relu_dropout_linear ") + (training ? "training" : "eval"),
                     {{2, 7, 4}, {5, 4}, {5}},
                     [training](const std::vector<Tensor>& in) {
                       Generator gen(3);  // rebuilt on every call: the same mask each time
                       return relu_dropout_linear(in[0], 0.3, training, gen, in[1], in[2]);
                     }});
  run_gradcheck_table(cases);
}

TEST_CASE("matmul: 2x2 values for every flag combination") {
  Tensor a = Tensor::from({1, 2, 3, 4}, Shape{2, 2}, DType::f64);
  Tensor b = Tensor::from({5, 6, 7, 8}, Shape{2, 2}, DType::f64);
  CHECK(matmul(a, b).to_vector() == std::vector<double>{19, 22, 43, 50});
  CHECK(matmul(a, b, true, false).to_vector() == std::vector<double>{26, 30, 38, 44});
  CHECK(matmul(a, b, false, true).to_vector() == std::vector<double>{17, 23, 39, 53});
  CHECK(matmul(a, b, true, true).to_vector() == std::vector<double>{23, 31, 34, 46});
  Tensor y = matmul(Tensor::from({1, 2, 3, 4}, Shape{2, 2}, DType::f32),
                    Tensor::from({5, 6, 7, 8}, Shape{2, 2}, DType::f32));
  CHECK(y.dtype() == DType::f32);
  CHECK(y.to_vector() == std::vector<double>{19, 22, 43, 50});
}

TEST_CASE("matmul: the backward node is named and the gradient matches the formula") {
  Tensor a = Tensor::from({1, 2, 3, 4}, Shape{2, 2}, DType::f64).requires_grad_();
  Tensor b = Tensor::from({5, 6, 7, 8}, Shape{2, 2}, DType::f64).requires_grad_();
  Tensor y = matmul(a, b);
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->name() == "MatmulBackward");
  y.backward(Tensor::from({1, 0, 0, 2}, Shape{2, 2}, DType::f64));
  // dA = G·Bᵀ, dB = Aᵀ·G with G = diag(1, 2).
  CHECK(a.grad().to_vector() == std::vector<double>{5, 7, 12, 16});
  CHECK(b.grad().to_vector() == std::vector<double>{1, 6, 2, 8});
}

TEST_CASE("matmul: an empty batch gives a zero gradient to a shared b") {
  for (bool ta : {false, true}) {
    Tensor a = Tensor::zeros(stored({0}, 3, 4, ta), DType::f64).requires_grad_();
    Tensor b = Tensor::ones({4, 5}, DType::f64).requires_grad_();
    Tensor y = matmul(a, b, ta, false);
    CHECK(y.shape() == Shape{0, 3, 5});
    y.backward(Tensor::zeros({0, 3, 5}, DType::f64));
    CHECK(b.grad().to_vector() == std::vector<double>(20, 0.0));
  }
}

TEST_CASE("linear: values with bias and folded leading axes") {
  Tensor x = Tensor::from({1, 2, 3, 4, 5, 6}, Shape{1, 3, 2}, DType::f64);
  Tensor w = Tensor::from({1, 0, 0, 1, 1, 1}, Shape{3, 2}, DType::f64);
  Tensor b = Tensor::from({10, 20, 30}, Shape{3}, DType::f64);
  Tensor y = linear(x, w, b);
  CHECK(y.shape() == Shape{1, 3, 3});
  CHECK(y.to_vector() == std::vector<double>{11, 22, 33, 13, 24, 37, 15, 26, 41});
  CHECK(linear(x, w).to_vector() == std::vector<double>{1, 2, 3, 3, 4, 7, 5, 6, 11});
}

TEST_CASE("matmul: f32 against an f64 reference on odd sizes") {
  Generator gen(5);
  struct Size {
    std::vector<int64_t> batch;
    bool shared_b;
    int64_t M, K, N;
  };
  // Odd sizes, one large enough for threaded GEMM, and many small matrices (batch-parallel).
  const std::vector<Size> sizes = {{{}, true, 67, 131, 45},    {{}, true, 203, 317, 151},
                                   {{3}, false, 37, 29, 41},   {{24}, false, 33, 17, 29},
                                   {{5}, true, 19, 23, 13},    {{}, true, 45, 131, 267},
                                   {{2}, false, 150, 200, 160}};
  for (const Size& s : sizes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        Tensor a = Tensor::randn(stored(s.batch, s.M, s.K, ta), gen);
        Tensor b =
            Tensor::randn(stored(s.shared_b ? std::vector<int64_t>{} : s.batch, s.K, s.N, tb), gen);
        Tensor y = matmul(a, b, ta, tb);
        INFO("a " << a.shape() << " b " << b.shape() << " " << flags_name(ta, tb));
        CHECK(max_rel_error(y.to_vector(), reference_matmul(a, b, ta, tb)) < 1e-5);
      }
}

TEST_CASE("matmul and linear: deep products sliced over the depth, against f64") {
  // k long next to M and N: each thread takes a slice of the depth (also a ragged last
  // slice, with 3 threads), and the slices are added; linear's dW and its bias too.
  const ThreadCount threads(3);
  Generator gen(21);
  const int64_t M = 23, K = 4133, N = 41;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = Tensor::randn(stored({}, M, K, ta), gen);
      Tensor b = Tensor::randn(stored({}, K, N, tb), gen);
      INFO("a " << a.shape() << " b " << b.shape() << " " << flags_name(ta, tb));
      CHECK(max_rel_error(matmul(a, b, ta, tb).to_vector(), reference_matmul(a, b, ta, tb)) < 1e-5);
    }
  Tensor x = Tensor::randn({K, M}, gen).requires_grad_();
  Tensor w = Tensor::randn({N, M}, gen).requires_grad_();
  Tensor bias = Tensor::randn({N}, gen).requires_grad_();
  Tensor g = Tensor::randn({K, N}, gen);
  linear(x, w, bias).backward(g);
  CHECK(max_rel_error(w.grad().to_vector(), reference_matmul(g, x, true, false)) < 1e-5);
  // The bias gradient is taken while dYᵀ is packed, slice by slice.
  std::vector<double> db(static_cast<size_t>(N), 0.0);
  const std::vector<double> gv = g.to_vector();
  for (int64_t r = 0; r < K; ++r)
    for (int64_t j = 0; j < N; ++j)
      db[static_cast<size_t>(j)] += gv[static_cast<size_t>(r * N + j)];
  CHECK(max_rel_error(bias.grad().to_vector(), db) < 1e-5);
  // A second backward accumulates into the leaf (the sliced product writes fresh buffers).
  linear(x, w, bias).backward(g);
  std::vector<double> twice = reference_matmul(g, x, true, false);
  for (double& v : twice) v *= 2;
  CHECK(max_rel_error(w.grad().to_vector(), twice) < 1e-5);
  for (double& v : db) v *= 2;
  CHECK(max_rel_error(bias.grad().to_vector(), db) < 1e-5);
}

TEST_CASE("sgemm: op(A)'s row sums beside the product, on every path") {
  // Row panels over two depth blocks (and a ragged last tile), column panels (m < n: only
  // the first panel may sum), depth slices (3 threads, ragged last slice), and no C at all.
  const ThreadCount threads(3);
  struct Case {
    int64_t M, N, K;
  };
  Generator gen(31);
  for (const Case c : {Case{37, 29, 300}, Case{13, 200, 70}, Case{23, 41, 4133}, Case{40, 0, 17}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        INFO("M " << c.M << " N " << c.N << " K " << c.K << " " << flags_name(ta, tb));
        Tensor a = Tensor::randn(stored({}, c.M, c.K, ta), gen);
        Tensor b = Tensor::randn(stored({}, c.K, c.N, tb), gen);
        Tensor out = Tensor::full({c.M, c.N}, std::nan(""));
        Tensor sums = Tensor::full({c.M}, std::nan(""));  // overwritten, not added to
        SgemmArgs args = product_args(a, b, ta, tb, out);
        args.a_sums = sums.data<float>();
        sgemm_threads(active_isa(), args);
        const std::vector<double> av = a.to_vector();
        std::vector<double> expected(static_cast<size_t>(c.M), 0.0);
        for (int64_t i = 0; i < c.M; ++i)
          for (int64_t p = 0; p < c.K; ++p)
            expected[static_cast<size_t>(i)] +=
                av[static_cast<size_t>(ta ? p * c.M + i : i * c.K + p)];
        CHECK(max_rel_error(sums.to_vector(), expected) < 1e-5);
        if (c.N > 0) CHECK(max_rel_error(out.to_vector(), reference_matmul(a, b, ta, tb)) < 1e-5);
      }
}

TEST_CASE("sgemm: a gate on C's final value, on every path") {
  // As above, plus accumulate, a bias, depth blocks of their own (K past any KC), and a
  // gate whose leading dimension is not C's: C = (gate > 0 ? scale : 0) ⊙ C.
  const ThreadCount threads(3);
  struct Case {
    int64_t M, N, K;
    bool accumulate, bias;
  };
  Generator gen(37);
  for (const Case c : {Case{37, 29, 300, false, true}, Case{13, 200, 70, true, false},
                       Case{23, 41, 4133, false, false}, Case{45, 67, 1500, true, false},
                       Case{9, 11, 0, false, true}})
    for (bool ta : {false, true}) {
      const bool tb = !ta;
      INFO("M " << c.M << " N " << c.N << " K " << c.K << " " << flags_name(ta, tb)
                << (c.accumulate ? " accumulate" : "") << (c.bias ? " bias" : ""));
      Tensor a = Tensor::randn(stored({}, c.M, c.K, ta), gen);
      Tensor b = Tensor::randn(stored({}, c.K, c.N, tb), gen);
      Tensor bias = Tensor::randn({c.N}, gen);
      Tensor gate = Tensor::randn({c.M, c.N + 3}, gen);  // ldg = N + 3
      gate.data<float>()[0] = 0.0f;                      // 0 gates like a negative
      Tensor out = Tensor::randn({c.M, c.N}, gen);
      const std::vector<double> before = out.to_vector();
      SgemmArgs args = product_args(a, b, ta, tb, out);
      args.accumulate = c.accumulate;
      args.bias = c.bias ? bias.data<float>() : nullptr;
      args.gate = gate.data<float>();
      args.ldg = c.N + 3;
      args.gate_scale = 1.25f;
      sgemm_threads(active_isa(), args);
      std::vector<double> expected = c.K > 0
                                         ? reference_matmul(a, b, ta, tb)
                                         : std::vector<double>(static_cast<size_t>(c.M * c.N), 0.0);
      const std::vector<double> gv = gate.to_vector(), bv = bias.to_vector();
      int64_t open = 0;
      for (int64_t i = 0; i < c.M; ++i)
        for (int64_t j = 0; j < c.N; ++j) {
          double& e = expected[static_cast<size_t>(i * c.N + j)];
          if (c.accumulate) e += before[static_cast<size_t>(i * c.N + j)];
          if (c.bias) e += bv[static_cast<size_t>(j)];
          const bool pass = gv[static_cast<size_t>(i * (c.N + 3) + j)] > 0;
          e = pass ? 1.25 * e : 0.0;
          open += pass;
        }
      CHECK(open > c.M * c.N / 4);
      CHECK(open < c.M * c.N * 3 / 4);
      CHECK(max_rel_error(out.to_vector(), expected) < 1e-5);
    }
}

TEST_CASE("relu_dropout_linear: linear(relu_dropout(x)) as one node, the same values") {
  for (DType dtype : {DType::f32, DType::f64})
    for (const bool training : {true, false}) {
      INFO("dtype " << dtype << (training ? " training" : " eval"));
      Generator data(17);
      const Tensor x0 = Tensor::randn({3, 37, 53}, data, dtype);
      const Tensor w0 = Tensor::randn({29, 53}, data, dtype);
      const Tensor b0 = Tensor::randn({29}, data, dtype);
      const Tensor cot = Tensor::randn({3, 37, 29}, data, dtype);
      auto leaf = [](const Tensor& t) { return t.clone().requires_grad_(); };
      Tensor xa = leaf(x0), wa = leaf(w0), ba = leaf(b0);
      Tensor xb = leaf(x0), wb = leaf(w0), bb = leaf(b0);
      Generator ga(5), gb(5);
      Tensor fused = relu_dropout_linear(xa, 0.35, training, ga, wa, ba);
      Tensor reference = linear(relu_dropout(xb, 0.35, training, gb), wb, bb);
      CHECK(ga.offset() == gb.offset());
      CHECK(ga.offset() == (training ? (3 * 37 * 53 + 7) / 8 : 0));
      CHECK(fused.grad_fn()->name() == "LinearBackward");
      CHECK(fused.to_vector() == reference.to_vector());
      fused.backward(cot);
      reference.backward(cot);
      CHECK(max_rel_error(xa.grad().to_vector(), xb.grad().to_vector()) < 1e-6);
      CHECK(max_rel_error(wa.grad().to_vector(), wb.grad().to_vector()) < 1e-6);
      CHECK(max_rel_error(ba.grad().to_vector(), bb.grad().to_vector()) < 1e-6);
      // Dropped and negative inputs get no gradient; kept ones do.
      int64_t zeros = 0;
      for (double v : xa.grad().to_vector()) zeros += v == 0.0;
      CHECK(zeros > 3 * 37 * 53 * (training ? 6 : 4) / 10);
      CHECK(zeros < 3 * 37 * 53 * (training ? 8 : 6) / 10);
    }
}

TEST_CASE("relu_dropout_linear: bad input is refused before any draw") {
  Generator gen(2);
  check_error(
      [&] {
        relu_dropout_linear(Tensor::zeros({2, 4}), 0.1, true, gen, Tensor::zeros({3, 5}));
      },
      {"relu_dropout_linear: weight has shape [3,5]", "in = 4"});
  check_error(
      [&] {
        relu_dropout_linear(Tensor::zeros({2, 4}), 0.1, true, gen, Tensor::zeros({3, 4}),
                            Tensor::zeros({4}));
      },
      {"relu_dropout_linear: bias has shape [4]", "[3]"});
  check_error(
      [&] {
        relu_dropout_linear(Tensor::zeros({2, 4}), 1.0, true, gen, Tensor::zeros({3, 4}));
      },
      {"relu_dropout_linear: p is 1, expected p in [0, 1)"});
  check_error(
      [&] {
        relu_dropout_linear(Tensor(), 0.1, true, gen, Tensor::zeros({3, 4}));
      },
      {"relu_dropout_linear", "x"});
  CHECK(gen.offset() == 0);
}

TEST_CASE("matmul: f32 gradients of large operands against an f64 reference") {
  // Large enough that each product is split across threads, and a shared b whose gradient
  // sums over the batch.
  Generator gen(11);
  const int64_t batch = 3, M = 180, K = 170, N = 160;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO(flags_name(ta, tb));
      Tensor a = Tensor::randn(stored({batch}, M, K, ta), gen).requires_grad_();
      Tensor b = Tensor::randn(stored({}, K, N, tb), gen).requires_grad_();
      Tensor g = Tensor::randn({batch, M, N}, gen);
      matmul(a, b, ta, tb).backward(g);
      // dA[i] = g[i] · op(B)ᵀ (stored transposed when ta); dB = Σ_i op(A[i])ᵀ · g[i].
      std::vector<double> da, db(static_cast<size_t>(K * N), 0.0);
      for (int64_t i = 0; i < batch; ++i) {
        std::vector<double> dai =
            ta ? reference_matmul(b, g[i], tb, true) : reference_matmul(g[i], b, false, !tb);
        da.insert(da.end(), dai.begin(), dai.end());
        std::vector<double> dbi =
            tb ? reference_matmul(g[i], a[i], true, ta) : reference_matmul(a[i], g[i], !ta, false);
        for (size_t j = 0; j < db.size(); ++j) db[j] += dbi[j];
      }
      CHECK(max_rel_error(a.grad().to_vector(), da) < 1e-5);
      CHECK(max_rel_error(b.grad().to_vector(), db) < 1e-5);
    }
}

TEST_CASE("linear: f32 forward and backward against f64") {
  Generator gen(9);
  Tensor x = Tensor::randn({3, 37, 53}, gen).requires_grad_();
  Tensor w = Tensor::randn({71, 53}, gen).requires_grad_();
  Tensor b = Tensor::randn({71}, gen).requires_grad_();
  Tensor g = Tensor::randn({3, 37, 71}, gen);
  Tensor x64 = x.detach().to(DType::f64).requires_grad_();
  Tensor w64 = w.detach().to(DType::f64).requires_grad_();
  Tensor b64 = b.detach().to(DType::f64).requires_grad_();
  Tensor y = linear(x, w, b), y64 = linear(x64, w64, b64);
  CHECK(max_rel_error(y.to_vector(), y64.to_vector()) < 1e-5);
  y.backward(g);
  y64.backward(g.to(DType::f64));
  CHECK(max_rel_error(x.grad().to_vector(), x64.grad().to_vector()) < 1e-5);
  CHECK(max_rel_error(w.grad().to_vector(), w64.grad().to_vector()) < 1e-5);
  CHECK(max_rel_error(b.grad().to_vector(), b64.grad().to_vector()) < 1e-5);
}

TEST_CASE("matmul and linear: bad input") {
  Tensor a = Tensor::zeros({2, 4}), b = Tensor::zeros({3, 5});
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO(flags_name(ta, tb));
      check_error(
          [&] {
            matmul(Tensor::zeros(stored({}, 2, 4, ta)), Tensor::zeros(stored({}, 3, 5, tb)), ta,
                   tb);
          },
          {"matmul", "b has shape", "K = 4"});
    }
  check_error(
      [] {
        matmul(Tensor::zeros({2, 4}), Tensor::zeros({3, 5}));
      },
      {"matmul: b has shape [3,5], expected [K,N] with K = 4 matching a [2,4]"});
  check_error(
      [] {
        matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 5}));
      },
      {"matmul", "b has shape [3,4,5]", "batch axes [2]"});
  check_error(
      [] {
        matmul(Tensor::zeros({3, 4}), Tensor::zeros({2, 4, 5}));
      },
      {"matmul", "b has shape [2,4,5]", "batch axes []"});
  check_error(
      [] {
        matmul(Tensor::zeros({3}), Tensor::zeros({3, 4}));
      },
      {"matmul", "a has shape [3]", "rank ≥ 2"});
  check_error(
      [] {
        matmul(Tensor::zeros({3, 4}), Tensor::zeros({4}));
      },
      {"matmul", "b has shape [4]", "rank ≥ 2"});
  check_error(
      [] {
        matmul(Tensor::zeros({3, 4}), Tensor::zeros({4, 5}, DType::f64));
      },
      {"matmul", "f32", "f64", "a", "b"});
  check_error([] { matmul(Tensor(), Tensor::zeros({4, 5})); }, {"matmul", "a"});

  check_error(
      [] {
        linear(Tensor::zeros({2, 4}), Tensor::zeros({3, 5}));
      },
      {"linear", "weight has shape [3,5]", "in = 4"});
  check_error(
      [] {
        linear(Tensor::zeros({2, 4}), Tensor::zeros({3, 4, 1}));
      },
      {"linear", "weight", "rank 2"});
  check_error(
      [] {
        linear(Tensor::zeros({2, 4}), Tensor::zeros({3, 4}), Tensor::zeros({4}));
      },
      {"linear", "bias has shape [4]", "[3]"});
  check_error(
      [] {
        linear(Tensor::zeros({2, 4}), Tensor::zeros({3, 4}, DType::f64));
      },
      {"linear", "weight", "f32", "f64"});
  check_error(
      [] {
        linear(Tensor::zeros({2, 4}), Tensor::zeros({3, 4}), Tensor::zeros({3}, DType::f64));
      },
      {"linear", "bias", "f32", "f64"});
}
