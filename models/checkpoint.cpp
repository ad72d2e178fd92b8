// Model checkpoints: TransformerConfig ⇄ JSON, and a TransformerLM ⇄ a safetensors file
// whose metadata carries the format tag and the config (see models/checkpoint.h).
#include "polyak/models/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <type_traits>
#include <variant>
#include <vector>

#include "polyak/core/json_parse.h"
#include "polyak/core/safetensors.h"
#include "polyak/models/memory.h"
#include "polyak/nn/kinds.h"

namespace polyak {
namespace {

using json = nlohmann::ordered_json;

constexpr const char* kFormatKey = "polyak.format";
constexpr const char* kConfigKey = "polyak.config";
constexpr const char* kFormat = "transformer-lm/2";
// The first format: every kind's settings as flat fields of the config (read, not written).
constexpr const char* kFormatV1 = "transformer-lm/1";
constexpr const char* kReservedPrefix = "polyak.";

// Every field of TransformerConfig, in declaration order: the one list that both
// directions of the JSON conversion read, so that they cannot disagree.
using Member = std::variant<int64_t TransformerConfig::*, uint64_t TransformerConfig::*,
                            double TransformerConfig::*, bool TransformerConfig::*,
                            std::string TransformerConfig::*>;
struct Field {
  const char* name;
  Member member;
  // Added after files were written without it: a missing key keeps the default.
  bool optional = false;
};

// The fields of both formats, in the order they are written; the kinds' settings follow as
// "attention_params" and "connection_params" (objects of their structs' fields).
const std::vector<Field>& config_fields() {
  using C = TransformerConfig;
  static const std::vector<Field> fields = {
      {"vocab", &C::vocab},
      {"max_len", &C::max_len},
      {"d_model", &C::d_model},
      {"heads", &C::heads},
      {"head_dim", &C::head_dim},
      {"ff_dim", &C::ff_dim},
      {"layers", &C::layers},
      {"dropout", &C::dropout},
      {"attention", &C::attention},
      {"causal", &C::causal},
      {"pre_norm", &C::pre_norm},
      {"positions", &C::positions},
      {"activation", &C::activation},
      {"norm", &C::norm},
      {"final_norm", &C::final_norm},
      {"connection", &C::connection},
      {"norm_eps", &C::norm_eps},
      {"seed", &C::seed},
      {"head", &C::head, true},
      {"classes", &C::classes, true},
      {"pooling", &C::pooling, true},
      {"head_hidden", &C::head_hidden, true},
      {"mixtures", &C::mixtures, true},
      {"output_vocab", &C::output_vocab, true},
  };
  return fields;
}

// The first format's flat fields of the kinds' settings: which params (attention or
// connection) and which of their fields each one was. A kind reads the ones it has; the
// others were written for every kind and are dropped. Frozen: new kinds never add here.
struct LegacyField {
  const char* key;
  bool attention;     // attention_params, else connection_params
  const char* field;  // the struct's field
  ParamValue like;    // a value of its type
};
const std::vector<LegacyField>& legacy_fields() {
  static const std::vector<LegacyField> fields = {
      {"feature_map", true, "feature_map", std::string()},
      {"attention_eps", true, "eps", 0.0},
      {"momentum_beta", true, "beta", 0.0},
      {"momentum_gamma", true, "gamma", 0.0},
      {"momentum_weighting", true, "weighting", std::string()},
      {"connection_beta", false, "beta", 0.0},
      {"connection_gamma", false, "gamma", 0.0},
      {"connection_delta", false, "delta", 0.0},
      {"connection_eps", false, "eps", 0.0},
      {"connection_denominator", false, "denominator", std::string()},
      {"block_size", true, "block_size", int64_t{0}},
      {"performer_features", true, "features", int64_t{0}},
      {"performer_redraw", true, "redraw", int64_t{0}},
      {"linformer_k", true, "k", int64_t{0}},
      {"mega_ema_dim", true, "ema_dim", int64_t{0}},
      {"mega_z_dim", true, "z_dim", int64_t{0}},
      {"mega_v_dim", true, "v_dim", int64_t{0}},
      {"mega_attention", true, "attention", std::string()},
  };
  return fields;
}

constexpr const char* kParamsKeys[] = {"attention_params", "connection_params"};

std::vector<std::string> known_keys(bool legacy) {
  std::vector<std::string> keys;
  for (const Field& f : config_fields()) keys.emplace_back(f.name);
  if (legacy)
    for (const LegacyField& f : legacy_fields()) keys.emplace_back(f.key);
  else
    keys.insert(keys.end(), std::begin(kParamsKeys), std::end(kParamsKeys));
  return keys;
}

std::string comma_list(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

json params_to_json(const Params& params) {
  json j = json::object();
  for (const ParamField& f : params.schema()->fields) {
    const ParamValue v = params.get(f.name);
    if (const auto* d = std::get_if<double>(&v))
      POLYAK_CHECK(std::isfinite(*d), "config_to_json: ", f.name, " = ", *d,
                   ", expected a finite number (JSON has no inf or nan)");
    std::visit([&](const auto& value) { j[f.name] = value; }, v);
  }
  return j;
}

// A JSON value as a ParamValue of `like`'s type, or a polyak::Error naming `source` and `key`.
ParamValue param_from_json(const json& value, const ParamValue& like, const std::string& source,
                           const std::string& key) {
  const char* fn = "config_from_json";
  auto wrong = [&](const char* expected) {
    fail(fn, ": ", source, ": '", key, "' is ", value.dump(), " (a JSON ", value.type_name(),
         "), expected ", expected);
  };
  if (std::holds_alternative<int64_t>(like)) {
    if (!value.is_number_integer() ||
        (value.is_number_unsigned() &&
         value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())))
      wrong("an integer");
    return value.get<int64_t>();
  }
  if (std::holds_alternative<double>(like)) {
    if (!value.is_number()) wrong("a number");
    return value.get<double>();
  }
  if (!value.is_string()) wrong("a string");
  return value.get<std::string>();
}

// `j`'s fields into `params` (holding the kind's defaults): unknown fields are an error; a
// missing one keeps its default (a field added to a kind after the file was written).
void params_from_json(Params& params, const json& j, const std::string& source, const char* key) {
  const char* fn = "config_from_json";
  POLYAK_CHECK(j.is_object(), fn, ": ", source, ": '", key, "' is a JSON ", j.type_name(),
               ", expected an object of ", params.schema()->name, "'s settings");
  std::vector<std::string> names;
  for (const ParamField& f : params.schema()->fields) names.push_back(f.name);
  for (const auto& [field, value] : j.items()) {
    const ParamField* f = params.schema()->find(field);
    POLYAK_CHECK(f != nullptr, fn, ": ", source, ": '", key, "' has unknown field '", field,
                 "', expected only the fields of ", params.schema()->name, ": ",
                 names.empty() ? "(none)" : comma_list(names));
    params.set(field,
               param_from_json(value, f->default_value, source, std::string(key) + "." + field));
  }
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "'" : ", '") + s + "'";
  return out;
}

// Reads `value` into `config.*member`, or throws naming `source` and `key`.
template <class T>
void read_field(TransformerConfig& config, T TransformerConfig::*member, const json& value,
                const std::string& source, const char* key) {
  if constexpr (std::is_same_v<T, uint64_t> || std::is_same_v<T, bool>) {
    const bool ok = std::is_same_v<T, bool> ? value.is_boolean() : value.is_number_unsigned();
    POLYAK_CHECK(ok, "config_from_json: ", source, ": '", key, "' is ", value.dump(), " (a JSON ",
                 value.type_name(), "), expected ",
                 std::is_same_v<T, bool> ? "true or false" : "a non-negative integer");
    config.*member = value.get<T>();
  } else {
    // The types a kind's settings have too: one reader for both.
    config.*member = std::get<T>(param_from_json(value, ParamValue(T{}), source, key));
  }
}

// Parses `text`, throwing when a key repeats within one object or arrays and objects nest
// far deeper than a config's 2 (the config, a kind's settings): core/json_parse.h.
json parse_config(const std::string& text, const std::string& source) {
  const char* fn = "config_from_json";
  detail::StrictJson parsed;
  try {
    parsed = detail::parse_strict_json(text);
  } catch (const json::exception& e) {
    fail(fn, ": ", source, ": not valid JSON (", e.what(), ")");
  }
  POLYAK_CHECK(!parsed.too_deep, fn, ": ", source, ": arrays and objects nest more than ",
               detail::kMaxJsonNesting, " deep, expected 2 (the config, a kind's settings)");
  POLYAK_CHECK(parsed.value.is_object(), fn, ": ", source, ": the config is a JSON ",
               parsed.value.type_name(), ", expected an object");
  POLYAK_CHECK(!parsed.duplicate, fn, ": ", source, ": key '",
               parsed.duplicate ? parsed.duplicate->first : "", "' appears twice");
  return std::move(parsed.value);
}

}  // namespace

