// The memory check of a training run, before anything is built (models/memory.h).
#pragma once

#include <optional>

#include "cli/options.h"
#include "polyak/core/tensor.h"

namespace polyak::cli {

// "8G", "512MiB", "1.5T", "4096" (bytes); K, M, G and T count in powers of 1024, with or
// without "iB" or "B". Throws polyak::Error naming `flag` for anything else.
double parse_bytes(const char* flag, const std::string& text);

// --max-memory as bytes (empty when not given).
std::optional<double> max_memory_bytes(const TrainOptions& options);

// Refuses a run whose estimated memory (weights, gradients, RAdam's moments and one batch's
// activations) passes --max-memory or what `device` has available, with an error naming the
// flags that size it, the estimate and the way out.
void check_training_memory(const TrainOptions& options, const TransformerConfig& config,
                           Device device);

}  // namespace polyak::cli
