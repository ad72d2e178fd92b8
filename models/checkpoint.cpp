// Model checkpoints: TransformerConfig ⇄ JSON, and a TransformerLM ⇄ a safetensors file
// whose metadata carries the format tag and the config (see models/checkpoint.h).
#include "polyak/models/checkpoint.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <type_traits>
#include <variant>
#include <vector>

#include "polyak/core/safetensors.h"

namespace polyak {
namespace {

using json = nlohmann::ordered_json;

constexpr const char* kFormatKey = "polyak.format";
constexpr const char* kConfigKey = "polyak.config";
constexpr const char* kFormat = "transformer-lm/1";
constexpr const char* kReservedPrefix = "polyak.";

// Every field of TransformerConfig, in declaration order: the one list that both
// directions of the JSON conversion read, so that they cannot disagree.
using Member = std::variant<int64_t TransformerConfig::*, uint64_t TransformerConfig::*,
                            double TransformerConfig::*, bool TransformerConfig::*,
                            std::string TransformerConfig::*>;
struct Field {
  const char* name;
  Member member;
};

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
      {"feature_map", &C::feature_map},
      {"attention_eps", &C::attention_eps},
      {"momentum_beta", &C::momentum_beta},
      {"momentum_gamma", &C::momentum_gamma},
      {"momentum_weighting", &C::momentum_weighting},
      {"connection_beta", &C::connection_beta},
      {"connection_gamma", &C::connection_gamma},
      {"connection_delta", &C::connection_delta},
      {"connection_eps", &C::connection_eps},
      {"connection_denominator", &C::connection_denominator},
      {"block_size", &C::block_size},
      {"performer_features", &C::performer_features},
      {"performer_redraw", &C::performer_redraw},
      {"linformer_k", &C::linformer_k},
      {"mega_ema_dim", &C::mega_ema_dim},
      {"mega_z_dim", &C::mega_z_dim},
      {"mega_v_dim", &C::mega_v_dim},
      {"mega_attention", &C::mega_attention},
      {"norm_eps", &C::norm_eps},
      {"seed", &C::seed},
  };
  return fields;
}

std::string field_names() {
  std::string out;
  for (const Field& f : config_fields()) out += (out.empty() ? "" : ", ") + std::string(f.name);
  return out;
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
  const char* fn = "config_from_json";
  auto wrong = [&](const char* expected) {
    fail(fn, ": ", source, ": '", key, "' is ", value.dump(), " (a JSON ", value.type_name(),
         "), expected ", expected);
  };
  if constexpr (std::is_same_v<T, int64_t>) {
    if (!value.is_number_integer() ||
        (value.is_number_unsigned() &&
         value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())))
      wrong("an integer");
    config.*member = value.get<int64_t>();
  } else if constexpr (std::is_same_v<T, uint64_t>) {
    if (!value.is_number_unsigned()) wrong("a non-negative integer");
    config.*member = value.get<uint64_t>();
  } else if constexpr (std::is_same_v<T, double>) {
    if (!value.is_number()) wrong("a number");
    config.*member = value.get<double>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!value.is_boolean()) wrong("true or false");
    config.*member = value.get<bool>();
  } else {
    if (!value.is_string()) wrong("a string");
    config.*member = value.get<std::string>();
  }
}

// Parses `text`, throwing when a key repeats within one object (a JSON parser otherwise
// keeps one of the two values silently).
json parse_config(const std::string& text, const std::string& source) {
  const char* fn = "config_from_json";
  std::vector<std::set<std::string>> open_objects;
  std::optional<std::string> duplicate;
  json::parser_callback_t cb = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && !duplicate) duplicate = key;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, cb);
  } catch (const json::exception& e) {
    fail(fn, ": ", source, ": not valid JSON (", e.what(), ")");
  }
  POLYAK_CHECK(j.is_object(), fn, ": ", source, ": the config is a JSON ", j.type_name(),
               ", expected an object");
  POLYAK_CHECK(!duplicate, fn, ": ", source, ": key '", duplicate.value_or(""), "' appears twice");
  return j;
}

}  // namespace

std::string config_to_json(const TransformerConfig& config) {
  json j = json::object();
  for (const Field& f : config_fields()) {
    std::visit(
        [&](auto member) {
          const auto& value = config.*member;
          if constexpr (std::is_same_v<std::remove_cvref_t<decltype(value)>, double>)
            POLYAK_CHECK(std::isfinite(value), "config_to_json: ", f.name, " = ", value,
                         ", expected a finite number (JSON has no inf or nan)");
          j[f.name] = value;
        },
        f.member);
  }
  try {
    return j.dump();
  } catch (const json::exception& e) {
    fail("config_to_json: a string field is not valid UTF-8 (", e.what(), ")");
  }
}

TransformerConfig config_from_json(const std::string& text, const std::string& source) {
  const char* fn = "config_from_json";
  json j = parse_config(text, source);

  std::set<std::string> known;
  for (const Field& f : config_fields()) known.insert(f.name);
  std::vector<std::string> unknown, missing;
  for (const auto& [key, value] : j.items())
    if (!known.count(key)) unknown.push_back(key);
  for (const Field& f : config_fields())
    if (!j.contains(f.name)) missing.push_back(f.name);
  POLYAK_CHECK(unknown.empty(), fn, ": ", source, ": unknown key", unknown.size() > 1 ? "s " : " ",
               join(unknown), ", expected only: ", field_names());
  POLYAK_CHECK(missing.empty(), fn, ": ", source, ": missing key", missing.size() > 1 ? "s " : " ",
               join(missing), " (a config lists every field)");

  TransformerConfig config;
  for (const Field& f : config_fields())
    std::visit([&](auto member) { read_field(config, member, j[f.name], source, f.name); },
               f.member);
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

std::shared_ptr<TransformerLM> load_model(const std::string& path,
                                          std::map<std::string, std::string>* metadata) {
  const char* fn = "load_model";
  SafetensorsFile file = load_safetensors(path);

  auto format = file.metadata.find(kFormatKey);
  POLYAK_CHECK(format != file.metadata.end(), fn, ": ", path,
               ": not a polyak checkpoint (the safetensors metadata has no \"", kFormatKey,
               "\", expected \"", kFormat, "\")");
  POLYAK_CHECK(format->second == kFormat, fn, ": ", path, ": checkpoint format \"", format->second,
               "\" is not supported, expected \"", kFormat, "\"");
  auto config_text = file.metadata.find(kConfigKey);
  POLYAK_CHECK(config_text != file.metadata.end(), fn, ": ", path, ": the metadata has no \"",
               kConfigKey, "\" (the model's config)");
  TransformerConfig config =
      config_from_json(config_text->second, path + " (metadata " + kConfigKey + ")");

  // One dtype for the whole file: the model is converted to it before loading.
  std::optional<DType> dtype;
  for (const auto& [name, t] : file.tensors) {
    if (!dtype) dtype = t.dtype();
    POLYAK_CHECK(t.dtype() == *dtype, fn, ": ", path, ": tensor '", name, "' is ", t.dtype(),
                 " but '", file.tensors.front().first, "' is ", *dtype,
                 ", expected one dtype for the whole model");
  }

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
