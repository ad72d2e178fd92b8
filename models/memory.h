// What a model needs in memory, estimated from its config before anything is built, so that
// a size that cannot fit is refused with the flags that asked for it instead of growing
// towards the out-of-memory killer.
//
//   parameters   the kinds' own counts (AttentionSpec::parameters), the embedding, learned
//                positions, norms, feed-forwards and the head: exact (tested against the
//                built model)
//   training     f32 weights and buffers (AttentionSpec::buffers: Performer's Ω), their
//                gradients and the optimizer's moments, plus what one batch's backward
//                keeps: per token and layer a multiple of d, the heads' width and the
//                feed-forward's, the kind's extra_activations and kept attention weights
//                (kept_bytes), and the logits (calibrated against the allocator's peak;
//                docs/design.md "Training runs that survive")
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "polyak/core/tensor.h"
#include "polyak/models/transformer.h"

namespace polyak {

struct MemoryEstimate {
  double parameters = 0;        // trainable elements
  double weight_bytes = 0;      // parameters and buffers
  double gradient_bytes = 0;    // one gradient per parameter
  double optimizer_bytes = 0;   // the optimizer's state per parameter
  double activation_bytes = 0;  // the peak of one forward and backward
  double total() const {
    return weight_bytes + gradient_bytes + optimizer_bytes + activation_bytes;
  }
};

// Trainable elements of the model `config` describes (config validated by the caller).
double parameter_count(const TransformerConfig& config);

// Training `config` on batches of `batch` sequences of `length` tokens with an optimizer
// that keeps `optimizer_states` tensors per parameter (Adam and RAdam 2, SGD with momentum
// 1), in f32.
MemoryEstimate estimate_training_memory(const TransformerConfig& config, int64_t batch,
                                        int64_t length, int optimizer_states = 2);

// "1.5 GiB", "312.0 MiB", "4.0 KiB", "12 bytes".
std::string format_bytes(double bytes);

// Throws polyak::Error naming `fn`, the estimate's parts and `flags` (the settings that
// size it, "--layers 4 --d-model 256 …") when `estimate` needs more than `limit` bytes, or
// more than available_memory(device) when `limit` is empty; `override_hint` says how to
// proceed anyway ("--max-memory BYTES"). Nothing when neither figure is known.
void check_memory(const char* fn, const MemoryEstimate& estimate, Device device,
                  std::optional<double> limit, const std::string& flags,
                  const std::string& override_hint);

}  // namespace polyak
