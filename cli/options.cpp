#include "cli/options.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#include "cli/bench.h"
#include "cli/memory_check.h"
#include "cli/presets.h"
#include "cli/tasks.h"
#include "cli/training_checkpoint.h"
#include "polyak/core/error.h"
#include "polyak/data/copy_task.h"
#include "polyak/nn/kinds.h"

namespace polyak::cli {
namespace {

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const std::string& item : items) s += (s.empty() ? "" : ", ") + item;
  return s;
}

bool contains(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

void check_positive(const char* flag, int64_t value) {
  POLYAK_CHECK(value >= 1, "polyak: ", flag, " is ", value, ", expected an integer ≥ 1");
}

// --threads: 0 (every core) up to four threads per hardware thread; more only slows the
// kernels down and is most likely a typo.
void check_threads(int threads) {
  const int hardware = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int most = 4 * hardware;
  POLYAK_CHECK(threads >= 0 && threads <= most, "polyak: --threads is ", threads,
               ", expected 0 (every core) to ", most, " (4 × the ", hardware,
               " hardware threads here)");
}

// A validator for unsigned flags (--seed): CLI11 would wrap "-1" round to 2⁶⁴ − 1.
CLI::Validator non_negative(const char* flag) {
  return CLI::Validator(
      [flag](std::string& text) -> std::string {
        const size_t first = text.find_first_not_of(" \t");
        if (first != std::string::npos && text[first] == '-')
          return std::string("polyak: ") + flag + " is " + text + ", expected an integer ≥ 0";
        return "";
      },
      "INT ≥ 0");
}

// `where` begins the message: "--model is", "--kinds has".
void check_causal_kind(const std::string& where, const std::string& kind) {
  POLYAK_CHECK(contains(causal_model_kinds(), kind), "polyak: ", where, " '", kind,
               "', a non-causal kind, and the copy task is causal (each position predicts the "
               "next token from the ones before it), expected one of: ",
               join(causal_model_kinds()));
}

// The model's own checks: each kind flag against every field it sets (so that a bad value
// never waits for a switch of kind), then the config as a whole.
void validate_model(const TrainOptions& o) {
  for (const auto& [flag, value] : o.kind_flags)
    for (const ParamField* f : fields_of_flag(flag))
      POLYAK_CHECK(f->check.ok(value), "polyak: ", flag, " is ", format_param(value), ", expected ",
                   f->check.expected);
  try {
    o.model_config(CopyTask({.length = std::max<int64_t>(o.length, 4)}).vocab());
  } catch (const Error& e) {
    fail("polyak: ", e.what());
  }
}

void validate(const TrainOptions& o) {
  POLYAK_CHECK(contains(task_names(), o.task), "polyak: --task is '", o.task,
               "', expected one of: ", join(task_names()));
  POLYAK_CHECK(contains(model_kinds(), o.model), "polyak: --model is '", o.model,
               "', expected one of: ", join(model_kinds()));
  if (is_classification_task(o.task))
    POLYAK_CHECK(contains(task_model_kinds(o.task), o.model), "polyak: --model is '", o.model,
                 "', a kind without a non-causal form, and the ", o.task,
                 " task classifies whole sequences with an encoder (every position sees every "
                 "other), expected one of: ",
                 join(task_model_kinds(o.task)));
  else
    check_causal_kind("--model is", o.model);
  POLYAK_CHECK(contains({"mixture", "softmax"}, o.pixel_head), "polyak: --pixel-head is '",
               o.pixel_head, "', expected mixture or softmax");
  POLYAK_CHECK(contains({"easy", "intermediate", "hard"}, o.difficulty),
               "polyak: --difficulty is '", o.difficulty, "', expected easy, intermediate or hard");
  POLYAK_CHECK(o.train_examples >= 0, "polyak: --train-examples is ", o.train_examples,
               ", expected ≥ 0 (0: the whole split)");
  POLYAK_CHECK(o.test_examples >= 0, "polyak: --test-examples is ", o.test_examples,
               ", expected ≥ 0 (0: the whole split)");
  POLYAK_CHECK(o.warmup >= 0 && (o.warmup == 0 || o.warmup < o.steps), "polyak: --warmup-steps is ",
               o.warmup, ", expected ≥ 0 and below --steps = ", o.steps,
               " (0: no warmup, the copy task's schedule)");
  POLYAK_CHECK(!o.graph || o.task != "listops",
               "polyak: --graph with --task listops, expected a task whose batches have one "
               "shape (a graph replays one captured step; ListOps pads each batch to its "
               "longest expression)");
  check_positive("--steps", o.steps);
  check_positive("--batch", o.batch);
  check_positive("--length", o.length);
  check_positive("--layers", o.layers);
  check_positive("--heads", o.heads);
  check_positive("--d-model", o.d_model);
  check_positive("--ff", o.ff);
  check_positive("--eval-every", o.eval_every);
  check_positive("--eval-batches", o.eval_batches);
  POLYAK_CHECK(!o.graph || !parse_device(o.device, "polyak: --device").is_cpu(),
               "polyak: --graph with --device ", o.device,
               ", expected --device cuda or cuda:N (a graph captures a device's step; the CPU "
               "runs its steps directly)");
  POLYAK_CHECK(o.save_every >= 0, "polyak: --save-every is ", o.save_every,
               ", expected ≥ 0 (0: a checkpoint only at the end and when interrupted)");
  POLYAK_CHECK(o.keep_checkpoints >= 1, "polyak: --keep-checkpoints is ", o.keep_checkpoints,
               ", expected ≥ 1");
  POLYAK_CHECK(!(o.force && o.resume),
               "polyak: --force and --resume given together, expected "
               "one of them (--force replaces the run, --resume continues it)");
  POLYAK_CHECK(o.sync_every >= 0, "polyak: --sync-every is ", o.sync_every,
               ", expected ≥ 0 (0: 1 on the CPU, 50 on a device)");
  POLYAK_CHECK(o.task != "copy" || o.length >= 8, "polyak: --length is ", o.length,
               ", expected ≥ 8 (the copy task needs room for w 0 w)");
  POLYAK_CHECK(task_length(o.task) == 0 || o.length == task_length(o.task), "polyak: --length is ",
               o.length, ", expected ", task_length(o.task), " for the ", o.task,
               " task (its data fixes the sequences)");
  POLYAK_CHECK(o.d_model % o.heads == 0, "polyak: --d-model ", o.d_model,
               " is not divisible by --heads ", o.heads, ", expected d_model = heads × head_dim");
  POLYAK_CHECK(o.lr > 0, "polyak: --lr is ", o.lr, ", expected > 0");
  POLYAK_CHECK(o.dropout >= 0 && o.dropout < 1, "polyak: --dropout is ", o.dropout,
               ", expected a probability in [0, 1)");
  POLYAK_CHECK(o.decay_step >= 0, "polyak: --decay-step is ", o.decay_step, ", expected ≥ 0");
  POLYAK_CHECK(o.weight_decay >= 0, "polyak: --weight-decay is ", o.weight_decay, ", expected ≥ 0");
  POLYAK_CHECK(o.clip >= 0, "polyak: --clip is ", o.clip, ", expected ≥ 0 (0 turns clipping off)");
  check_threads(o.threads);
  max_memory_bytes(o);
  POLYAK_CHECK(!o.out.empty(), "polyak: --out is empty, expected a directory for the run");
  device_flag(o.device);
  precision_flag(o);
  validate_model(o);
}

// Adds the flags shared by train, bench, compare, ablate and inspect-grads; values land in `raw`,
// and `resolve` later copies the ones given on the command line over the preset.
struct TrainFlags {
  TrainOptions raw;
  std::vector<std::pair<CLI::Option*, std::function<void(TrainOptions&)>>> given;
  CLI::Option* model_flag = nullptr;
  CLI::Option* out_flag = nullptr;
  CLI::Option* preset_flag = nullptr;
  CLI::Option* task_flag = nullptr;
  CLI::Option* warmup_flag = nullptr;
  std::map<std::string, ParamValue> kind_raw;  // the kind flags given, by flag

  // A kind flag of the tables (nn/kinds.h), typed as its field.
  void add_kind_flag(CLI::App& app, const ParamField& f) {
    const std::string flag = f.flag,
                      help = f.help + " [default " + format_param(f.default_value) + "]";
    std::visit(
        [&](const auto& like) {
          using T = std::decay_t<decltype(like)>;
          app.add_option_function<T>(
              flag, [this, flag](const T& value) { kind_raw[flag] = value; }, help);
        },
        f.default_value);
  }

  template <class T>
  CLI::Option* add(CLI::App& app, const std::string& flag, T TrainOptions::*field,
                   const std::string& help) {
    CLI::Option* opt = app.add_option(flag, raw.*field, help);
    given.emplace_back(opt, [this, field](TrainOptions& o) { o.*field = raw.*field; });
    return opt;
  }

  // `with_model`: whether --model is a flag of this command (compare has --kinds instead).
  void add_all(CLI::App& app, bool with_model, bool with_task = true) {
    preset_flag = app.add_option(
        "--preset", raw.preset,
        "default | paper (the paper's copy configuration) | figure1 (scaled copy) | pixels | "
        "pixels-paper | text | lra (the LRA code's) | lra-cpu (default: the task's own)");
    if (with_task)
      task_flag = app.add_option("--task", raw.task, "what to train on: " + join(task_names()));
    add(app, "--data", &TrainOptions::data,
        "text: the file (default: The Devil's Dictionary, dict-devil); pixels, image: "
        "Fashion-MNIST's folder");
    add(app, "--pixel-head", &TrainOptions::pixel_head,
        "pixels: mixture (10 discretized logistics) | softmax (256-way)");
    add(app, "--difficulty", &TrainOptions::difficulty,
        "pathfinder: easy | intermediate | hard (curves of 6, 9, 14 dashes)");
    add(app, "--train-examples", &TrainOptions::train_examples,
        "the first N examples of the train split (0: all)");
    add(app, "--test-examples", &TrainOptions::test_examples,
        "the first N examples of the test split in the final evaluation (0: all)");
    warmup_flag =
        add(app, "--warmup-steps", &TrainOptions::warmup,
            "steps of linear lr warmup, then a linear decay to 0 (0: the copy task's schedule)");
    if (with_model)
      model_flag = add(app, "--model", &TrainOptions::model, "model kind: " + join(model_kinds()));
    add(app, "--steps", &TrainOptions::steps, "training steps");
    add(app, "--batch", &TrainOptions::batch, "sequences per step");
    add(app, "--length", &TrainOptions::length, "copy-task sequence length L");
    add(app, "--layers", &TrainOptions::layers, "transformer layers");
    add(app, "--heads", &TrainOptions::heads, "attention heads");
    add(app, "--d-model", &TrainOptions::d_model, "model width");
    add(app, "--ff", &TrainOptions::ff, "feed-forward width");
    add(app, "--dropout", &TrainOptions::dropout, "dropout probability");
    add(app, "--lr", &TrainOptions::lr, "RAdam learning rate");
    add(app, "--decay-step", &TrainOptions::decay_step,
        "multiply the lr by 0.1 from this step (0: never)");
    add(app, "--weight-decay", &TrainOptions::weight_decay, "decoupled weight decay");
    add(app, "--clip", &TrainOptions::clip, "per-parameter gradient-norm clip (0: off)");
    add(app, "--seed", &TrainOptions::seed, "seed of the model and the data")
        ->check(non_negative("--seed"));
    add(app, "--threads", &TrainOptions::threads, "CPU threads (0: all cores)");
    add(app, "--device", &TrainOptions::device,
        "cpu | cuda | cuda:N: where the model, the data and the optimiser state live");
    add(app, "--precision", &TrainOptions::precision,
        "f32 | bf16: bf16 rounds the device GEMMs' operands (f32 accumulation, f32 weights); "
        "not with --device cpu");
    add(app, "--eval-every", &TrainOptions::eval_every, "steps between test evaluations");
    add(app, "--eval-batches", &TrainOptions::eval_batches, "test batches per evaluation");
    add(app, "--sync-every", &TrainOptions::sync_every,
        "steps between reads of the loss from a device (0: 1 on the CPU, 50 on a device)");
    add(app, "--save-every", &TrainOptions::save_every,
        "steps between checkpoints of the whole run, for --resume (0: at the end and on "
        "SIGINT/SIGTERM only)");
    add(app, "--keep-checkpoints", &TrainOptions::keep_checkpoints,
        "checkpoints kept: the last one, and checkpoint-<step>.safetensors for more than 1");
    add(app, "--max-memory", &TrainOptions::max_memory,
        "memory the run may use, e.g. 8G or 512MiB (default: what the device has available); "
        "a run estimated to need more is refused before it starts");
    app.add_flag("--force", raw.force, "replace the run already in --out");
    for (const ParamField* f : kind_flag_fields()) add_kind_flag(app, *f);
    out_flag = add(app, "--out", &TrainOptions::out,
                   "run folder for metrics.csv, config.json and model.safetensors");
    app.add_flag("--graph", raw.graph,
                 "capture the training step as a device graph once and replay it (a device "
                 "only; the second step is captured, later ones replay it)");
    app.add_flag("--quiet", raw.quiet, "no progress line");
  }

  // `default_model` replaces the preset's kind when --model is not given ("" keeps it);
  // `default_out` is the run folder when --out is not given ("": runs/<task>-<model>);
  // `default_task` the task when --task is not given.
  TrainOptions resolve(const std::string& default_model = "", const std::string& default_out = "",
                       const std::string& default_task = "copy") const {
    const std::string task = task_flag && task_flag->count() > 0 ? raw.task : default_task;
    POLYAK_CHECK(contains(task_names(), task), "polyak: --task is '", task,
                 "', expected one of: ", join(task_names()));
    const bool preset_given = preset_flag->count() > 0;
    const std::string preset = preset_given || task == "copy" ? raw.preset : default_preset(task);
    POLYAK_CHECK(contains(preset_names(), preset), "polyak: --preset is '", preset,
                 "', expected one of: ", join(preset_names()));
    check_preset_task(preset, task);
    TrainOptions o = preset_values(preset, task);
    if (!default_model.empty()) o.model = default_model;
    for (const auto& [opt, copy] : given)
      if (opt->count() > 0) copy(o);
    // A preset's warmup that --steps leaves no room for shrinks to a tenth of the steps.
    if (warmup_flag->count() == 0 && o.warmup > 0 && o.warmup >= o.steps)
      o.warmup = o.steps >= 2 ? std::max<int64_t>(1, o.steps / 10) : 0;
    for (const auto& [flag, value] : kind_raw) o.kind_flags[flag] = value;
    o.quiet = raw.quiet;
    o.graph = raw.graph;
    o.force = raw.force;
    // --out "" given is an error (validate); not given, the default folder.
    if (o.out.empty() && out_flag->count() == 0)
      o.out = default_out.empty() ? "runs/" + o.task + "-" + o.model : default_out;
    validate(o);
    return o;
  }

  // `polyak train --resume DIR`: the options of the run in DIR, with the flags of
  // resume_flags() given on the command line over them; any other flag is an error.
  TrainOptions resume(const CLI::App& app, const std::string& dir) const {
    const std::string path = (std::filesystem::path(dir) / "checkpoint.safetensors").string();
    POLYAK_CHECK(std::filesystem::exists(path), "polyak train --resume: ", dir,
                 " has no checkpoint.safetensors, expected the directory of a run trained with "
                 "this version (every run saves one at its end, on SIGINT/SIGTERM and every "
                 "--save-every steps)");
    TrainOptions o =
        train_options_from_json(training_checkpoint_options(path, "polyak train --resume"),
                                path + " (metadata train.options)");
    const std::vector<std::string>& allowed = resume_flags();
    for (const auto& [opt, copy] : given) {
      if (opt->count() == 0) continue;
      const std::string flag = opt->get_name();
      POLYAK_CHECK(contains(allowed, flag), "polyak train --resume: ", flag,
                   " cannot change when a run resumes (it comes from ", path, "), expected only ",
                   join(allowed));
      const int64_t stored_steps = o.steps;
      copy(o);
      POLYAK_CHECK(flag != "--steps" || o.warmup == 0 || o.steps == stored_steps,
                   "polyak train --resume: --steps is ", o.steps, " but the run in ", dir,
                   " trains ", stored_steps,
                   " steps with a linear warmup and decay (--warmup-steps ", o.warmup,
                   "), whose lr reaches 0 at its last step, expected --steps ", stored_steps,
                   " (start a new run for a longer schedule)");
    }
    POLYAK_CHECK(kind_raw.empty(), "polyak train --resume: ", kind_raw.begin()->first,
                 " cannot change when a run resumes (the model comes from ", path, ")");
    POLYAK_CHECK(app.count("--preset") == 0,
                 "polyak train --resume: --preset cannot change when a run resumes");
    POLYAK_CHECK(!task_flag || task_flag->count() == 0,
                 "polyak train --resume: --task cannot change when a run resumes");
    POLYAK_CHECK(!raw.force,
                 "polyak: --force and --resume given together, expected one of "
                 "them (--force replaces the run, --resume continues it)");
    o.quiet = raw.quiet;
    o.graph = raw.graph;
    o.out = dir;
    o.resume = true;
    validate(o);
    return o;
  }
};

// Splits a --kinds or --values list at commas (spaces around items are ignored).
std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream list(text);
  for (std::string item; std::getline(list, item, ',');) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    items.push_back(item);
  }
  return items;
}

