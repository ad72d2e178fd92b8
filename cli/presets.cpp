// The presets of the polyak program (cli/presets.h): the copy task's, the pixel and text
// tasks', and the LRA code's encoder for the classification tasks.
#include "cli/presets.h"

#include <algorithm>

#include "cli/tasks.h"
#include "polyak/core/error.h"

namespace polyak::cli {
namespace {

// What a preset sets; flags given on the command line override it. Every preset trains the
// linear kind unless --model says otherwise. A preset belongs to a task ("lra": to each of
// the classification tasks); its length 0 is the task's own (784 pixels, 2000 ListOps
// tokens, …).
struct Preset {
  const char* name;
  const char* task;
  int64_t steps, batch, length, layers, heads, d_model, ff;
  double dropout, lr;
  int64_t decay_step, eval_every, eval_batches;
  // TransNormer's DiagAttention block and Mega-chunk's chunk. With a block ≥ L DiagAttention
  // would be full causal softmax and Mega-chunk plain Mega: neither the kind it claims to be.
  int64_t block_size;
};

const Preset kPresets[] = {
    // A small linear transformer that reaches ≥ 99% word accuracy in under a minute on 2
    // quiet cores (L = 32, words of 8 to 14 symbols); blocks of 16, two per sequence.
    {"default", "copy", 4000, 32, 32, 2, 4, 64, 256, 0.0, 1e-3, 0, 500, 8, 16},
    // The paper's copy-task configuration (Katharopoulos et al. 2020; momentum transformer
    // §4); TransNormer's own block of 64, two per sequence.
    {"paper", "copy", 10000, 64, 128, 4, 8, 256, 1024, 0.1, 1e-3, 3000, 500, 8, 64},
    // The paper's Figure 1 scaled down so that `polyak compare` trains a kind in about a
    // minute on 2 quiet cores (Mega, Mega-chunk and Performer about 1.5×; all nine kinds in
    // about 11 minutes): L = 64 (words of 16 to 30 symbols), the paper's optimiser and
    // schedule shape; blocks of 16, four per sequence (Mega, not chunked, attends over
    // max_len = L). Change the comparison's size here.
    {"figure1", "copy", 3000, 32, 64, 2, 4, 64, 256, 0.0, 1e-3, 0, 100, 4, 16},
    // Pixel-by-pixel Fashion-MNIST scaled to 2 cores: 2 layers, d 64,
    // 16 images (12544 pixels) a step.
    {"pixels", "pixels", 2000, 16, 0, 2, 4, 64, 256, 0.0, 1e-3, 0, 250, 8, 16},
    // The paper's MNIST configuration (momentum transformer §4.2): 8 layers, 8 heads of 32,
    // ff 1024, RAdam at 1e-4; 250 epochs of 60000 images at batch 16.
    {"pixels-paper", "pixels", 937500, 16, 0, 8, 8, 256, 1024, 0.1, 1e-4, 0, 3750, 32, 64},
    // Byte-level language modelling of a text file on 2 cores: windows of 128 bytes.
    {"text", "text", 3000, 32, 128, 2, 4, 128, 512, 0.1, 1e-3, 0, 250, 16, 16},
    // The LRA code's small encoder (2 layers, d 64, 2 heads of 32, ff 128, dropout 0.1) with
    // its training per task (batch, steps, warmup: lra_schedules() below) at lr 1e-4.
    {"lra", "lra", 0, 0, 0, 2, 2, 64, 128, 0.1, 1e-4, 0, 0, 0, 64},
    // The same encoder trained briefly enough for 2 cores: 750 steps of 32 sequences (4 to 9
    // minutes for a linear kind on 1 thread), lr 1e-3 with a warmup of 75 steps.
    {"lra-cpu", "lra", 750, 32, 0, 2, 2, 64, 128, 0.1, 1e-3, 0, 250, 8, 16},
};

// The LRA code's training of each classification task (lra_config.py of the paper's code):
// batch, steps, linear warmup and evaluation interval, at lr 1e-4 with a linear decay.
struct LraSchedule {
  const char* task;
  int64_t batch, steps, warmup, eval_every;
};
const LraSchedule kLraSchedules[] = {{"listops", 32, 5000, 1000, 50},
                                     {"image", 256, 35000, 175, 175},
                                     {"pathfinder", 256, 62400, 312, 312}};

// The paper's momentum settings per task (Table 1): β and γ of momentum attention, β̃ and γ̃
// of the connections. The copy task's are the kinds' own defaults.
struct TaskKindDefaults {
  const char* task;
  double beta, gamma, conn_beta, conn_gamma;
};
const TaskKindDefaults kTaskKindDefaults[] = {
    {"pixels", 0.6, 0.9, 0.1, 0.99},
    {"listops", 0.1, 0.6, 0.99, 0.4},
    {"image", 0.9, 0.9, 0.99, 0.001},
    {"pathfinder", 0.3, 0.1, 0.99, 0.8},
};

// Whether `preset` belongs to `task`.
bool preset_fits(const char* preset_task, const std::string& task) {
  return preset_task == task || (std::string(preset_task) == "lra" && is_classification_task(task));
}

}  // namespace

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> all;
    for (const Preset& p : kPresets) all.emplace_back(p.name);
    return all;
  }();
  return names;
}

