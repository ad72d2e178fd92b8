#include "cli/training_checkpoint.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "polyak/core/error.h"
#include "polyak/core/safetensors.h"
#include "polyak/models/checkpoint.h"

namespace polyak::cli {
namespace {

// 2: the metrics rows are the tensor train.rows. 1 (still read): they were CSV text in the
// metadata, which a header's 100 MB limit cut off after about a million steps.
constexpr const char* kFormat = "training-checkpoint/2";
constexpr const char* kFormatV1 = "training-checkpoint/1";
constexpr int64_t kRowColumns = 8;

// The rows as f64 [rows, 8] (every digit, so that a resumed run writes the same
// metrics.csv): step, loss, accuracy, lr, seconds, train_seconds, test_accuracy,
// test_reference_accuracy.
Tensor rows_tensor(const std::vector<StepRecord>& rows) {
  Tensor t = Tensor::empty({static_cast<int64_t>(rows.size()), kRowColumns}, DType::f64);
  double* out = t.data<double>();
  for (const StepRecord& r : rows) {
    for (const double v : {static_cast<double>(r.step), r.loss, r.accuracy, r.lr, r.seconds,
                           r.train_seconds, r.test_accuracy, r.test_reference_accuracy})
      *out++ = v;
  }
  return t;
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  fail("polyak train --resume: ", path, ": ", what);
}

std::vector<StepRecord> rows_of_tensor(const Tensor& t, const std::string& path) {
  if (t.dtype() != DType::f64 || t.dim() != 2 || t.size(1) != kRowColumns)
    bad(path, detail::concat("tensor 'train.rows' is ", t.dtype(), " ", t.shape(),
                             ", expected f64 [steps, ", kRowColumns, "]"));
  std::vector<StepRecord> rows(static_cast<size_t>(t.size(0)));
  const double* in = t.data<double>();
  for (StepRecord& r : rows) {
    if (in[0] != std::floor(in[0]) || in[0] < 1)
      bad(path, detail::concat("tensor 'train.rows' holds step ", in[0], ", expected a step ≥ 1"));
    r.step = static_cast<int64_t>(in[0]);
    r.loss = in[1];
    r.accuracy = in[2];
    r.lr = in[3];
    r.seconds = in[4];
    r.train_seconds = in[5];
    r.test_accuracy = in[6];
    r.test_reference_accuracy = in[7];
    in += kRowColumns;
  }
  return rows;
}

// Format 1's rows: CSV text in the metadata.
std::vector<StepRecord> parse_rows(const std::string& text, const std::string& path) {
  std::vector<StepRecord> rows;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    StepRecord r;
    long long step = 0;
    const int n = std::sscanf(line.c_str(), "%lld,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &step, &r.loss,
                              &r.accuracy, &r.lr, &r.seconds, &r.train_seconds, &r.test_accuracy,
                              &r.test_reference_accuracy);
    if (n != 8) bad(path, "metadata train.rows has a malformed row '" + line + "'");
    r.step = step;
    rows.push_back(r);
  }
  return rows;
}

const std::string& meta(const SafetensorsFile& file, const std::string& key,
                        const std::string& path) {
  const auto it = file.metadata.find(key);
  if (it == file.metadata.end()) bad(path, "the metadata has no \"" + key + "\"");
  return it->second;
}

nlohmann::json meta_json(const SafetensorsFile& file, const std::string& key,
                         const std::string& path) {
  try {
    return nlohmann::json::parse(meta(file, key, path));
  } catch (const nlohmann::json::exception& e) {
    bad(path, "metadata " + key + " is not JSON (" + e.what() + ")");
  }
}

int64_t meta_int(const SafetensorsFile& file, const std::string& key, const std::string& path) {
  const nlohmann::json j = meta_json(file, key, path);
  if (!j.is_number_integer() || j.get<int64_t>() < 0)
    bad(path, "metadata " + key + " is " + j.dump() + ", expected an integer ≥ 0");
  return j.get<int64_t>();
}

double meta_double(const SafetensorsFile& file, const std::string& key, const std::string& path) {
  const nlohmann::json j = meta_json(file, key, path);
  if (!j.is_number()) bad(path, "metadata " + key + " is " + j.dump() + ", expected a number");
  return j.get<double>();
}

// A JSON object's integer member `name`, ≥ 0.
uint64_t member(const nlohmann::json& object, const std::string& key, const std::string& name,
                const std::string& path) {
  if (!object.is_object() || !object.contains(name))
    bad(path, "metadata " + key + " has no entry \"" + name + "\" (the model has one)");
  const nlohmann::json& v = object.at(name);
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    bad(path,
        "metadata " + key + "[\"" + name + "\"] is " + v.dump() + ", expected an integer ≥ 0");
  return v.get<uint64_t>();
}

SafetensorsFile open_checkpoint(const std::string& path, const char* command) {
  SafetensorsFile file = load_safetensors(path);
  const auto format = file.metadata.find("polyak.format");
  POLYAK_CHECK(
      format != file.metadata.end() && (format->second == kFormat || format->second == kFormatV1),
      command, ": ", path, " is not a training checkpoint (polyak.format is \"",
      format == file.metadata.end() ? "" : format->second, "\", expected \"", kFormat, "\")");
  return file;
}

}  // namespace

