// Helpers shared by the nn suites.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "testing.h"

namespace polyak::testing {

// ---- every kind at test size -------------------------------------------------------------
// The generic suites run every attention and model kind on tiny inputs (N ≤ 7). These give
// the kinds' own fields values that make them what they claim at that size: causal blocks
// of 4 (so that N crosses a block boundary), non-causal blocks of 8 (which must divide N or
// cover it), a handful of random features drawn once, a short Linformer projection.

// By flag, so that each kind takes the ones its struct has (nn/kinds.h).
inline std::map<std::string, ParamValue> test_sizes(bool causal) {
  return {{"--block-size", int64_t{causal ? 4 : 8}},
          {"--features", int64_t{8}},
          {"--redraw", int64_t{0}},  // a gradcheck's many training forwards must see one Ω
          {"--linformer-k", int64_t{4}},
          {"--ema-dim", int64_t{2}},
          {"--z-dim", int64_t{4}}};
}

inline void use_test_sizes(AttentionConfig& c) {
  const std::vector<std::string> kinds = attention_kinds();
  if (std::find(kinds.begin(), kinds.end(), c.kind) == kinds.end()) return;  // a bad-kind test
  c.params = resolve_params(c.params, *attention_spec(c.kind).params, "use_test_sizes", c.kind);
  apply_flags(c.params, test_sizes(c.causal));
  if (c.max_len == 0) c.max_len = 8;
}

inline void use_test_sizes(TransformerConfig& c) {
  c.attention_params = resolve_params(c.attention_params, *attention_spec(c.attention).params,
                                      "use_test_sizes", c.attention);
  apply_flags(c.attention_params, test_sizes(c.causal));
}

// Whether an attention kind, or a model kind's attention, has the causal (or the
// non-causal) form: Linformer, which projects the whole sequence, has no causal one;
// retention, whose decay runs forward in time, no non-causal one.
inline bool has_form(const std::string& kind, bool causal) {
  std::string attention = kind;
  const std::vector<std::string>& models = model_kinds();
  if (std::find(models.begin(), models.end(), kind) != models.end()) {
    TransformerConfig c;
    set_model_kind(c, kind);
    attention = c.attention;
  }
  const AttentionForms& forms = attention_spec(attention).forms;
  return causal ? forms.causal : forms.non_causal;
}
inline bool has_causal_form(const std::string& kind) {
  return has_form(kind, true);
}

// Mega builds its own block; every other kind projects through qkv_proj and out_proj.
inline bool has_qkv_projections(const std::string& kind) {
  return kind.rfind("mega", 0) != 0;
}

// Up to `count` parameter paths of `module` under `prefix`, spread over its list (first and
// last included): what a gradcheck substitutes when the kinds' parameters differ.
template <class M>
std::vector<std::string> parameter_sample(const M& module, const std::string& prefix,
                                          size_t count) {
  std::vector<std::string> under;
  for (const auto& [name, t] : module.named_parameters())
    if (name.rfind(prefix, 0) == 0) under.push_back(name);
  if (under.size() <= count) return under;
  std::vector<std::string> picked;
  for (size_t i = 0; i < count; ++i) picked.push_back(under[i * (under.size() - 1) / (count - 1)]);
  return picked;
}

// A fresh leaf holding a copy of `t` that requires grad: a gradcheck input standing in for
// a parameter.
inline Tensor leaf_copy(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor c = t.clone().detach();
  c.requires_grad_(true);
  return c;
}

// Gradcheck of `forward(x)` with respect to the input x and the module parameters at
// `paths` (substituted with set_parameter). The module must be f64.
template <class M, class Forward>
GradcheckResult gradcheck_module(M& module, const Tensor& x, const std::vector<std::string>& paths,
                                 Forward forward, const GradcheckOptions& options = {}) {
  std::vector<Tensor> inputs;
  if (x.defined()) inputs.push_back(leaf_copy(x));
  for (const std::string& p : paths) inputs.push_back(leaf_copy(module.parameter(p)));
  size_t first = x.defined() ? 1 : 0;
  auto fn = [&](const std::vector<Tensor>& in) {
    for (size_t i = 0; i < paths.size(); ++i) module.set_parameter(paths[i], in[first + i]);
    return forward(x.defined() ? in[0] : Tensor());
  };
  // A substitution that forward() did not see would pass gradcheck trivially (zero
  // analytic and zero numeric gradient): require a non-zero gradient at every input.
  {
    Tensor y = fn(inputs);
    Generator gen(options.seed + 1);
    y.backward(Tensor::randn(y.shape(), gen, DType::f64));
    for (size_t i = 0; i < inputs.size(); ++i) {
      Tensor g = inputs[i].grad();
      double norm = 0;
      if (g.defined())
        for (double v : g.to_vector()) norm += v * v;
      INFO("input " << i << (i >= first ? " = " + paths[i - first] : std::string(" = x")));
      CHECK(norm > 0);
      inputs[i].zero_grad();
    }
  }
  return gradcheck(fn, inputs, options);
}

// Loads into `to` the entries of from's state dict that `to` has too (the shared
// projections); the rest of `to` stays.
inline void copy_shared(const Module& from, Module& to) {
  const NamedTensors theirs = from.state_dict();
  NamedTensors state = to.state_dict();
  for (auto& [name, t] : state)
    for (const auto& [their_name, value] : theirs)
      if (their_name == name) t = value;
  to.load_state_dict(state);
}

// ---- the recurrent form ------------------------------------------------------------------

// A normal tensor drawn from its own generator.
inline Tensor seeded_randn(const Shape& shape, uint64_t seed, DType dtype = DType::f32) {
  Generator gen(seed);
  return Tensor::randn(shape, gen, dtype);
}

// f64: |a − b| ≤ 1e-10; f32: |a − b| ≤ 1e-4 · max |a|.
inline void check_agree(const Tensor& parallel, const Tensor& recurrent) {
  const double diff = max_abs_diff(parallel, recurrent);
  double scale = 0;
  for (double v : parallel.to_vector()) scale = std::max(scale, std::abs(v));
  INFO("max |parallel − recurrent| = " << diff << ", max |parallel| = " << scale);
  REQUIRE(scale > 1e-3);  // a vanishing output would agree trivially
  if (parallel.dtype() == DType::f64)
    CHECK(diff <= 1e-10);
  else
    CHECK(diff <= 1e-4 * scale);
}

inline AttentionConfig attention_config(const std::string& kind, double beta, double gamma) {
  AttentionConfig c;
  c.kind = kind;
  c.d_model = 8;
  c.heads = 2;
  if (kind == "momentum") c.params = MomentumParams{.beta = beta, .gamma = gamma};
  return c;
}

// Steps `attn` through x [B, N, d] one position at a time → [B, N, d].
inline Tensor step_through(Attention& attn, const Tensor& x) {
  const int64_t B = x.size(0), N = x.size(1);
  AttentionState state = attn.initial_state(B);
  std::vector<Tensor> ys;
  for (int64_t t = 0; t < N; ++t) {
    ys.push_back(attn.step(slice(x, 1, t, t + 1), state));
    CHECK(state.position == t + 1);
  }
  return concat(ys, 1);
}

}  // namespace polyak::testing