void check_preset_task(const std::string& preset, const std::string& task) {
  for (const Preset& p : kPresets)
    POLYAK_CHECK(preset != p.name || preset_fits(p.task, task), "polyak: --preset ", preset,
                 " is a preset of the ", p.task, " task", std::string(p.task) == "lra" ? "s" : "",
                 ", expected one for --task ", task, " (", default_preset(task), ", …)");
}

// The positions of a task's sequences, where its data fixes them (0: the preset's).
int64_t task_length(const std::string& task) {
  if (task == "pixels" || task == "image") return 784;
  if (task == "listops") return 2000;
  if (task == "pathfinder") return 1024;
  return 0;
}

// The preset a task trains with when --preset is not given.
std::string default_preset(const std::string& task) {
  if (task == "pixels") return "pixels";
  if (task == "text") return "text";
  if (is_classification_task(task)) return "lra-cpu";
  return "default";
}

TrainOptions preset_values(const std::string& preset, const std::string& task) {
  const Preset* p = &kPresets[0];
  for (const Preset& candidate : kPresets)
    if (preset == candidate.name) p = &candidate;
  TrainOptions o;
  o.task = task;
  o.preset = preset;
  o.model = "linear";
  o.steps = p->steps;
  o.batch = p->batch;
  o.length = p->length > 0 ? p->length : task_length(task);
  o.layers = p->layers;
  o.heads = p->heads;
  o.d_model = p->d_model;
  o.ff = p->ff;
  o.dropout = p->dropout;
  o.lr = p->lr;
  o.decay_step = p->decay_step;
  o.eval_every = p->eval_every;
  o.eval_batches = p->eval_batches;
  o.kind_flags["--block-size"] = p->block_size;
  if (std::string(p->task) == "lra") o.warmup = std::max<int64_t>(1, o.steps / 10);
  for (const LraSchedule& l : kLraSchedules)
    if (std::string(p->name) == "lra" && task == l.task) {
      o.batch = l.batch;
      o.steps = l.steps;
      o.warmup = l.warmup;
      o.eval_every = l.eval_every;
      o.eval_batches = 8;
    }
  for (const TaskKindDefaults& d : kTaskKindDefaults)
    if (task == d.task) {
      o.kind_flags["--beta"] = d.beta;
      o.kind_flags["--gamma"] = d.gamma;
      o.kind_flags["--conn-beta"] = d.conn_beta;
      o.kind_flags["--conn-gamma"] = d.conn_gamma;
    }
  return o;
}

}  // namespace polyak::cli