std::string config_to_json(const TransformerConfig& config) {
  const char* fn = "config_to_json";
  json j = json::object();
  for (const Field& f : config_fields()) {
    std::visit(
        [&](auto member) {
          const auto& value = config.*member;
          if constexpr (std::is_same_v<std::remove_cvref_t<decltype(value)>, double>)
            POLYAK_CHECK(std::isfinite(value), fn, ": ", f.name, " = ", value,
                         ", expected a finite number (JSON has no inf or nan)");
          j[f.name] = value;
        },
        f.member);
  }
  // Every field of the kinds' structs, defaults included, so that the file does not depend
  // on what a later version's defaults are.
  j["attention_params"] = params_to_json(resolve_params(
      config.attention_params, *attention_spec(config.attention, fn, "attention").params, fn,
      config.attention));
  j["connection_params"] = params_to_json(resolve_params(
      config.connection_params, *connection_spec(config.connection, fn, "connection").params, fn,
      config.connection));
  try {
    return j.dump();
  } catch (const json::exception& e) {
    fail(fn, ": a string field is not valid UTF-8 (", e.what(), ")");
  }
}

TransformerConfig config_from_json(const std::string& text, const std::string& source) {
  const char* fn = "config_from_json";
  json j = parse_config(text, source);
  // The first format had the kinds' settings as flat fields and no params objects.
  const bool legacy = !j.contains("attention_params") && !j.contains("connection_params");

  const std::vector<std::string> known = known_keys(legacy);
  std::vector<std::string> unknown, missing;
  for (const auto& [key, value] : j.items())
    if (std::find(known.begin(), known.end(), key) == known.end()) unknown.push_back(key);
  for (const std::string& key : known) {
    const auto field = std::find_if(config_fields().begin(), config_fields().end(),
                                    [&](const Field& f) { return key == f.name; });
    const bool optional = field != config_fields().end() && field->optional;
    if (!optional && !j.contains(key)) missing.push_back(key);
  }
  POLYAK_CHECK(unknown.empty(), fn, ": ", source, ": unknown key", unknown.size() > 1 ? "s " : " ",
               join(unknown), ", expected only: ", comma_list(known));
  POLYAK_CHECK(missing.empty(), fn, ": ", source, ": missing key", missing.size() > 1 ? "s " : " ",
               join(missing), " (a config lists every field)");

  TransformerConfig config;
  for (const Field& f : config_fields())
    if (j.contains(f.name))
      std::visit([&](auto member) { read_field(config, member, j[f.name], source, f.name); },
                 f.member);
  auto kind_params = [&](bool attention) {
    const std::string& kind = attention ? config.attention : config.connection;
    const char* field = attention ? "attention" : "connection";
    try {
      const ParamSchema& schema = attention
                                      ? *attention_spec(kind, "TransformerConfig", field).params
                                      : *connection_spec(kind, "TransformerConfig", field).params;
      return Params::defaults(schema);
    } catch (const Error& e) {
      fail(fn, ": ", source, ": ", e.what());
    }
  };
  config.attention_params = kind_params(true);
  config.connection_params = kind_params(false);
  if (legacy) {
    for (const LegacyField& f : legacy_fields()) {
      Params& params = f.attention ? config.attention_params : config.connection_params;
      if (!params.schema()->find(f.field)) continue;
      params.set(f.field, param_from_json(j[f.key], f.like, source, f.key));
    }
  } else {
    params_from_json(config.attention_params, j["attention_params"], source, "attention_params");
    params_from_json(config.connection_params, j["connection_params"], source, "connection_params");
  }
  try {
    config.validate();
  } catch (const Error& e) {
    fail(fn, ": ", source, ": ", e.what());
  }
  return config;
}