std::vector<std::string> parse_kinds(const std::string& text, const std::string& task = "copy") {
  std::vector<std::string> kinds = split_list(text);
  POLYAK_CHECK(!kinds.empty(), "polyak: --kinds is empty, expected a comma-separated list of: ",
               join(model_kinds()));
  std::set<std::string> seen;
  for (const std::string& k : kinds) {
    POLYAK_CHECK(contains(model_kinds(), k), "polyak: --kinds has '", k,
                 "', expected a comma-separated list of: ", join(task_model_kinds(task)));
    if (is_classification_task(task))
      POLYAK_CHECK(contains(task_model_kinds(task), k), "polyak: --kinds has '", k,
                   "', a kind without a non-causal form, and the ", task,
                   " task classifies whole sequences with an encoder, expected kinds of: ",
                   join(task_model_kinds(task)));
    else
      check_causal_kind("--kinds has", k);
    POLYAK_CHECK(seen.insert(k).second, "polyak: --kinds names '", k,
                 "' twice, expected each kind at most once");
  }
  return kinds;
}

// `symbol` names the swept quantity in messages (β or β̃); every value must lie in [0, 1).
std::vector<double> parse_values(const std::string& text, const char* symbol) {
  std::vector<double> values;
  for (const std::string& item : split_list(text)) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::logic_error&) {
      used = 0;
    }
    POLYAK_CHECK(used > 0 && used == item.size(), "polyak: --values has '", item,
                 "', expected comma-separated numbers such as 0,0.1,0.3");
    POLYAK_CHECK(v >= 0 && v < 1, "polyak: --values has ", item, ", expected ", symbol,
                 " in [0, 1)");
    POLYAK_CHECK(std::find(values.begin(), values.end(), v) == values.end(),
                 "polyak: --values has ", item, " twice, expected each value at most once");
    values.push_back(v);
  }
  POLYAK_CHECK(!values.empty(), "polyak: --values is empty, expected comma-separated ", symbol,
               " values in [0, 1)");
  return values;
}

