// The presets of `polyak train` and the commands that share its flags: what each sets, the
// task it belongs to, and each task's own defaults (its sequence length, the paper's
// momentum settings). Flags given on the command line override a preset.
#pragma once

#include <cstdint>
#include <string>

#include "cli/options.h"

namespace polyak::cli {

// The options `preset` sets for `task` (its length 0 becomes the task's own; the LRA code's
// schedule per task for "lra"; the paper's β, γ, β̃, γ̃ of the task as kind flags).
TrainOptions preset_values(const std::string& preset, const std::string& task);
// Throws polyak::Error unless `preset` is one of `task`'s presets.
void check_preset_task(const std::string& preset, const std::string& task);
// The preset a task trains with when --preset is not given.
std::string default_preset(const std::string& task);
// The positions of a task's sequences where its data fixes them (0: the preset's).
int64_t task_length(const std::string& task);

}  // namespace polyak::cli
