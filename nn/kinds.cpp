// The table of kinds: one line per attention kind and per connection.
#include "polyak/nn/kinds.h"

#include "polyak/nn/linformer.h"
#include "polyak/nn/mega.h"
#include "polyak/nn/performer.h"
#include "polyak/nn/retention.h"
#include "polyak/nn/transnormer.h"

namespace polyak {

const std::vector<const AttentionSpec*>& attention_specs() {
  static const std::vector<const AttentionSpec*> specs = {
      &softmax_attention_spec(),   &linear_attention_spec(), &momentum_attention_spec(),
      &norm_attention_spec(),      &diag_attention_spec(),   &transnormer_spec(),
      &mega_attention_spec(),      &mega_chunk_spec(),       &performer_attention_spec(),
      &linformer_attention_spec(), &retention_spec(),
  };
  return specs;
}

const std::vector<const ConnectionSpec*>& connection_specs() {
  static const std::vector<const ConnectionSpec*> specs = {
      &residual_connection_spec(),
      &momentum_connection_spec(),
      &adaptive_connection_spec(),
  };
  return specs;
}

namespace {

template <class Spec>
const Spec& find_spec(const std::vector<const Spec*>& specs, const std::string& kind,
                      const char* fn, const char* field) {
  std::vector<std::string> names;
  for (const Spec* spec : specs) {
    if (spec->name == kind) return *spec;
    names.push_back(spec->name);
  }
  check_choice(fn, field, kind, names);
  fail(fn, ": ", field, " = '", kind, "' is not registered");  // unreachable
}

}  // namespace

const AttentionSpec& attention_spec(const std::string& kind, const char* fn, const char* field) {
  return find_spec(attention_specs(), kind, fn, field);
}

const ConnectionSpec& connection_spec(const std::string& kind, const char* fn, const char* field) {
  return find_spec(connection_specs(), kind, fn, field);
}

void check_form(const AttentionSpec& spec, bool causal, const char* fn, const char* field) {
  POLYAK_CHECK(!causal || spec.forms.causal, fn, ": ", field, " = '", spec.name,
               "' with causal = true: it has no causal form (", spec.summary,
               "), expected causal = false");
  POLYAK_CHECK(causal || spec.forms.non_causal, fn, ": ", field, " = '", spec.name,
               "' with causal = false: it has no non-causal form (", spec.summary,
               "), expected causal = true");
}

Params resolve_params(const Params& params, const ParamSchema& schema, const char* fn,
                      const std::string& kind) {
  if (params.empty()) return Params::defaults(schema);
  POLYAK_CHECK(params.schema()->type == schema.type, fn, ": kind = '", kind, "' with params of ",
               params.schema()->name, ", expected those of ", schema.name,
               " (or none: its defaults)");
  return params;
}

namespace {

// Every schema of the tables, attention kinds first.
std::vector<const ParamSchema*> all_schemas() {
  std::vector<const ParamSchema*> schemas;
  for (const AttentionSpec* spec : attention_specs()) schemas.push_back(spec->params);
  for (const ConnectionSpec* spec : connection_specs()) schemas.push_back(spec->params);
  return schemas;
}

}  // namespace

std::vector<const ParamField*> kind_flag_fields() {
  std::vector<const ParamField*> fields;
  for (const ParamSchema* schema : all_schemas())
    for (const ParamField& f : schema->fields) {
      bool seen = false;
      for (const ParamField* other : fields) seen = seen || other->flag == f.flag;
      if (!seen) fields.push_back(&f);
    }
  return fields;
}

std::vector<const ParamField*> fields_of_flag(const std::string& flag) {
  std::vector<const ParamField*> fields;
  for (const ParamSchema* schema : all_schemas())
    for (const ParamField& f : schema->fields)
      if (f.flag == flag) fields.push_back(&f);
  return fields;
}

void apply_flags(Params& params, const std::map<std::string, ParamValue>& by_flag) {
  for (const ParamField& f : params.schema()->fields) {
    auto it = by_flag.find(f.flag);
    if (it != by_flag.end()) params.set(f.name, it->second);
  }
}

double projection_flops(const AttentionConfig& c) {
  const double d = static_cast<double>(c.d_model);
  const double inner = static_cast<double>(c.heads * c.resolved_head_dim());
  return 2 * d * 3 * inner + 2 * inner * d;  // q, k, v, then the output projection
}

double projection_parameters(const AttentionConfig& c) {
  const double d = static_cast<double>(c.d_model);
  const double inner = static_cast<double>(c.heads * c.resolved_head_dim());
  return d * 3 * inner + 3 * inner + inner * d + d;
}

double linear_mix_flops(const AttentionConfig& c) {
  const double h = static_cast<double>(c.heads), dh = static_cast<double>(c.resolved_head_dim());
  return h * (2 * dh * dh + 2 * dh * dh + 4 * dh);
}

double keys_seen(const AttentionConfig& c, double window) {
  return c.causal ? (window + 1) / 2 : window;
}

std::vector<std::string> attention_kinds() {
  std::vector<std::string> kinds;
  for (const AttentionSpec* spec : attention_specs())
    if (spec->make) kinds.push_back(spec->name);
  return kinds;
}

std::shared_ptr<Attention> make_attention(const AttentionConfig& config, Generator& gen) {
  config.validate();
  const AttentionSpec& spec = attention_spec(config.kind, "make_attention");
  POLYAK_CHECK(
      spec.make, "make_attention: kind = '", config.kind,
      "' is a stack kind (its layers differ), expected one of: ",
      [] {
        std::string list;
        for (const std::string& k : attention_kinds()) list += (list.empty() ? "" : ", ") + k;
        return list;
      }(),
      " (TransformerConfig builds the stack kinds)");
  AttentionConfig resolved = config;
  resolved.params = resolve_params(config.params, *spec.params, "make_attention", config.kind);
  return spec.make(resolved, gen);
}

}  // namespace polyak
