// Multi-head self-attention, one module per kind behind one interface.
//
// Dimension legend: B batch, N sequence length, d model width, H heads, D head dim.
//
//   x [B,N,d] ─qkv_proj→ q, k, v [B,N,H·D] ─split_heads→ [B,H,N,D]
//             ─mix (the kind)→ [B,H,N,D] ─merge_heads→ [B,N,H·D] ─out_proj→ dropout → [B,N,d]
//
// qkv_proj is one fused [3·H·D, d] weight (rows of q, then k, then v).
//
// Everything but `mix` is shared. A kind is one small class that overrides mix() (softmax:
// docs/math.md §1; linear: §2; momentum: §3 is plain causal linear attention minus β times a
// decayed one, so it is one more mix()), its parameter struct and its spec, one entry in the
// table of nn/kinds.cpp.
// Kinds whose block is not "project, mix, project" (Mega's gated EMA attention) override
// sublayer(), the block before its closing dropout, instead. sublayer() hands the projections to
// mix_projections(), which splits them and calls mix(); the feature-map kinds (FeatureMapAttention)
// override it to map q and k straight into the heads' layout (one pass instead of a split and a
// map). The recurrent form for generation fits the same split: a kind adds its per-layer state
// (state_layout) and a mix_step() that mixes one position against it; step() projects through the
// same qkv_proj, out_proj and dropout as forward(), where one position's [B,1,H·D] is [B,H,D] by a
// free reshape.
//
//   x [B,1,d] ─qkv_proj→ q, k, v [B,H,D] ─mix_step (the kind, state)→ [B,H,D]
//             ─reshape→ [B,1,H·D] ─out_proj→ dropout → [B,1,d]
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "polyak/core/params.h"
#include "polyak/core/rng.h"
#include "polyak/nn/dropout.h"
#include "polyak/nn/linear.h"
#include "polyak/nn/module.h"

namespace polyak {

struct AttentionSpec;  // nn/kinds.h

struct AttentionConfig {
  std::string kind = "softmax";  // one of attention_kinds()
  int64_t d_model = 64;
  int64_t heads = 4;
  int64_t head_dim = 0;  // 0: d_model / heads (which must then divide)
  bool causal = true;
  double dropout = 0.0;  // on the block's output, after out_proj
  // The longest sequence the module must handle: Linformer's projections (E, F have this
  // many columns) and Mega's relative position bias (without chunks) are sized by it.
  // 0: unbounded, which those two kinds refuse.
  int64_t max_len = 0;
  // The kind's own settings: its parameter struct (MomentumParams, …; nn/kinds.h lists
  // which kind has which). Empty: the kind's defaults.
  Params params;

  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : d_model / heads; }
  // Throws polyak::Error naming the field, the value and what was expected: the shared
  // fields, then the kind's own (its params' fields and its rules).
  void validate() const;
};

// Softmax attention has no settings of its own.
struct SoftmaxParams {
  static const ParamSchema& schema();
};

// Linear attention (docs/math.md §2): the feature map φ and the normaliser's ε.
struct LinearParams {
  std::string feature_map = "elu";  // one of feature_map_kinds()
  double eps = 1e-6;                // added to the normaliser φ(q)·z
  static const ParamSchema& schema();
};

// Momentum attention (docs/math.md §3): linear attention's settings, β, γ (the paper's
// copy-task values) and the weighting its parallel form trains with.
struct MomentumParams {
  std::string feature_map = "elu";
  double eps = 1e-6;
  double beta = 0.1;                // β ∈ [0, 1)
  double gamma = 0.6;               // γ > 0
  std::string weighting = "exact";  // "exact" (eq. 13) | "reference" (the public code's)
  static const ParamSchema& schema();
};

// ---- feature maps (linear kinds) -------------------------------------------------------

// φ applied to q and k, [B,H,N,D] → [B,H,N,D']. A module so that maps with parameters or
// buffers (FAVOR+'s random features) fit the same slot.
class FeatureMap : public Module {
 public:
  virtual Tensor forward(const Tensor& x) const = 0;
  Tensor operator()(const Tensor& x) const { return forward(x); }
  // forward(split_heads(x, heads)) for x [B, N, H·D] → [B, H, N, D']; a map may do both
  // in one pass.
  virtual Tensor forward_heads(const Tensor& x, int64_t heads) const;
  // Called by the owning attention once per forward in training mode, before it maps q
  // and k: FAVOR+ counts these to redraw its features on a schedule.
  virtual void advance() {}
  // D', the width of φ(x) for x of width `head_dim` (D for elu, m for FAVOR+): the width
  // of a recurrent state's key axis.
  int64_t output_width(int64_t head_dim) const;
};