// --prompt "3 5 1 0" (or --prompt 3 5 1 0): token ids separated by spaces or commas.
}  // namespace

std::vector<int32_t> parse_prompt(const std::string& prompt) {
  std::string text = prompt;
  std::replace(text.begin(), text.end(), ',', ' ');
  std::vector<int32_t> tokens;
  std::istringstream is(text);
  for (std::string item; is >> item;) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::logic_error&) {
      used = 0;
    }
    POLYAK_CHECK(used == item.size() && v >= 0 && v <= INT32_MAX, "polyak: --prompt has '", item,
                 "', expected token ids (integers ≥ 0) separated by spaces, e.g. \"3 5 1 0\"");
    tokens.push_back(static_cast<int32_t>(v));
  }
  POLYAK_CHECK(!tokens.empty(), "polyak: --prompt is empty, expected at least one token id");
  return tokens;
}

namespace {

// Edits (insertions, deletions, substitutions) between a and b.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// For a command line with a flag the command does not have: "polyak train: unknown flag
// --featurs, did you mean --features?" (the nearest flag within 2 edits), or "" when every
// flag is known.
std::string unknown_flag_message(CLI::App& app, const std::vector<std::string>& args) {
  CLI::App* command = &app;
  std::string name = "polyak";
  for (const std::string& a : args) {
    if (a.empty() || a[0] == '-') break;
    CLI::App* sub = nullptr;
    try {
      sub = command->get_subcommand(a);
    } catch (const CLI::OptionNotFound&) {
      break;
    }
    command = sub;
    name += " " + a;
  }
  std::vector<std::string> flags;
  for (const CLI::Option* opt : command->get_options())
    for (const std::string& long_name : opt->get_lnames()) flags.push_back("--" + long_name);
  for (const std::string& a : args) {
    if (a.rfind("--", 0) != 0) continue;
    const std::string flag = a.substr(0, a.find('='));
    if (std::find(flags.begin(), flags.end(), flag) != flags.end()) continue;
    std::string nearest;
    size_t best = 3;  // within 2 edits
    for (const std::string& known : flags)
      if (const size_t d = edit_distance(flag, known); d < best) {
        best = d;
        nearest = known;
      }
    return name + ": unknown flag " + flag +
           (nearest.empty() ? ", see --help" : ", did you mean " + nearest + "?");
  }
  return "";
}

const std::vector<std::string>& command_names() {
  static const std::vector<std::string> names = {"train",    "pixels",  "lra",    "bench",
                                                 "generate", "compare", "ablate", "inspect-grads"};
  return names;
}

}  // namespace

