// The recurrent (RNN-mode) form of the attention modules: stepped one position at a time they
// agree with their parallel forward; a step records no graph; the state's layout.
#include <string>
#include <vector>

#include "helpers.h"

using namespace polyak;
using namespace polyak::testing;

TEST_CASE("recurrent: attention modules step exactly like their parallel forward") {
  struct Case {
    std::string kind;
    double beta, gamma;
    int64_t N;
  };
  const std::vector<Case> cases = {
      {"softmax", 0.1, 0.6, 9},  {"softmax", 0.1, 0.6, 70},  // past the cache's first capacity
      {"linear", 0.1, 0.6, 9},   {"momentum", 0.0, 1.0, 9},  {"momentum", 0.0, 0.4, 9},
      {"momentum", 0.1, 0.6, 9}, {"momentum", 0.6, 0.9, 12}, {"momentum", 0.95, 1.7, 12},
  };
  for (const Case& c : cases) {
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO(c.kind << " beta " << c.beta << " gamma " << c.gamma << " N " << c.N << " " << dtype);
      Generator gen(3);
      auto attn = make_attention(attention_config(c.kind, c.beta, c.gamma), gen);
      attn->to(dtype);
      Tensor x = seeded_randn({2, c.N, 8}, 4, dtype);
      Tensor parallel = attn->forward(x);
      check_agree(parallel, step_through(*attn, x));
    }
  }
}

TEST_CASE("recurrent: a step records no graph and the state has the documented layout") {
  Generator gen(1);
  auto attn = make_attention(attention_config("momentum", 0.3, 0.7), gen);
  AttentionState s = attn->initial_state(3);
  CHECK(s.kind == "momentum");
  CHECK(s.batch == 3);
  CHECK(s.position == 0);
  REQUIRE(s.tensors.size() == 3);
  CHECK(s.tensors[0].shape() == Shape({3, 2, 4, 4}));  // m [B,H,D,Dv]
  CHECK(s.tensors[1].shape() == Shape({3, 2, 4, 4}));  // s
  CHECK(s.tensors[2].shape() == Shape({3, 2, 4}));     // z [B,H,D]
  Tensor x = seeded_randn({3, 1, 8}, 2).requires_grad_();
  Tensor y = attn->step(x, s);
  CHECK(y.shape() == Shape({3, 1, 8}));
  CHECK_FALSE(y.requires_grad());
  CHECK(s.position == 1);

  auto lin = make_attention(attention_config("linear", 0.1, 0.6), gen);
  AttentionState ls = lin->initial_state(1);
  REQUIRE(ls.tensors.size() == 2);
  CHECK(ls.tensors[0].shape() == Shape({1, 2, 4, 4}));
  CHECK(ls.tensors[1].shape() == Shape({1, 2, 4}));
  lin->to(DType::f64);
  CHECK(lin->initial_state(1).tensors[0].dtype() == DType::f64);

  auto soft = make_attention(attention_config("softmax", 0.1, 0.6), gen);
  AttentionState ss = soft->initial_state(2);
  REQUIRE(ss.tensors.size() == 2);
  CHECK(ss.tensors[0].size(2) >= 1);  // a cache with room
}
