// The kinds: one spec per attention kind and per connection, each declared next to its
// module, and the one table that lists them (nn/kinds.cpp). Everything that varies by kind
// is read from here: the parameters (core/params.h: their flags, checks, help and checkpoint
// fields), the factory, the forms a kind has, and its cost (FLOPs and the memory its backward
// keeps). Adding a kind is its module, its spec and one line in the table.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "polyak/core/params.h"
#include "polyak/core/rng.h"
#include "polyak/nn/attention.h"
#include "polyak/nn/transformer_layer.h"

namespace polyak {

// The forms of docs/design.md §"three forms": parallel causal, parallel non-causal, and the
// recurrent step (which needs the causal form).
struct AttentionForms {
  bool causal = true;
  bool non_causal = true;
  bool recurrent = true;
};

struct AttentionSpec {
  std::string name;     // the kind, as configs and --model name it
  std::string summary;  // one line: what it computes (docs/math.md section)
  const ParamSchema* params = nullptr;
  AttentionForms forms;
  // Whether the kind is a model kind of its own (with a residual connection): false for
  // the pieces of a stack kind (TransNormer's diag and norm).
  bool model_kind = true;
  // Builds the module from a validated config whose params hold this kind's struct.
  std::function<std::shared_ptr<Attention>(const AttentionConfig&, Generator&)> make;
  // Stack kinds (set instead of `make`): the config of layer `index` of `layers`.
  std::function<AttentionConfig(const AttentionConfig&, int64_t index, int64_t layers)> per_layer;
  // Rules across fields beyond each field's own (Mega needs max_len); may be empty. Throws
  // polyak::Error naming `fn` and the field.
  std::function<void(const char* fn, const AttentionConfig&)> check;
  // Forward FLOPs per token of the whole block (projections included) for sequences of n
  // positions; for stack kinds, of each layer's own kind.
  std::function<double(const AttentionConfig&, int64_t n)> flops;
  // Bytes (f32, one sequence of n positions) that the mixing keeps for the backward beyond
  // q, k, v and its output: the attention weights of the softmax kinds; 0 for the linear ones.
  std::function<double(const AttentionConfig&, int64_t n)> kept_bytes;
  // Trainable elements of the whole block (projections included), known before it is built
  // (models/memory.h estimates from them); unset for stack kinds, whose layers' kinds count.
  std::function<double(const AttentionConfig&)> parameters;
  // f32 elements per token that the block's backward keeps beyond those of the standard
  // block (models/memory.h), and the elements of its buffers; unset: none. Mega's gates,
  // Performer's random features and its Ω.
  std::function<double(const AttentionConfig&)> extra_activations;
  std::function<double(const AttentionConfig&)> buffers;
};

struct ConnectionSpec {
  std::string name;
  std::string summary;
  const ParamSchema* params = nullptr;
  std::function<std::shared_ptr<Connection>(const ConnectionConfig&)> make;
  // Model kinds that pair this connection with an attention kind: (model kind, attention).
  std::vector<std::pair<std::string, std::string>> model_kinds;
};

// Every attention kind and every connection, in the order of the table.
const std::vector<const AttentionSpec*>& attention_specs();
const std::vector<const ConnectionSpec*>& connection_specs();
// The spec of `kind`; an unknown kind is a polyak::Error naming `fn` and `field` and listing
// the valid ones.
const AttentionSpec& attention_spec(const std::string& kind, const char* fn = "attention_spec",
                                    const char* field = "kind");
const ConnectionSpec& connection_spec(const std::string& kind, const char* fn = "connection_spec",
                                      const char* field = "kind");

// Throws polyak::Error naming `fn` and `field` (the config's field that names the kind)
// unless `spec` has the form `causal` asks for.
void check_form(const AttentionSpec& spec, bool causal, const char* fn, const char* field);

// The command-line flags of the kinds' fields, each flag once (the first field that declares
// it), in the order of the tables: attention kinds, then connections. Fields of several kinds
// may share a flag (--block-size: DiagAttention's block and Mega-chunk's chunk).
std::vector<const ParamField*> kind_flag_fields();
// Every field, of any kind, that `flag` sets.
std::vector<const ParamField*> fields_of_flag(const std::string& flag);
// Sets each field of `params` (which must not be empty) whose flag is a key of `by_flag`.
void apply_flags(Params& params, const std::map<std::string, ParamValue>& by_flag);

// `params` when it holds `schema`'s struct, its defaults when empty; another struct is a
// polyak::Error naming `fn`, the kind and both structs.
Params resolve_params(const Params& params, const ParamSchema& schema, const char* fn,
                      const std::string& kind);

// Fields that several kinds' parameter structs share, one flag each.
template <class P>
ParamField feature_map_field() {
  return param(&P::feature_map, "feature_map", "--feature-map",
               "φ of the linear kinds: elu (elu + 1) | plain-elu (elu alone)",
               one_of(feature_map_kinds()));
}
template <class P>
ParamField eps_field() {
  return param(&P::eps, "eps", "--attention-eps", "ε added to the linear kinds' normaliser φ(q)·z",
               positive_number());
}
template <class P>
ParamField block_size_field() {
  return param(&P::block_size, "block_size", "--block-size",
               "TransNormer's DiagAttention block and Mega-chunk's chunk (presets: 16, paper 64)",
               positive_integer());
}

// The FLOPs of the standard block's projections (q, k, v and the output), per token.
double projection_flops(const AttentionConfig& config);
// The standard block's projection parameters: the fused q, k, v weight and the output
// projection, with their biases.
double projection_parameters(const AttentionConfig& config);
// Linear attention's FLOPs per token beyond the projections: the state's update, the
// readout and the normaliser.
double linear_mix_flops(const AttentionConfig& config);
// Keys a query sees on average in a window of `window` positions: all, or half plus one
// when causal.
double keys_seen(const AttentionConfig& config, double window);

}  // namespace polyak