// φ(x) = elu(x) + 1 (Katharopoulos et al. 2020).
class EluFeatureMap final : public FeatureMap {
 public:
  Tensor forward(const Tensor& x) const override;
  Tensor forward_heads(const Tensor& x, int64_t heads) const override;  // one pass
};

// φ(x) = elu(x), which may be negative: TransNormer's "t1" NormAttention (which has no
// denominator to keep positive).
class PlainEluFeatureMap final : public FeatureMap {
 public:
  Tensor forward(const Tensor& x) const override;
};

// "elu" (elu + 1), "plain-elu" (elu alone: TransNormer's "t1"). Performer's FAVOR+ map
// (nn/performer.h) is its own kind's.
const std::vector<std::string>& feature_map_kinds();
// The map `kind` names; an unknown kind is a polyak::Error listing the valid ones.
std::shared_ptr<FeatureMap> make_feature_map(const std::string& kind);

// ---- the recurrent state ---------------------------------------------------------------

// What one layer's attention keeps between recurrent steps (generation). Its size does not
// grow with the position for the linear kinds; softmax keeps a KV cache.
struct AttentionState {
  std::string kind;      // the attention kind that made it
  int64_t batch = 0;     // B
  int64_t position = 0;  // positions consumed so far
  // Kind-specific, each [B, H, ...]:
  //   linear   {s [B,H,D,Dv], z [B,H,D]}
  //   momentum {m [B,H,D,Dv], s [B,H,D,Dv], z [B,H,D]}
  //   softmax  {k_cache [B,H,C,D], v_cache [B,H,C,Dv]} (C: capacity ≥ position)
  std::vector<Tensor> tensors;
};

// ---- gradient inspection ---------------------------------------------------------------

// The L2 norms of the gradients that reached a module's attention inputs and output in
// the last backward (TransNormer §3's question: does the attention's scaling make them
// large?). q, k, v are the projections' outputs (before any feature map), out the mixed
// output before out_proj. `backwards` counts the backward passes that reported.
struct AttentionGradNorms {
  double q = 0, k = 0, v = 0, out = 0;
  int64_t backwards = 0;
};

// ---- padded batches --------------------------------------------------------------------

// Checks the right padding `lengths` of a batch of B rows of N positions — empty, or B
// entries in [1, N] — and returns whether any row is padded (some n < N). A mismatch is a
// polyak::Error naming `fn`.
bool is_padded(const char* fn, const std::vector<int64_t>& lengths, int64_t B, int64_t N);
// [B, N]: 1 at the real positions (t < lengths[b]) and 0 at the padding, in `dtype` on
// `device`. Empty lengths: all ones.
Tensor padding_mask(const std::vector<int64_t>& lengths, int64_t B, int64_t N, DType dtype,
                    Device device);

// ---- the interface ---------------------------------------------------------------------

class Attention : public Module {
 public:
  Attention(const AttentionConfig& config, Generator& gen);

