// The options a training checkpoint stores, as JSON, and the flags a resumed run may change
// (cli/options.h).
#include <nlohmann/json.hpp>

#include "cli/options.h"
#include "polyak/core/error.h"
#include "polyak/core/json_parse.h"

namespace polyak::cli {

const std::vector<std::string>& resume_flags() {
  static const std::vector<std::string> flags = {
      "--steps", "--threads", "--device",    "--sync-every", "--save-every", "--keep-checkpoints",
      "--quiet", "--graph",   "--max-memory"};
  return flags;
}

std::string train_options_json(const TrainOptions& o) {
  nlohmann::json kind = nlohmann::json::object();
  for (const auto& [flag, value] : o.kind_flags)
    std::visit([&](const auto& v) { kind[flag] = v; }, value);
  const nlohmann::json j = {{"preset", o.preset},
                            {"model", o.model},
                            {"steps", o.steps},
                            {"batch", o.batch},
                            {"length", o.length},
                            {"layers", o.layers},
                            {"heads", o.heads},
                            {"d_model", o.d_model},
                            {"ff", o.ff},
                            {"dropout", o.dropout},
                            {"lr", o.lr},
                            {"decay_step", o.decay_step},
                            {"weight_decay", o.weight_decay},
                            {"clip", o.clip},
                            {"seed", o.seed},
                            {"threads", o.threads},
                            {"device", o.device},
                            {"precision", o.precision},
                            {"eval_every", o.eval_every},
                            {"sync_every", o.sync_every},
                            {"graph", o.graph},
                            {"eval_batches", o.eval_batches},
                            {"save_every", o.save_every},
                            {"keep_checkpoints", o.keep_checkpoints},
                            {"task", o.task},
                            {"data", o.data},
                            {"pixel_head", o.pixel_head},
                            {"difficulty", o.difficulty},
                            {"train_examples", o.train_examples},
                            {"test_examples", o.test_examples},
                            {"warmup", o.warmup},
                            {"kind_flags", kind}};
  return j.dump();
}

namespace {
// `optional`: a key added after checkpoints were written without it; missing, the field
// keeps its default (a copy-task run's options).
template <class T>
void read_field(const nlohmann::json& j, const char* key, T& out, const std::string& source,
                bool optional = false) {
  if (optional && !j.contains(key)) return;
  POLYAK_CHECK(j.contains(key), source, ": the options have no \"", key, "\"");
  const nlohmann::json& v = j.at(key);
  bool ok;
  if constexpr (std::is_same_v<T, bool>)
    ok = v.is_boolean();
  else if constexpr (std::is_same_v<T, std::string>)
    ok = v.is_string();
  else if constexpr (std::is_integral_v<T>)
    ok = v.is_number_integer() && (std::is_signed_v<T> || v.get<int64_t>() >= 0);
  else
    ok = v.is_number();
  POLYAK_CHECK(ok, source, ": option \"", key, "\" is ", v.dump(),
               ", expected a value of its type");
  out = v.get<T>();
}
}  // namespace

TrainOptions train_options_from_json(const std::string& text, const std::string& source) {
  detail::StrictJson parsed;
  try {
    parsed = detail::parse_strict_json(text);
  } catch (const nlohmann::json::exception& e) {
    fail(source, ": the options are not JSON (", e.what(), ")");
  }
  POLYAK_CHECK(!parsed.too_deep, source, ": the options nest arrays and objects more than ",
               detail::kMaxJsonNesting, " deep, expected 2 (the options, the kind flags)");
  POLYAK_CHECK(!parsed.duplicate, source, ": option \"",
               parsed.duplicate ? parsed.duplicate->first : "", "\" appears twice");
  const nlohmann::json& j = parsed.value;
  POLYAK_CHECK(j.is_object(), source, ": the options are ", j.type_name(), ", expected an object");
  TrainOptions o;
  read_field(j, "preset", o.preset, source);
  read_field(j, "model", o.model, source);
  read_field(j, "steps", o.steps, source);
  read_field(j, "batch", o.batch, source);
  read_field(j, "length", o.length, source);
  read_field(j, "layers", o.layers, source);
  read_field(j, "heads", o.heads, source);
  read_field(j, "d_model", o.d_model, source);
  read_field(j, "ff", o.ff, source);
  read_field(j, "dropout", o.dropout, source);
  read_field(j, "lr", o.lr, source);
  read_field(j, "decay_step", o.decay_step, source);
  read_field(j, "weight_decay", o.weight_decay, source);
  read_field(j, "clip", o.clip, source);
  read_field(j, "seed", o.seed, source);
  read_field(j, "threads", o.threads, source);
  read_field(j, "device", o.device, source);
  read_field(j, "precision", o.precision, source);
  read_field(j, "eval_every", o.eval_every, source);
  read_field(j, "sync_every", o.sync_every, source);
  read_field(j, "graph", o.graph, source);
  read_field(j, "eval_batches", o.eval_batches, source);
  read_field(j, "save_every", o.save_every, source);
  read_field(j, "keep_checkpoints", o.keep_checkpoints, source);
  read_field(j, "task", o.task, source, true);
  read_field(j, "data", o.data, source, true);
  read_field(j, "pixel_head", o.pixel_head, source, true);
  read_field(j, "difficulty", o.difficulty, source, true);
  read_field(j, "train_examples", o.train_examples, source, true);
  read_field(j, "test_examples", o.test_examples, source, true);
  read_field(j, "warmup", o.warmup, source, true);
  POLYAK_CHECK(j.contains("kind_flags") && j["kind_flags"].is_object(), source,
               ": the options have no object \"kind_flags\"");
  for (const auto& [flag, v] : j["kind_flags"].items()) {
    if (v.is_number_integer())
      o.kind_flags[flag] = v.get<int64_t>();
    else if (v.is_number())
      o.kind_flags[flag] = v.get<double>();
    else if (v.is_string())
      o.kind_flags[flag] = v.get<std::string>();
    else
      fail(source, ": kind flag \"", flag, "\" is ", v.dump(), ", expected a number or a string");
  }
  return o;
}

}  // namespace polyak::cli