void save_training_checkpoint(const std::string& path, TransformerLM& model, const Optimizer& opt,
                              const TrainingProgress& progress, const std::string& options_json) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, t] : model.state_dict()) tensors.emplace_back("model." + name, t.cpu());
  nlohmann::json steps = nlohmann::json::array();
  for (size_t i = 0; i < opt.num_parameters(); ++i) {
    for (const std::string& state : opt.state_names())
      tensors.emplace_back("optim." + std::to_string(i) + "." + state, opt.state(i, state).cpu());
    steps.push_back(opt.parameter_step(i));
  }
  nlohmann::json rng = nlohmann::json::object();
  for (const auto& [name, gen] : model.named_generators())
    rng[name] = {{"seed", gen->seed()}, {"offset", gen->offset()}};
  rng["data.train"] = {{"offset", progress.train_data}};
  rng["data.test"] = {{"offset", progress.test_data}};
  nlohmann::json counters = nlohmann::json::object();
  for (const auto& [name, value] : model.named_counters()) counters[name] = *value;

  tensors.emplace_back("train.rows", rows_tensor(progress.rows));
  std::map<std::string, std::string> metadata = {
      {"polyak.format", kFormat},
      {"polyak.config", config_to_json(model.config())},
      {"train.options", options_json},
      {"train.step", std::to_string(progress.step)},
      {"train.seconds", nlohmann::json(progress.seconds).dump()},
      {"train.eval_seconds", nlohmann::json(progress.eval_seconds).dump()},
      {"optim.name", opt.name()},
      {"optim.step_count", std::to_string(opt.step_count())},
      {"optim.parameter_steps", steps.dump()},
      {"rng", rng.dump()},
      {"counters", counters.dump()}};
  save_safetensors(path, tensors, metadata);
}

std::string training_checkpoint_options(const std::string& path, const char* command) {
  const SafetensorsFile file = open_checkpoint(path, command);
  return meta(file, "train.options", path);
}

TrainingProgress load_training_checkpoint(const std::string& path, TransformerLM& model,
                                          Optimizer& opt) {
  const SafetensorsFile file = open_checkpoint(path, "polyak train --resume");
  if (meta(file, "polyak.config", path) != config_to_json(model.config()))
    bad(path, "the checkpoint's model config differs from the one its options describe");
  if (meta(file, "optim.name", path) != opt.name())
    bad(path, "the optimizer is " + meta(file, "optim.name", path) + ", expected " + opt.name());

  NamedTensors state;
  std::set<std::string> used;
  for (const auto& [name, t] : file.tensors) {
    check_finite_tensor("polyak train --resume", path, name, t);
    if (name.rfind("model.", 0) == 0) {
      state.emplace_back(name.substr(6), t);
      used.insert(name);
    }
  }
  const Tensor* rows = nullptr;
  if (file.metadata.at("polyak.format") == kFormat) {
    for (const auto& [name, t] : file.tensors)
      if (name == "train.rows") rows = &t;
    if (!rows) bad(path, "the tensor 'train.rows' (the metrics rows) is missing");
    used.insert("train.rows");
  }
  model.load_state_dict(state);

  const nlohmann::json steps = meta_json(file, "optim.parameter_steps", path);
  if (!steps.is_array() || steps.size() != opt.num_parameters())
    bad(path, "metadata optim.parameter_steps is not a list of " +
                  std::to_string(opt.num_parameters()) + " step counts");
  for (size_t i = 0; i < opt.num_parameters(); ++i) {
    for (const std::string& name : opt.state_names()) {
      const std::string key = "optim." + std::to_string(i) + "." + name;
      const Tensor* found = nullptr;
      for (const auto& [n, t] : file.tensors)
        if (n == key) found = &t;
      if (!found) bad(path, "the optimizer state '" + key + "' is missing");
      Tensor slot = opt.state(i, name);
      if (found->shape() != slot.shape() || found->dtype() != slot.dtype())
        bad(path, detail::concat("the optimizer state '", key, "' is ", found->dtype(), " ",
                                 found->shape(), ", expected ", slot.dtype(), " ", slot.shape()));
      slot.copy_(*found);
      used.insert(key);
    }
    if (!steps[i].is_number_integer() || steps[i].get<int64_t>() < 0)
      bad(path, "metadata optim.parameter_steps[" + std::to_string(i) + "] is " + steps[i].dump() +
                    ", expected an integer ≥ 0");
    opt.set_parameter_step(i, steps[i].get<int64_t>());
  }
  for (const auto& [name, t] : file.tensors)
    if (!used.contains(name)) bad(path, "tensor '" + name + "' belongs to no part of the run");
  opt.set_step_count(meta_int(file, "optim.step_count", path));

  const nlohmann::json rng = meta_json(file, "rng", path);
  for (const auto& [name, gen] : model.named_generators()) {
    const uint64_t seed =
        member(rng.contains(name) ? rng[name] : nlohmann::json(), "rng", "seed", path);
    if (seed != gen->seed())
      bad(path, "generator " + name + " has seed " + std::to_string(seed) + ", expected " +
                    std::to_string(gen->seed()) + " (the model's)");
    gen->set_offset(member(rng[name], "rng", "offset", path));
  }
  const nlohmann::json counters = meta_json(file, "counters", path);
  for (const auto& [name, value] : model.named_counters())
    *value = static_cast<int64_t>(member(counters, "counters", name, path));

  TrainingProgress p;
  p.step = meta_int(file, "train.step", path);
  p.seconds = meta_double(file, "train.seconds", path);
  p.eval_seconds = meta_double(file, "train.eval_seconds", path);
  p.rows = rows ? rows_of_tensor(*rows, path) : parse_rows(meta(file, "train.rows", path), path);
  if (static_cast<int64_t>(p.rows.size()) != p.step)
    bad(path, "train.rows has " + std::to_string(p.rows.size()) + " rows, expected " +
                  std::to_string(p.step) + " (one a step)");
  p.train_data = member(rng.contains("data.train") ? rng["data.train"] : nlohmann::json(), "rng",
                        "offset", path);
  p.test_data = member(rng.contains("data.test") ? rng["data.test"] : nlohmann::json(), "rng",
                       "offset", path);
  return p;
}

}  // namespace polyak::cli