  // x [B, N, d] → [B, N, d]: dropout(sublayer(x)).
  Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }
  // residual + forward(x), the closing dropout and the sum in one pass (a residual
  // connection's join).
  Tensor forward_residual(const Tensor& residual, const Tensor& x);
  // The same on a right-padded batch: row b of x holds lengths[b] real positions
  // (1 ≤ n ≤ N) and then padding; empty lengths mean none. A causal block needs no mask (a
  // real position never sees the padding after it). A non-causal block computes at each real
  // position what it computes on the row's real positions alone — momentum's eq. 14 with n
  // the true length, softmax over the real keys, Mega's EMA run backwards from the last real
  // position. Outputs at padding positions are finite and unspecified. Lengths that do not
  // fit x are a polyak::Error.
  Tensor forward(const Tensor& x, const std::vector<int64_t>& lengths);
  Tensor forward_residual(const Tensor& residual, const Tensor& x,
                          const std::vector<int64_t>& lengths);

  const AttentionConfig& config() const { return config_; }

  // ---- gradient inspection ----
  // While on, every forward() hooks q, k, v and the mixed output (probe()) so that the
  // next backward records their gradients' norms. Off (the default) costs nothing.
  void inspect_gradients(bool on) { inspect_ = on; }
  const AttentionGradNorms& gradient_norms() const { return grad_norms_; }

  // ---- recurrent form (causal kinds only) ----
  // A fresh state for `batch` sequences, in this module's dtype. Throws polyak::Error for a
  // non-causal module or a kind without a recurrent form.
  virtual AttentionState initial_state(int64_t batch) const;
  // The positions the recurrent form can step through from a fresh state (0: no limit):
  // whole-sequence Mega's relative bias covers max_len.
  virtual int64_t step_limit() const { return 0; }
  // x [B, 1, d], the next position of each sequence → [B, 1, d]; updates `state`. Equals
  // row `state.position` of forward() on the whole prefix (tested). Runs without recording
  // a graph. A state made by another kind, batch size, width or dtype is a polyak::Error.
  // Kinds whose block is not "project, mix, project" override it (calling check_step).
  virtual Tensor step(const Tensor& x, AttentionState& state);

  std::shared_ptr<Linear> qkv_proj;  // weight [3·H·D, d]: rows of q, then k, then v
  std::shared_ptr<Linear> out_proj;  // weight [d, H·D]
  std::shared_ptr<Dropout> dropout;

 protected:
  // Kinds that build their own block (Mega) pass projections = false: no qkv_proj and no
  // out_proj are made (both stay null); they override sublayer() and step().
  Attention(const AttentionConfig& config, Generator& gen, bool projections);

  // Everything step() checks before it mixes: recurrent module, x [B, 1, d], and a state
  // that initial_state(B) of this module could have made, advanced. Throws polyak::Error
  // naming `fn`. Returns B.
  int64_t check_step(const char* fn, const Tensor& x, const AttentionState& state) const;

  // The block before its closing dropout, x [B, N, d] → [B, N, d]: project, mix, project.
  // Kinds whose block is another (Mega, TransNormer's NormAttention) override it.
  virtual Tensor sublayer(const Tensor& x);
  // sublayer() on a padded batch of a non-causal block (lengths not all N; see forward()).
  // This one runs sublayer() on each row's real positions and pads its output with zeros:
  // exact for every kind by construction, and for softmax cheaper than a masked N × N. Kinds
  // that can mask the padded keys inside one batched call override it (the feature-map kinds).
  virtual Tensor padded_sublayer(const Tensor& x, const std::vector<int64_t>& lengths);
  // The kind: q, k, v [B, H, N, D] → [B, H, N, D].
  virtual Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v) = 0;
  // What forward() calls: q, k, v [B, N, H·D] as the projections make them → [B, H, N, D].
  // Splits them into heads and calls mix(); FeatureMapAttention folds the split of q and k
  // into the feature map's pass.
  virtual Tensor mix_projections(const Tensor& q, const Tensor& k, const Tensor& v);
  // The kind's recurrent step: q, k, v [B, H, D] (one position) → [B, H, D]. `state` has
  // been checked against initial_state's layout.
  virtual Tensor mix_step(const Tensor& q, const Tensor& k, const Tensor& v, AttentionState& state);

  // One tensor of a kind's recurrent state: its name (for messages) and its extents; −1
  // marks an axis of any extent ≥ the state's position (the softmax cache's capacity).
  struct StateSlot {
    const char* name;
    std::vector<int64_t> extents;
  };
  // The kind's state for `batch` sequences; empty when the kind has no recurrent form.
  virtual std::vector<StateSlot> state_layout(int64_t batch) const;
  // Throws polyak::Error (naming `fn`) unless this module can run recurrently: causal, and
  // whatever the kind adds.
  virtual void check_recurrent(const char* fn) const;

  // Every forward() calls this on its q, k, v ("q", "k", "v") and its mixed output
  // ("out") when inspection is on: registers a hook that stores the gradient's norm.
  // Returns `t`. Kinds that override sublayer() call it too.
  const Tensor& probe(const char* which, const Tensor& t);

  // q (0), k (1) or v (2): x [B, N, d] → [B, N, H·D] through its rows of qkv_proj. Shared
  // by forward() and step(), so that both project through the same GEMMs.
  Tensor project(const Tensor& x, int64_t which) const;

  AttentionConfig config_;

 private:
  bool inspect_ = false;
  AttentionGradNorms grad_norms_;
};