namespace {

// The model kinds whose attention has the causal (or the non-causal) form, in model_kinds()'s
// order.
std::vector<std::string> kinds_with_form(bool causal) {
  std::vector<std::string> kinds;
  for (const std::string& kind : model_kinds()) {
    TransformerConfig c;
    set_model_kind(c, kind);
    const AttentionForms& forms = attention_spec(c.attention).forms;
    if (causal ? forms.causal : forms.non_causal) kinds.push_back(kind);
  }
  return kinds;
}

}  // namespace

std::vector<std::string> task_model_kinds(const std::string& task) {
  return is_classification_task(task) ? kinds_with_form(false) : causal_model_kinds();
}

const std::vector<std::string>& causal_model_kinds() {
  static const std::vector<std::string> kinds = kinds_with_form(true);
  return kinds;
}

Device device_flag(const std::string& value) {
  const Device device = parse_device(value, "polyak: --device");
  check_device_available(device, "polyak: --device");
  return device;
}

Precision precision_flag(const TrainOptions& o) {
  POLYAK_CHECK(o.precision == "f32" || o.precision == "bf16", "polyak: --precision is '",
               o.precision, "', expected f32 or bf16");
  if (o.precision == "f32") return Precision::f32;
  POLYAK_CHECK(!parse_device(o.device, "polyak: --device").is_cpu(),
               "polyak: --precision bf16 with --device ", o.device,
               ", expected a GPU device (cuda, cuda:N): the CPU's GEMMs are f32 only");
  return Precision::bf16;
}

