// Multi-head attention modules. Legend: B batch, N length, d width, H heads, D head dim.
#include "polyak/nn/attention.h"

#include <cmath>
#include <sstream>

#include "polyak/nn/kinds.h"
#include "polyak/ops/attention/feature_maps.h"
#include "polyak/ops/attention/linear_attention.h"
#include "polyak/ops/attention/momentum_attention.h"
#include "polyak/ops/attention/softmax_attention.h"
#include "polyak/ops/elementwise.h"
#include "polyak/ops/matmul.h"
#include "polyak/ops/reduce.h"
#include "polyak/ops/shape_ops.h"

namespace polyak {

namespace {

// The softmax KV cache's capacity in a fresh state (it doubles when full).
constexpr int64_t kInitialCacheCapacity = 64;

}  // namespace

// ---- config ----------------------------------------------------------------------------

void AttentionConfig::validate() const {
  const char* fn = "AttentionConfig";
  const AttentionSpec& spec = attention_spec(kind, fn, "kind");
  POLYAK_CHECK(d_model > 0, fn, ": d_model = ", d_model, ", expected a positive integer");
  POLYAK_CHECK(heads > 0, fn, ": heads = ", heads, ", expected a positive integer");
  POLYAK_CHECK(head_dim >= 0, fn, ": head_dim = ", head_dim,
               ", expected a positive integer (or 0: d_model / heads)");
  POLYAK_CHECK(head_dim > 0 || d_model % heads == 0, fn, ": d_model = ", d_model,
               " is not divisible by heads = ", heads,
               ", expected a multiple of heads when head_dim is unset (0)");
  POLYAK_CHECK(dropout >= 0.0 && dropout < 1.0, fn, ": dropout = ", dropout,
               ", expected in [0, 1)");
  POLYAK_CHECK(max_len >= 0, fn, ": max_len = ", max_len,
               ", expected a positive integer (or 0: unbounded)");
  resolve_params(params, *spec.params, fn, kind).validate(fn);
  check_form(spec, causal, fn, "kind");
  if (spec.check) spec.check(fn, *this);
}

// ---- feature maps ----------------------------------------------------------------------

Tensor EluFeatureMap::forward(const Tensor& x) const {
  return elu_feature_map(x);
}

Tensor EluFeatureMap::forward_heads(const Tensor& x, int64_t heads) const {
  return elu_feature_map_heads(x, heads);
}

Tensor FeatureMap::forward_heads(const Tensor& x, int64_t heads) const {
  return forward(split_heads(x, heads));
}

int64_t FeatureMap::output_width(int64_t head_dim) const {
  // Asked of the map itself, so that a recurrent state follows whatever it produces.
  NoGradGuard no_grad;
  return forward(Tensor::zeros({1, 1, 1, head_dim})).size(3);
}

Tensor PlainEluFeatureMap::forward(const Tensor& x) const {
  return elu(x);
}

const std::vector<std::string>& feature_map_kinds() {
  static const std::vector<std::string> kinds = {"elu", "plain-elu"};
  return kinds;
}

std::shared_ptr<FeatureMap> make_feature_map(const std::string& kind) {
  check_choice("make_feature_map", "kind", kind, feature_map_kinds());
  if (kind == "plain-elu") return std::make_shared<PlainEluFeatureMap>();
  return std::make_shared<EluFeatureMap>();
}

// ---- the shared block ------------------------------------------------------------------

Attention::Attention(const AttentionConfig& config, Generator& gen)
    : Attention(config, gen, /*projections=*/true) {}

Attention::Attention(const AttentionConfig& config, Generator& gen, bool projections)
    : config_(config) {
  config_.validate();
  int64_t d = config_.d_model, inner = config_.heads * config_.resolved_head_dim();
  if (projections) {
    qkv_proj = register_module("qkv_proj", std::make_shared<Linear>(d, 3 * inner, gen));
    out_proj = register_module("out_proj", std::make_shared<Linear>(inner, d, gen));
  }
  dropout = register_module("dropout", std::make_shared<Dropout>(config_.dropout, gen));
}

Tensor Attention::project(const Tensor& x, int64_t which) const {
  // q, k and v are three GEMMs on row blocks of the fused weight (free views): cheaper in
  // the backward than one GEMM whose output is cut into three, where every piece's
  // gradient would be a zero-filled full-size tensor summed with the others.
  const int64_t inner = config_.heads * config_.resolved_head_dim();
  const int64_t begin = which * inner, end = (which + 1) * inner;
  return linear(x, qkv_proj->weight.narrow0(begin, end), qkv_proj->bias.narrow0(begin, end));
}

Tensor Attention::forward(const Tensor& x) {
  return dropout->forward(sublayer(x));
}

bool is_padded(const char* fn, const std::vector<int64_t>& lengths, int64_t B, int64_t N) {
  if (lengths.empty()) return false;
  POLYAK_CHECK(static_cast<int64_t>(lengths.size()) == B, fn, ": lengths has ", lengths.size(),
               " entries, expected one per batch row (B = ", B, ") or none");
  bool padded = false;
  for (size_t b = 0; b < lengths.size(); ++b) {
    POLYAK_CHECK(lengths[b] >= 1 && lengths[b] <= N, fn, ": lengths[", b, "] = ", lengths[b],
                 ", expected in [1, ", N, "] (the batch's positions)");
    padded = padded || lengths[b] < N;
  }
  return padded;
}

Tensor padding_mask(const std::vector<int64_t>& lengths, int64_t B, int64_t N, DType dtype,
                    Device device) {
  std::vector<float> mask(static_cast<size_t>(B * N), 1.0f);
  for (size_t b = 0; b < lengths.size(); ++b)
    for (int64_t t = lengths[b]; t < N; ++t)
      mask[b * static_cast<size_t>(N) + static_cast<size_t>(t)] = 0.0f;
  Tensor m = Tensor::from(mask, Shape{B, N});
  if (dtype != DType::f32) m = m.to(dtype);
  return device.is_cpu() ? m : m.to(device);
}

namespace {

// Whether a block on x [B, N, d] must handle the padding `lengths`: only a non-causal one.
bool needs_padding(const char* fn, const AttentionConfig& config, const Tensor& x,
                   const std::vector<int64_t>& lengths) {
  check_rank(fn, "x", x, 3, "[B, N, d]");
  return is_padded(fn, lengths, x.size(0), x.size(1)) && !config.causal;
}

}  // namespace

Tensor Attention::forward(const Tensor& x, const std::vector<int64_t>& lengths) {
  if (!needs_padding("Attention::forward", config_, x, lengths)) return forward(x);
  return dropout->forward(padded_sublayer(x, lengths));
}

Tensor Attention::forward_residual(const Tensor& residual, const Tensor& x,
                                   const std::vector<int64_t>& lengths) {
  if (!needs_padding("Attention::forward_residual", config_, x, lengths))
    return forward_residual(residual, x);
  return dropout->forward_add(padded_sublayer(x, lengths), residual);
}

Tensor Attention::padded_sublayer(const Tensor& x, const std::vector<int64_t>& lengths) {
  const int64_t B = x.size(0), N = x.size(1);
  std::vector<Tensor> rows;
  rows.reserve(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = lengths[static_cast<size_t>(b)];
    Tensor row = slice(x, 0, b, b + 1);
    if (n == N) {
      rows.push_back(sublayer(row));
      continue;
    }
    Tensor y = sublayer(slice(row, 1, 0, n));
    Tensor pad = Tensor::zeros(Shape{1, N - n, y.size(2)}, y.dtype(), y.device());
    rows.push_back(concat({y, pad}, 1));
  }
  return B == 1 ? rows[0] : concat(rows, 0);
}

Tensor Attention::forward_residual(const Tensor& residual, const Tensor& x) {
  return dropout->forward_add(sublayer(x), residual);
}

Tensor Attention::sublayer(const Tensor& x) {
  check_rank("Attention", "x", x, 3, "[B, N, d]");
  POLYAK_CHECK(x.size(2) == config_.d_model, "Attention: x has shape ", x.shape(),
               ", expected [B, N, ", config_.d_model, "]");
  static const char* const names[] = {"q", "k", "v"};
  auto projected = [&](int64_t i) {  // [B, N, H·D]
    return probe(names[i], project(x, i));
  };
  Tensor y = mix_projections(projected(0), projected(1), projected(2));  // [B, H, N, D]
  return out_proj->forward(probe("out", merge_heads(y)));
}

Tensor Attention::mix_projections(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t H = config_.heads;
  return mix(split_heads(q, H), split_heads(k, H), split_heads(v, H));
}

const Tensor& Attention::probe(const char* which, const Tensor& t) {
  if (!inspect_ || !t.requires_grad()) return t;
  double AttentionGradNorms::*slot = &AttentionGradNorms::out;
  if (which[0] == 'q') slot = &AttentionGradNorms::q;
  if (which[0] == 'k') slot = &AttentionGradNorms::k;
  if (which[0] == 'v') slot = &AttentionGradNorms::v;
  const bool counts = slot == &AttentionGradNorms::out;
  t.register_hook([this, slot, counts](const Tensor& grad) {
    NoGradGuard no_grad;
    // A diagnostic: on a device the gradient is read to the host (in f64 there, as on the CPU).
    const Tensor g = grad.device().is_cpu() ? grad : grad.cpu();
    grad_norms_.*slot = std::sqrt(sum(square(g.to(DType::f64))).item());
    if (counts) ++grad_norms_.backwards;
    return Tensor();
  });
  return t;
}

// ---- the recurrent form ----------------------------------------------------------------

std::vector<Attention::StateSlot> Attention::state_layout(int64_t) const {
  return {};
}

void Attention::check_recurrent(const char* fn) const {
  POLYAK_CHECK(config_.causal, fn, ": the '", config_.kind,
               "' attention is not causal (causal = false), expected a causal module: only "
               "causal attention has a recurrent form");
  POLYAK_CHECK(!state_layout(1).empty(), fn, ": attention kind '", config_.kind,
               "' has no recurrent form");
}

Tensor Attention::mix_step(const Tensor&, const Tensor&, const Tensor&, AttentionState&) {
  fail("Attention::step: attention kind '", config_.kind, "' has no recurrent form");
}

AttentionState Attention::initial_state(int64_t batch) const {
  const char* fn = "Attention::initial_state";
  check_recurrent(fn);
  POLYAK_CHECK(batch > 0, fn, ": batch = ", batch, ", expected a positive integer");
  AttentionState state;
  state.kind = config_.kind;
  state.batch = batch;
  for (const StateSlot& slot : state_layout(batch)) {
    std::vector<int64_t> extents = slot.extents;
    for (int64_t& e : extents)
      if (e < 0) e = kInitialCacheCapacity;
    state.tensors.push_back(Tensor::zeros(Shape(extents), dtype(), device()));
  }
  return state;
}

int64_t Attention::check_step(const char* fn, const Tensor& x, const AttentionState& state) const {
  check_recurrent(fn);
  const int64_t d = config_.d_model, H = config_.heads, D = config_.resolved_head_dim();
  check_rank(fn, "x", x, 3, "[B, 1, d]");
  POLYAK_CHECK(x.size(1) == 1 && x.size(2) == d, fn, ": x has shape ", x.shape(),
               ", expected [B, 1, ", d, "] (one position)");
  const int64_t B = x.size(0);

  // The state must be one that initial_state(B) of this module could have made, advanced.
  POLYAK_CHECK(state.kind == config_.kind, fn, ": the state was made by a '", state.kind,
               "' attention, expected one made by a '", config_.kind, "' attention");
  POLYAK_CHECK(state.batch == B, fn, ": x has batch ", B, ", expected the state's batch ",
               state.batch);
  POLYAK_CHECK(state.position >= 0, fn, ": the state's position is ", state.position,
               ", expected ≥ 0");
  const std::vector<StateSlot> layout = state_layout(B);
  POLYAK_CHECK(state.tensors.size() == layout.size(), fn, ": the state has ", state.tensors.size(),
               " tensors, expected ", layout.size(), " for a '", config_.kind, "' attention");
  for (size_t i = 0; i < layout.size(); ++i) {
    const Tensor& t = state.tensors[i];
    const StateSlot& slot = layout[i];
    POLYAK_CHECK(t.defined(), fn, ": state tensor '", slot.name, "' is undefined");
    bool ok = t.dim() == static_cast<int64_t>(slot.extents.size());
    for (size_t a = 0; ok && a < slot.extents.size(); ++a) {
      int64_t want = slot.extents[a];
      ok = want < 0 ? t.size(static_cast<int64_t>(a)) >= state.position
                    : t.size(static_cast<int64_t>(a)) == want;
    }
    if (!ok) {
      std::ostringstream expected;
      expected << "[";
      for (size_t a = 0; a < slot.extents.size(); ++a) {
        if (a > 0) expected << ",";
        if (slot.extents[a] < 0)
          expected << "C ≥ " << state.position;
        else
          expected << slot.extents[a];
      }
      expected << "]";
      fail(fn, ": state tensor '", slot.name, "' has shape ", t.shape(), ", expected ",
           expected.str(), " (batch ", B, ", heads ", H, ", head_dim ", D, ")");
    }
    POLYAK_CHECK(t.dtype() == x.dtype(), fn, ": state tensor '", slot.name, "' is ", t.dtype(),
                 ", expected ", x.dtype(), " (x's dtype)");
    check_same_device(fn, slot.name, t, "x", x);
  }
  return B;
}

Tensor Attention::step(const Tensor& x, AttentionState& state) {
  NoGradGuard no_grad;
  const int64_t B = check_step("Attention::step", x, state);
  const int64_t H = config_.heads, D = config_.resolved_head_dim();
  auto heads = [&](int64_t i) { return project(x, i).reshape({B, H, D}); };  // [B, H, D]
  Tensor y = mix_step(heads(0), heads(1), heads(2), state);                  // [B, H, D]
  ++state.position;
  return dropout->forward(out_proj->forward(y.reshape({B, 1, H * D})));
}

// ---- the kinds -------------------------------------------------------------------------

SoftmaxAttention::SoftmaxAttention(const AttentionConfig& config, Generator& gen)
    : Attention(config, gen) {}

Tensor SoftmaxAttention::mix(const Tensor& q, const Tensor& k, const Tensor& v) {
  return softmax_attention(q, k, v, config_.causal);
}

std::vector<Attention::StateSlot> SoftmaxAttention::state_layout(int64_t batch) const {
  const int64_t H = config_.heads, D = config_.resolved_head_dim();
  return {{"k_cache", {batch, H, -1, D}}, {"v_cache", {batch, H, -1, D}}};
}

Tensor SoftmaxAttention::mix_step(const Tensor& q, const Tensor& k, const Tensor& v,
                                  AttentionState& state) {
  // The caches' filled length is the state's position; step() advances the position.
  int64_t length = state.position;
  return softmax_attention_step(q, k, v, state.tensors[0], state.tensors[1], length);
}

FeatureMapAttention::FeatureMapAttention(
    const AttentionConfig& config, Generator& gen,
    const std::function<std::shared_ptr<FeatureMap>(Generator&)>& make_map)
    : Attention(config, gen) {
  feature_map = register_module("feature_map", make_map(gen));
  feature_width_ = feature_map->output_width(config_.resolved_head_dim());
}

Tensor FeatureMapAttention::mix(const Tensor& q, const Tensor& k, const Tensor& v) {
  if (is_training()) feature_map->advance();
  Tensor fq = feature_map->forward(q), fk = feature_map->forward(k);
  return attend(fq, fk, v);
}

Tensor FeatureMapAttention::mix_projections(const Tensor& q, const Tensor& k, const Tensor& v) {
  if (is_training()) feature_map->advance();
  const int64_t H = config_.heads;
  Tensor fq = feature_map->forward_heads(q, H), fk = feature_map->forward_heads(k, H);
  if (!padding_.empty()) {  // fk [B, H, N, D']: zero the padded keys
    const int64_t B = fk.size(0), N = fk.size(2);
    fk = fk * padding_mask(padding_, B, N, fk.dtype(), fk.device()).reshape({B, 1, N, 1});
  }
  return attend(fq, fk, split_heads(v, H));
}

Tensor FeatureMapAttention::padded_sublayer(const Tensor& x, const std::vector<int64_t>& lengths) {
  padding_ = lengths;
  try {
    Tensor y = sublayer(x);
    padding_.clear();
    return y;
  } catch (...) {
    padding_.clear();
    throw;
  }
}

LinearAttention::LinearAttention(const AttentionConfig& config, Generator& gen)
    : LinearAttention(
          config, gen,
          [&](Generator&) {
            return make_feature_map(config.params.as<LinearParams>().feature_map);
          },
          config.params.as<LinearParams>().eps) {}

LinearAttention::LinearAttention(
    const AttentionConfig& config, Generator& gen,
    const std::function<std::shared_ptr<FeatureMap>(Generator&)>& make_map, double eps)
    : FeatureMapAttention(config, gen, make_map), eps_(eps) {}

Tensor LinearAttention::attend(const Tensor& fq, const Tensor& fk, const Tensor& v) const {
  return config_.causal ? causal_linear_attention(fq, fk, v, eps_)
                        : linear_attention(fq, fk, v, eps_);
}

std::vector<Attention::StateSlot> LinearAttention::state_layout(int64_t batch) const {
  const int64_t H = config_.heads, D = config_.resolved_head_dim();
  const int64_t F = feature_width_;
  return {{"s", {batch, H, F, D}}, {"z", {batch, H, F}}};
}

Tensor LinearAttention::mix_step(const Tensor& q, const Tensor& k, const Tensor& v,
                                 AttentionState& state) {
  return linear_attention_step(feature_map->forward(q), feature_map->forward(k), v,
                               state.tensors[0], state.tensors[1], eps_);
}

MomentumAttention::MomentumAttention(const AttentionConfig& config, Generator& gen)
    : FeatureMapAttention(config, gen,
                          [&](Generator&) {
                            return make_feature_map(config.params.as<MomentumParams>().feature_map);
                          }),
      params_(config.params.as<MomentumParams>()) {}

Tensor MomentumAttention::attend(const Tensor& fq, const Tensor& fk, const Tensor& v) const {
  const MomentumParams& p = params_;
  return config_.causal ? causal_momentum_attention(fq, fk, v, p.beta, p.gamma, p.eps,
                                                    parse_momentum_weighting(p.weighting))
                        : momentum_attention(fq, fk, v, p.beta, p.gamma, p.eps, padding_);
}

std::vector<Attention::StateSlot> MomentumAttention::state_layout(int64_t batch) const {
  const int64_t H = config_.heads, D = config_.resolved_head_dim();
  const int64_t F = feature_width_;
  return {{"m", {batch, H, F, D}}, {"s", {batch, H, F, D}}, {"z", {batch, H, F}}};
}

void MomentumAttention::check_recurrent(const char* fn) const {
  Attention::check_recurrent(fn);
  POLYAK_CHECK(params_.weighting == "exact", fn, ": weighting = '", params_.weighting,
               "' has no recurrent form (it disagrees with eq. 12 at every position but the "
               "last), expected 'exact'");
}

Tensor MomentumAttention::mix_step(const Tensor& q, const Tensor& k, const Tensor& v,
                                   AttentionState& state) {
  return momentum_attention_step(feature_map->forward(q), feature_map->forward(k), v,
                                 state.tensors[0], state.tensors[1], state.tensors[2], params_.beta,
                                 params_.gamma, params_.eps);
}

// ---- parameters and specs --------------------------------------------------------------

const ParamSchema& SoftmaxParams::schema() {
  static const ParamSchema s = make_schema<SoftmaxParams>("softmax attention", {});
  return s;
}

const ParamSchema& LinearParams::schema() {
  static const ParamSchema s = make_schema<LinearParams>(
      "linear attention", {feature_map_field<LinearParams>(), eps_field<LinearParams>()});
  return s;
}

const ParamSchema& MomentumParams::schema() {
  using P = MomentumParams;
  static const ParamSchema s = make_schema<P>(
      "momentum attention",
      {feature_map_field<P>(), eps_field<P>(),
       param(&P::beta, "beta", "--beta", "momentum attention's β in [0, 1)",
             number_in(0, 1, "[0, 1)")),
       param(&P::gamma, "gamma", "--gamma", "momentum attention's step size γ > 0",
             positive_number()),
       param(&P::weighting, "weighting", "--weighting",
             "momentum attention's training weights: exact (eq. 13) | reference (the public "
             "code's)",
             one_of({"exact", "reference"}))});
  return s;
}

const AttentionSpec& softmax_attention_spec() {
  static const AttentionSpec spec = [] {
    AttentionSpec s;
    s.name = "softmax";
    s.summary = "softmax(q kᵀ / √D) v, docs/math.md §1";
    s.params = &SoftmaxParams::schema();
    s.make = [](const AttentionConfig& c, Generator& g) {
      return std::make_shared<SoftmaxAttention>(c, g);
    };
    s.flops = [](const AttentionConfig& c, int64_t n) {
      const double h = static_cast<double>(c.heads);
      const double dh = static_cast<double>(c.resolved_head_dim());
      return projection_flops(c) + h * 4 * dh * keys_seen(c, static_cast<double>(n));
    };
    s.parameters = projection_parameters;
    s.kept_bytes = [](const AttentionConfig& c, int64_t n) {
      return static_cast<double>(c.heads) * static_cast<double>(n) * static_cast<double>(n) * 4;
    };
    return s;
  }();
  return spec;
}

const AttentionSpec& linear_attention_spec() {
  static const AttentionSpec spec = [] {
    AttentionSpec s;
    s.name = "linear";
    s.summary = "φ(q)ᵀ S / φ(q)ᵀ z, docs/math.md §2";
    s.params = &LinearParams::schema();
    s.make = [](const AttentionConfig& c, Generator& g) {
      return std::make_shared<LinearAttention>(c, g);
    };
    s.flops = [](const AttentionConfig& c, int64_t) {
      return projection_flops(c) + linear_mix_flops(c);
    };
    s.parameters = projection_parameters;
    s.kept_bytes = [](const AttentionConfig&, int64_t) { return 0.0; };
    return s;
  }();
  return spec;
}

const AttentionSpec& momentum_attention_spec() {
  static const AttentionSpec spec = [] {
    AttentionSpec s;
    s.name = "momentum";
    s.summary = "linear attention with heavy-ball momentum, docs/math.md §3";
    s.params = &MomentumParams::schema();
    s.make = [](const AttentionConfig& c, Generator& g) {
      return std::make_shared<MomentumAttention>(c, g);
    };
    s.flops = [](const AttentionConfig& c, int64_t) {
      // A decayed numerator beside the plain one.
      const double h = static_cast<double>(c.heads);
      const double dh = static_cast<double>(c.resolved_head_dim());
      return projection_flops(c) + linear_mix_flops(c) + h * 4 * dh * dh;
    };
    s.parameters = projection_parameters;
    s.kept_bytes = [](const AttentionConfig&, int64_t) { return 0.0; };
    return s;
  }();
  return spec;
}

}  // namespace polyak