// softmax(q kᵀ / √D [+ causal mask]) v — docs/math.md §1.
class SoftmaxAttention final : public Attention {
 public:
  SoftmaxAttention(const AttentionConfig& config, Generator& gen);

 protected:
  Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v) override;
  Tensor mix_step(const Tensor& q, const Tensor& k, const Tensor& v,
                  AttentionState& state) override;
  std::vector<StateSlot> state_layout(int64_t batch) const override;
};

// The kinds that mix φ(q), φ(k) through a feature map (linear, momentum, Performer): the
// map, the width D' it produces, and the two ways in, which share attend().
class FeatureMapAttention : public Attention {
 public:
  std::shared_ptr<FeatureMap> feature_map;

 protected:
  // `make_map` builds φ after the projections, from the same generator.
  FeatureMapAttention(const AttentionConfig& config, Generator& gen,
                      const std::function<std::shared_ptr<FeatureMap>(Generator&)>& make_map);
  // attend(φ(q), φ(k), v) on q, k, v [B, H, N, D].
  Tensor mix(const Tensor& q, const Tensor& k, const Tensor& v) override;
  // One batched call: φ(k) is zeroed at the padded keys, which then add nothing to the
  // state or the normaliser, and attend() sees the lengths in padding_.
  Tensor padded_sublayer(const Tensor& x, const std::vector<int64_t>& lengths) override;
  // The same from the projections [B, N, H·D]: φ maps q and k straight into the heads'
  // layout (FeatureMap::forward_heads).
  Tensor mix_projections(const Tensor& q, const Tensor& k, const Tensor& v) override;
  // The kind on φ(q), φ(k) [B, H, N, D'] and v [B, H, N, D].
  virtual Tensor attend(const Tensor& fq, const Tensor& fk, const Tensor& v) const = 0;

  int64_t feature_width_ = 0;  // D': the width of φ(q), φ(k), the state's key axis
  // The lengths of the padded batch padded_sublayer() is mixing; empty otherwise.
  std::vector<int64_t> padding_;
};

// φ(q)ᵀ S / (φ(q)ᵀ z + eps), causal or not — docs/math.md §2.
class LinearAttention final : public FeatureMapAttention {
 public:
  // config.params: LinearParams.
  LinearAttention(const AttentionConfig& config, Generator& gen);
  // Another feature map (Performer's FAVOR+) and ε.
  LinearAttention(const AttentionConfig& config, Generator& gen,
                  const std::function<std::shared_ptr<FeatureMap>(Generator&)>& make_map,
                  double eps);

 protected:
  Tensor attend(const Tensor& fq, const Tensor& fk, const Tensor& v) const override;
  Tensor mix_step(const Tensor& q, const Tensor& k, const Tensor& v,
                  AttentionState& state) override;
  std::vector<StateSlot> state_layout(int64_t batch) const override;

 private:
  double eps_;
};

// Momentum attention, causal (eq. 12–13) or not (eq. 14), on φ(q), φ(k) — docs/math.md §3.
// The recurrent form is eq. 12, which only the "exact" weighting computes in parallel: a
// module with the "reference" weighting has no recurrent form (initial_state throws).
class MomentumAttention final : public FeatureMapAttention {
 public:
  MomentumAttention(const AttentionConfig& config, Generator& gen);  // params: MomentumParams

 protected:
  Tensor attend(const Tensor& fq, const Tensor& fk, const Tensor& v) const override;
  Tensor mix_step(const Tensor& q, const Tensor& k, const Tensor& v,
                  AttentionState& state) override;
  std::vector<StateSlot> state_layout(int64_t batch) const override;
  void check_recurrent(const char* fn) const override;

 private:
  MomentumParams params_;
};

// The specs of the kinds above (nn/kinds.h).
const AttentionSpec& softmax_attention_spec();
const AttentionSpec& linear_attention_spec();
const AttentionSpec& momentum_attention_spec();

// The kinds make_attention() builds (every kind of nn/kinds.h's table but the stack kinds),
// in the table's order.
std::vector<std::string> attention_kinds();
// Validates `config` and builds its kind; an unknown kind is a polyak::Error listing the
// valid ones.
std::shared_ptr<Attention> make_attention(const AttentionConfig& config, Generator& gen);

}  // namespace polyak
