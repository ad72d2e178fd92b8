// Model checkpoints: a safetensors file holding the state dict, with the model's config as
// JSON in the header's metadata (key "polyak.config") and the format tag
// "polyak.format" = "transformer-lm/2", so that load_model rebuilds the model from the
// file alone. The file opens in Python with safetensors.torch.load_file as well.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "polyak/models/transformer.h"

namespace polyak {

// The config as a JSON object (every field), and back. Unknown keys, missing keys and
// values of the wrong type are polyak::Error naming `source` and the key; the result is
// validated.
std::string config_to_json(const TransformerConfig& config);
TransformerConfig config_from_json(const std::string& json, const std::string& source);

// Writes `model` (parameters and persistent buffers, f32 or f64 as they are) to `path`
// atomically: an interrupted save leaves any previous file intact. `metadata` adds string
// entries to the header (keys must not start with "polyak.").
void save_model(const TransformerLM& model, const std::string& path,
                const std::map<std::string, std::string>& metadata = {});

// Throws naming `fn`, `path` and tensor `name` when `t` (on the CPU) holds a NaN or an
// infinity: a checkpoint is written from finite weights, so one that holds another value is
// damaged, and a model built from it would only produce garbage.
void check_finite_tensor(const char* fn, const std::string& path, const std::string& name,
                         const Tensor& t);

// Builds the model the file's config describes (f32, or f64 when the file holds f64; on the
// CPU, in training mode) and loads its tensors. A missing, truncated or corrupt file, a file
// that is not a polyak checkpoint, tensors that do not match the config (every missing,
// unexpected or misshapen tensor is named) or a tensor with a non-finite value are a
// polyak::Error naming the path and what is wrong. `metadata`, when given, is replaced by the
// header's entries that do not start with "polyak.".
std::shared_ptr<TransformerLM> load_model(const std::string& path,
                                          std::map<std::string, std::string>* metadata = nullptr);

}  // namespace polyak