void save_model(const TransformerLM& model, const std::string& path,
                const std::map<std::string, std::string>& metadata) {
  const char* fn = "save_model";
  for (const auto& [key, value] : metadata)
    POLYAK_CHECK(key.rfind(kReservedPrefix, 0) != 0, fn, ": ", path, ": metadata key '", key,
                 "' starts with \"", kReservedPrefix,
                 "\", which checkpoints reserve for themselves");
  std::map<std::string, std::string> header = metadata;
  header[kFormatKey] = kFormat;
  header[kConfigKey] = config_to_json(model.config());

  NamedTensors tensors;
  for (const auto& [name, t] : model.state_dict()) {
    Tensor d = t.detach();
    tensors.emplace_back(name, d.device().is_cpu() ? d : d.cpu());
  }
  save_safetensors(path, tensors, header);
}

void check_finite_tensor(const char* fn, const std::string& path, const std::string& name,
                         const Tensor& t) {
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64) return;
  dispatch(t.dtype(), [&]<class T>() {
    const T* x = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i)
      POLYAK_CHECK(std::isfinite(x[i]), fn, ": ", path, ": tensor '", name, "' holds ",
                   static_cast<double>(x[i]), " at element ", i,
                   ", expected finite values (the file is damaged, or was written from a run "
                   "that diverged)");
  });
}