std::string default_plot_script(const std::string& name) {
  // The source tree the program was built from (CMakeLists.txt defines it).
  return (std::filesystem::path(POLYAK_SOURCE_DIR) / "scripts" / name).string();
}

std::string kind_settings(const TrainOptions& o) {
  const TransformerConfig c = o.model_config(CopyTask({.length = o.length}).vocab());
  std::ostringstream os;
  auto describe = [&](const Params& params, const std::string& layers) {
    if (params.schema()->fields.empty()) return;
    if (os.tellp() > 0) os << "; ";
    os << params.schema()->name << layers << ":";
    const char* sep = " ";
    for (const ParamField& f : params.schema()->fields) {
      const ParamValue v = params.get(f.name);
      const auto* text = std::get_if<std::string>(&v);
      os << sep << f.flag << " " << (text ? *text : format_param(v));
      sep = ", ";
    }
  };
  std::string layers;
  if (attention_spec(c.attention).per_layer) {
    std::vector<std::string> kinds;
    for (int64_t i = 0; i < c.layers; ++i) kinds.push_back(c.layer_config(i).attention.kind);
    layers = " (layers " + join(kinds) + ")";
  }
  describe(c.attention_params, layers);
  describe(c.connection_params, "");
  return os.str();
}

TransformerConfig TrainOptions::model_config(int64_t vocab) const {
  TransformerConfig c;
  c.vocab = vocab;
  c.max_len = length;
  c.d_model = d_model;
  c.heads = heads;
  c.ff_dim = ff;
  c.layers = layers;
  c.dropout = dropout;
  set_model_kind(c, model);
  c.causal = !is_classification_task(task);
  c.attention_params =
      Params::defaults(*attention_spec(c.attention, "TrainOptions", "attention").params);
  c.connection_params =
      Params::defaults(*connection_spec(c.connection, "TrainOptions", "connection").params);
  apply_flags(c.attention_params, kind_flags);
  apply_flags(c.connection_params, kind_flags);
  c.activation = "relu";
  c.seed = seed;
  c.validate();
  return c;
}

Command parse_command_line(const std::vector<std::string>& args) {
  CLI::App app{"polyak: train and inspect momentum and linear transformers", "polyak"};
  app.require_subcommand(1);
  app.set_version_flag(
      "--version", [] { return version_text(); },
      "the version, the build's target and the kernels' ISA in use");
  app.set_help_all_flag("--help-all", "all subcommands' help");

  CLI::App* train =
      app.add_subcommand("train",
                         "train a model on a task (the copy task by default) and report "
                         "its test figure");
  TrainFlags train_flags;
  train_flags.add_all(*train, true);
  std::string resume_dir;
  CLI::Option* resume_flag =
      train->add_option("--resume", resume_dir,
                        "continue the run in DIR from its checkpoint.safetensors, to --steps "
                        "(bit-identical on the CPU with the same threads)");

  CLI::App* pixels = app.add_subcommand(
      "pixels",
      "train a pixel-by-pixel model of Fashion-MNIST and report its test bits/dim (train "
      "--task pixels)");
  TrainFlags pixels_flags;
  pixels_flags.add_all(*pixels, true, false);
  CLI::App* lra = app.add_subcommand(
      "lra",
      "train an LRA-style classifier and report its test accuracy: lra TASK (train --task "
      "TASK), TASK one of listops, pathfinder, image");
  std::string lra_task;
  lra->add_option("TASK", lra_task, "listops | pathfinder | image")->required();
  TrainFlags lra_flags;
  lra_flags.add_all(*lra, true, false);

  CLI::App* bench = app.add_subcommand(
      "bench", "time training steps of a copy model against the machine's f32 GEMM peak");
  TrainFlags bench_flags;
  bench_flags.raw.preset = "paper";
  bench_flags.add_all(*bench, true, false);
  BenchOptions bench_raw;
  bench->add_option("--warmup", bench_raw.warmup, "untimed steps first");
  bench->add_option("--gemm-size", bench_raw.gemm_size,
                    "size of the square GEMM timed for the peak");
  bench->add_option("--gemm-reps", bench_raw.gemm_reps, "repetitions of the peak GEMM");
  bench->add_option("--json", bench_raw.json, "also write the figures as JSON here");

  CLI::App* gen = app.add_subcommand(
      "generate", "generate tokens in RNN mode from a checkpoint written by polyak train");
  GenerateCommand gen_raw;
  std::vector<std::string> prompt_parts;
  gen->add_option("--checkpoint", gen_raw.checkpoint,
                  "a model.safetensors written by polyak train");
  CLI::Option* prompt_flag =
      gen->add_option("--prompt", prompt_parts,
                      "token ids separated by spaces, e.g. \"3 5 1 0\" (a text model: any text)");
  CLI::Option* tokens_flag =
      gen->add_option("--tokens", gen_raw.tokens, "tokens to generate after --prompt");
  CLI::Option* copy_flag = gen->add_option(
      "--copy", gen_raw.copy,
      "instead of --prompt: K test words of the checkpoint's copy task, prompted with 'w 0'");
  CLI::Option* images_flag = gen->add_option(
      "--images", gen_raw.images,
      "instead of --prompt: N images of a pixel model (polyak pixels), drawn pixel by pixel "
      "and saved as a PNG grid");
  gen->add_option("--png", gen_raw.png,
                  "the grid's path (default: samples.png beside the checkpoint)");
  gen->add_option("--temperature", gen_raw.temperature, "0: greedy; > 0: sample");
  gen->add_option("--seed", gen_raw.seed, "sampling seed")->check(non_negative("--seed"));
  gen->add_option("--stop", gen_raw.stop, "stop after generating this token (-1: never)");
  gen->add_option("--threads", gen_raw.threads, "CPU threads (0: all cores)");
  gen->add_option("--device", gen_raw.device, "cpu | cuda | cuda:N: where the model runs");

  // compare, ablate and inspect-grads share the plot flags.
  auto add_experiment_flags = [](CLI::App& cmd, ExperimentOptions& e) {
    cmd.add_option("--python", e.python, "the Python that draws the PNG (needs matplotlib)");
    cmd.add_option("--plot-script", e.plot_script, "the plot script (default: in scripts/)");
    cmd.add_flag("--resume", e.resume,
                 "continue the experiment stopped in --out: each run continues from its "
                 "checkpoint (a finished run only evaluates again); the others start");
  };
  CLI::App* compare = app.add_subcommand(
      "compare",
      "Figure 1: train every model kind on one copy-task stream; metrics, summary.csv and a PNG");
  TrainFlags compare_flags;
  compare_flags.raw.preset = "figure1";
  compare_flags.add_all(*compare, false);
  ExperimentOptions compare_raw;
  std::string kinds_text;
  compare->add_option("--kinds", kinds_text,
                      "comma-separated kinds to train (default: every causal kind: " +
                          join(causal_model_kinds()) + ")");
  add_experiment_flags(*compare, compare_raw);

  CLI::App* ablate = app.add_subcommand(
      "ablate", "Figures 4-5: sweep β (ablate beta) or β̃ (ablate connection) on the copy task");
  ablate->require_subcommand(1);
  CLI::App* ablate_beta = ablate->add_subcommand(
      "beta", "sweep momentum attention's β (γ fixed), default kind adaptive (paper Fig. 5)");
  TrainFlags beta_flags;
  beta_flags.raw.preset = "figure1";
  beta_flags.add_all(*ablate_beta, true, false);
  ExperimentOptions beta_raw;
  std::string beta_values = "0,0.1,0.3,0.6,0.9";
  ablate_beta->add_option("--values", beta_values, "comma-separated β values");
  add_experiment_flags(*ablate_beta, beta_raw);
  CLI::App* ablate_conn = ablate->add_subcommand(
      "connection", "sweep the momentum connection's β̃, plus one adaptive run (paper Fig. 4)");
  TrainFlags conn_flags;
  conn_flags.raw.preset = "figure1";
  conn_flags.add_all(*ablate_conn, false, false);
  ExperimentOptions conn_raw;
  std::string conn_values = "0.5,0.9,0.99";
  ablate_conn->add_option("--values", conn_values, "comma-separated β̃ values");
  add_experiment_flags(*ablate_conn, conn_raw);

  CLI::App* inspect = app.add_subcommand(
      "inspect-grads",
      "train kinds on one copy-task stream and record the gradient norms reaching each layer's "
      "q, k, v and attention output: a CSV per kind, a PNG and a summary");
  TrainFlags inspect_flags;
  inspect_flags.raw.preset = "figure1";
  inspect_flags.add_all(*inspect, false, false);
  ExperimentOptions inspect_plot;
  InspectOptions inspect_raw;
  std::string inspect_kinds = "linear,transnormer,momentum";
  CLI::Option* inspect_kinds_flag = inspect->add_option(
      "--kinds", inspect_kinds, "comma-separated kinds to train (default: " + inspect_kinds + ")");
  std::string checkpoints_text;
  CLI::Option* checkpoints_flag = inspect->add_option(
      "--checkpoints", checkpoints_text,
      "instead of --kinds: comma-separated model.safetensors (from polyak train or compare) to "
      "train on from; the model and the copy task's length come from each file");
  inspect->add_option("--every", inspect_raw.every,
                      "steps between records (step 1 and the last are recorded too)");
  add_experiment_flags(*inspect, inspect_plot);

  auto is_word = [](const std::string& a) { return !a.empty() && a[0] != '-'; };
  if (!args.empty() && is_word(args[0]))
    POLYAK_CHECK(contains(command_names(), args[0]), "polyak: unknown command '", args[0],
                 "', expected one of: ", join(command_names()));
  if (!args.empty() && (args[0] == "compare" || args[0] == "inspect-grads"))
    for (const std::string& a : args)
      POLYAK_CHECK(a != "--model" && a.rfind("--model=", 0) != 0, "polyak ", args[0],
                   ": --model is not a flag of ", args[0],
                   ", expected --kinds K,K,... of: ", join(causal_model_kinds()));
  if (!args.empty() && args[0] == "ablate") {
    bool help = args.size() >= 2 && (args[1] == "--help" || args[1] == "-h");
    POLYAK_CHECK(help || (args.size() >= 2 && is_word(args[1])),
                 "polyak ablate: no study given, expected one of: beta, connection");
    POLYAK_CHECK(help || args[1] == "beta" || args[1] == "connection",
                 "polyak ablate: unknown study '", args[1], "', expected one of: beta, connection");
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    CLI::App* shown = &app;
    while (!shown->get_subcommands().empty()) shown = shown->get_subcommands()[0];
    throw HelpRequested{shown->help()};
  } catch (const CLI::CallForAllHelp&) {
    throw HelpRequested{app.help("", CLI::AppFormatMode::All)};
  } catch (const CLI::CallForVersion& e) {
    throw HelpRequested{std::string(e.what()) + "\n"};
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    if (what.empty()) what = e.get_name();
    if (const std::string unknown = unknown_flag_message(app, args); !unknown.empty())
      fail(unknown);
    // A validator's own message ("--seed: polyak: --seed is -1, …") without CLI11's prefix.
    if (const size_t own = what.find("polyak: "); own != std::string::npos) fail(what.substr(own));
    fail("polyak: ", what);
  }

  Command cmd;
  if (train->parsed()) {
    cmd.name = "train";
    cmd.train =
        resume_flag->count() > 0 ? train_flags.resume(*train, resume_dir) : train_flags.resolve();
  } else if (pixels->parsed()) {
    cmd.name = "train";
    cmd.train = pixels_flags.resolve("", "", "pixels");
  } else if (lra->parsed()) {
    POLYAK_CHECK(is_classification_task(lra_task), "polyak lra: TASK is '", lra_task,
                 "', expected listops, pathfinder or image");
    cmd.name = "train";
    cmd.train = lra_flags.resolve("", "", lra_task);
  } else if (bench->parsed()) {
    cmd.name = "bench";
    BenchOptions b = bench_raw;
    b.train = bench_flags.resolve();
    if (bench->count("--steps") == 0) b.train.steps = 10;
    b.train.quiet = true;
    POLYAK_CHECK(b.warmup >= 0, "polyak: --warmup is ", b.warmup, ", expected ≥ 0");
    check_positive("--gemm-size", b.gemm_size);
    check_positive("--gemm-reps", b.gemm_reps);
    cmd.bench = b;
  } else if (gen->parsed()) {
    cmd.name = "generate";
    GenerateCommand g = gen_raw;
    POLYAK_CHECK(!g.checkpoint.empty(),
                 "polyak generate: --checkpoint is missing, expected the "
                 "path of a model.safetensors written by polyak train");
    const bool has_prompt = prompt_flag->count() > 0, has_copy = copy_flag->count() > 0,
               has_images = images_flag->count() > 0;
    const int given = int{has_prompt} + int{has_copy} + int{has_images};
    POLYAK_CHECK(given == 1, "polyak generate: ",
                 given == 0 ? "none of --prompt, --copy and --images given"
                            : "more than one of --prompt, --copy and --images given",
                 ", expected exactly one of them");
    if (has_prompt) {
      for (const std::string& part : prompt_parts) g.prompt += (g.prompt.empty() ? "" : " ") + part;
      POLYAK_CHECK(g.prompt.find_first_not_of(" \t,") != std::string::npos,
                   "polyak: --prompt is empty, expected token ids or text");
      check_positive("--tokens", g.tokens);
    } else if (has_images) {
      check_positive("--images", g.images);
    } else {
      check_positive("--copy", g.copy);
      POLYAK_CHECK(tokens_flag->count() == 0, "polyak generate: --tokens ", g.tokens,
                   " given with --copy, expected no --tokens (--copy generates len(w) tokens "
                   "per word)");
    }
    POLYAK_CHECK(g.temperature >= 0 && std::isfinite(g.temperature), "polyak: --temperature is ",
                 g.temperature, ", expected ≥ 0 (0: greedy)");
    POLYAK_CHECK(g.stop >= -1, "polyak: --stop is ", g.stop,
                 ", expected a token id or -1 (never stop)");
    check_threads(g.threads);
    device_flag(g.device);
    cmd.generate = g;
  } else if (compare->parsed()) {
    cmd.name = "compare";
    ExperimentOptions e = compare_raw;
    e.study = "compare";
    e.train = compare_flags.resolve("", "runs/figure1");
    if (e.train.task != "copy" && compare->count("--out") == 0)
      e.train.out = "runs/compare-" + e.train.task;
    e.kinds = compare->count("--kinds") > 0 ? parse_kinds(kinds_text, e.train.task)
                                            : task_model_kinds(e.train.task);
    cmd.experiment = e;
  } else if (inspect->parsed()) {
    cmd.name = "inspect-grads";
    InspectOptions i = inspect_raw;
    i.train = inspect_flags.resolve("", "runs/grads");
    // Most of figure1's learning curve (the loss falls from 2.3 to about 0.5), in about two
    // minutes for the three default kinds on 2 quiet cores.
    if (inspect->count("--steps") == 0) i.train.steps = 2000;
    check_positive("--every", i.every);
    if (checkpoints_flag->count() > 0) {
      POLYAK_CHECK(inspect_kinds_flag->count() == 0,
                   "polyak inspect-grads: both --kinds and --checkpoints given, expected one of "
                   "them (each checkpoint names its kind)");
      i.checkpoints = split_list(checkpoints_text);
      POLYAK_CHECK(!i.checkpoints.empty(),
                   "polyak inspect-grads: --checkpoints is empty, expected comma-separated paths "
                   "of model.safetensors files");
      for (const std::string& path : i.checkpoints)
        POLYAK_CHECK(!path.empty(), "polyak inspect-grads: --checkpoints '", checkpoints_text,
                     "' has an empty entry, expected comma-separated paths");
    } else {
      i.kinds = parse_kinds(inspect_kinds);
    }
    i.python = inspect_plot.python;
    i.plot_script = inspect_plot.plot_script.empty() ? default_plot_script("plot_grads.py")
                                                     : inspect_plot.plot_script;
    POLYAK_CHECK(!i.python.empty(),
                 "polyak: --python is empty, expected the path of a Python 3 interpreter");
    cmd.inspect = i;
  } else if (ablate_beta->parsed()) {
    cmd.name = "ablate";
    ExperimentOptions e = beta_raw;
    e.study = "beta";
    e.train = beta_flags.resolve("adaptive", "runs/ablate-beta");
    TransformerConfig probe;
    set_model_kind(probe, e.train.model);
    const std::vector<ParamField>& fields = attention_spec(probe.attention).params->fields;
    POLYAK_CHECK(std::any_of(fields.begin(), fields.end(),
                             [](const ParamField& f) { return f.flag == "--beta"; }),
                 "polyak ablate beta: --model is '", e.train.model,
                 "', expected a kind with momentum attention: momentum, momentum-connection, "
                 "adaptive");
    e.values = parse_values(beta_values, "β");
    cmd.experiment = e;
  } else {
    cmd.name = "ablate";
    ExperimentOptions e = conn_raw;
    e.study = "connection";
    e.train = conn_flags.resolve("momentum-connection", "runs/ablate-connection");
    e.values = parse_values(conn_values, "β̃");
    cmd.experiment = e;
  }
  if (cmd.name == "compare" || cmd.name == "ablate") {
    if (cmd.experiment.plot_script.empty()) cmd.experiment.plot_script = default_plot_script();
    POLYAK_CHECK(!cmd.experiment.python.empty(),
                 "polyak: --python is empty, expected the path of a Python 3 interpreter");
  }
  return cmd;
}

}  // namespace polyak::cli