std::shared_ptr<TransformerLM> load_model(const std::string& path,
                                          std::map<std::string, std::string>* metadata) {
  const char* fn = "load_model";
  SafetensorsFile file = load_safetensors(path);

  auto format = file.metadata.find(kFormatKey);
  POLYAK_CHECK(format != file.metadata.end(), fn, ": ", path,
               ": not a polyak checkpoint (the safetensors metadata has no \"", kFormatKey,
               "\", expected \"", kFormat, "\")");
  POLYAK_CHECK(format->second == kFormat || format->second == kFormatV1, fn, ": ", path,
               ": checkpoint format \"", format->second, "\" is not supported, expected \"",
               kFormat, "\" (or the older \"", kFormatV1, "\")");
  auto config_text = file.metadata.find(kConfigKey);
  POLYAK_CHECK(config_text != file.metadata.end(), fn, ": ", path, ": the metadata has no \"",
               kConfigKey, "\" (the model's config)");
  TransformerConfig config =
      config_from_json(config_text->second, path + " (metadata " + kConfigKey + ")");

  // One dtype for the whole file: the model is converted to it before loading.
  std::optional<DType> dtype;
  for (const auto& [name, t] : file.tensors) {
    check_finite_tensor(fn, path, name, t);
    if (!dtype) dtype = t.dtype();
    POLYAK_CHECK(t.dtype() == *dtype, fn, ": ", path, ": tensor '", name, "' is ", t.dtype(),
                 " but '", file.tensors.front().first, "' is ", *dtype,
                 ", expected one dtype for the whole model");
  }

  // The model's memory before anything is built: a config that describes a model bigger
  // than the machine ("layers": 1000000 in a file of a few KB) is refused here, where
  // building it would run out of memory first; a smaller mismatch is named tensor by tensor
  // below.
  double held = 0;
  for (const auto& [name, t] : file.tensors) held += static_cast<double>(t.numel());
  MemoryEstimate weights;
  weights.parameters = parameter_count(config);
  weights.weight_bytes = weights.parameters * static_cast<double>(dtype ? itemsize(*dtype) : 4);
  check_memory(fn, weights, Device::cpu(), std::nullopt,
               detail::concat(path, ": its config (layers = ", config.layers, ", d_model = ",
                              config.d_model, ", ff_dim = ", config.resolved_ff_dim(),
                              ", vocab = ", config.vocab, ", max_len = ", config.max_len,
                              ", where the file holds ", held, " tensor elements)"),
               "check that the file is the checkpoint you meant");

  auto model = std::make_shared<TransformerLM>(config);
  std::map<std::string, const Tensor*> given;
  for (const auto& [name, t] : file.tensors) given.emplace(name, &t);
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (const auto& [name, t] : model->state_dict()) {
    expected.insert(name);
    auto it = given.find(name);
    if (it == given.end())
      problems.push_back("missing tensor '" + name + "'");
    else if (it->second->shape() != t.shape())
      problems.push_back(detail::concat("tensor '", name, "' has shape ", it->second->shape(),
                                        ", expected ", t.shape()));
  }
  for (const auto& [name, t] : file.tensors)
    if (!expected.count(name)) problems.push_back("unexpected tensor '" + name + "'");
  if (!problems.empty()) {
    std::string list;
    for (size_t i = 0; i < problems.size(); ++i) list += (i ? "; " : "") + problems[i];
    fail(fn, ": ", path, ": the tensors do not match the model that its config describes: ", list);
  }

  if (dtype && *dtype != model->dtype()) model->to(*dtype);
  model->load_state_dict(file.tensors);
  if (metadata) {
    metadata->clear();
    for (const auto& [key, value] : file.metadata)
      if (key.rfind(kReservedPrefix, 0) != 0) metadata->emplace(key, value);
  }
  return model;
}

}  // namespace polyak
