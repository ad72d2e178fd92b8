// Runs that survive: `polyak train --resume` continues a run bit for bit (the same metrics
// rows apart from wall-clock columns, the same final tensors) after a run that ended, a
// SIGINT, or periodic checkpoints; run directories hold one run, locked; and the errors of
// what cannot resume.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/copy_run.h"
#include "cli/memory_check.h"
#include "cli/options.h"
#include "cli/run_dir.h"
#include "helpers.h"
#include "polyak/core/safetensors.h"
#include "run_checks.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_same_rows;
using polyak::testing::check_same_run;
using polyak::testing::check_same_tensors;
using polyak::testing::metrics_without_clock;
using polyak::testing::parse_cli;

namespace {

namespace fs = std::filesystem;

fs::path scratch(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("polyak-resume-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  return dir;
}

// A small model of `kind` for `steps` steps into `out`, with `extra` flags; dropout on, and
// evaluations every 7 steps (so a run that ends at step 10 evaluates there only because it
// ends there).
std::vector<std::string> run_args(const std::string& kind, int64_t steps, const fs::path& out,
                                  std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"train",        kind,  "--steps",        std::to_string(steps),
                                   "--length",     "16",  "--batch",        "4",
                                   "--layers",     "2",   "--heads",        "2",
                                   "--d-model",    "16",  "--ff",           "32",
                                   "--dropout",    "0.1", "--lr",           "3e-3",
                                   "--eval-every", "7",   "--eval-batches", "1",
                                   "--threads",    "1",   "--quiet",        "--out",
                                   out.string()};
  args.insert(args.begin() + 1, "--model");
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

cli::TrainResult train(const std::vector<std::string>& args,
                       const std::function<void(const cli::StepRecord&)>& on_step = {}) {
  return cli::train_run(
      parse_cli(args).train, on_step ? on_step : [](const cli::StepRecord&) {});
}

}  // namespace

TEST_CASE("resume: a run continued from its end equals the run that never stopped") {
  for (const std::string kind : {"momentum", "performer", "mega-chunk", "adaptive"}) {
    INFO(kind);
    const std::vector<std::string> performer = kind == "performer"
                                                   ? std::vector<std::string>{"--redraw", "3"}
                                                   : std::vector<std::string>{};
    const fs::path whole = scratch("whole-" + kind), parts = scratch("parts-" + kind);
    const cli::TrainResult uninterrupted = train(run_args(kind, 20, whole, performer));
    const cli::TrainResult first = train(run_args(kind, 10, parts, performer));
    CHECK(first.records.back().test_accuracy >= 0);  // evaluated at its last step
    std::vector<std::string> resume = {"train",   "--resume", parts.string(),
                                       "--steps", "20",       "--quiet"};
    const cli::TrainResult resumed = train(resume);
    check_same_run(resumed, uninterrupted, parts, whole);
  }
}

TEST_CASE("resume: SIGINT saves a checkpoint after the step, and the run continues from it") {
  const fs::path whole = scratch("sig-whole"), parts = scratch("sig-parts");
  const cli::TrainResult uninterrupted = train(run_args("momentum", 16, whole));
  const cli::TrainResult stopped =
      train(run_args("momentum", 16, parts), [](const cli::StepRecord& r) {
        if (r.step == 5) std::raise(SIGINT);  // as Ctrl-C would, in the middle of the run
      });
  CHECK(stopped.stopped_by == SIGINT);
  CHECK(stopped.steps_done == 5);
  CHECK(fs::exists(parts / "checkpoint.safetensors"));
  CHECK(!fs::exists(parts / "model.safetensors"));
  const cli::TrainResult resumed = train({"train", "--resume", parts.string(), "--quiet"});
  CHECK(resumed.stopped_by == 0);
  check_same_rows(resumed.records, uninterrupted.records);
  check_same_tensors(parts / "model.safetensors", whole / "model.safetensors");
  fs::remove_all(whole);
  fs::remove_all(parts);
}

TEST_CASE("resume: --save-every writes checkpoints as the run goes, keeping the last K") {
  const fs::path out = scratch("every");
  const fs::path whole = scratch("every-whole");
  const cli::TrainResult uninterrupted = train(run_args("linear", 17, whole));
  std::vector<int64_t> saved_steps;
  (void)train(run_args("linear", 17, out, {"--save-every", "4", "--keep-checkpoints", "2"}),
              [&](const cli::StepRecord& r) {
                if (r.step == 9) {
                  // The checkpoint of step 8 is on disk: resume a copy of the directory from it.
                  const fs::path copy = scratch("every-copy");
                  fs::create_directories(copy);
                  for (const char* f : {"checkpoint.safetensors", "config.json", "metrics.csv"})
                    fs::copy_file(out / f, copy / f);
                  const cli::TrainResult resumed =
                      train({"train", "--resume", copy.string(), "--steps", "17", "--quiet"});
                  check_same_rows(resumed.records, uninterrupted.records);
                  check_same_tensors(copy / "model.safetensors", whole / "model.safetensors");
                  fs::remove_all(copy);
                  saved_steps.push_back(r.step);
                }
              });
  CHECK(saved_steps.size() == 1);
  // Saves at 4, 8, 12, 16 and the end (17): the last two are kept by name.
  CHECK(!fs::exists(out / "checkpoint-4.safetensors"));
  CHECK(!fs::exists(out / "checkpoint-12.safetensors"));
  CHECK(fs::exists(out / "checkpoint-16.safetensors"));
  CHECK(fs::exists(out / "checkpoint-17.safetensors"));
  check_same_tensors(out / "checkpoint-17.safetensors", out / "checkpoint.safetensors");
  fs::remove_all(out);
  fs::remove_all(whole);
}

TEST_CASE("run directories: one run at a time, one run's files, stale temporaries removed") {
  const fs::path out = scratch("dir");
  (void)train(run_args("linear", 3, out));
  // Another run into the same directory would mix the two runs' files.
  CHECK_THROWS_WITH_AS(train(run_args("linear", 3, out)),
                       doctest::Contains((out.string() + " holds another run (config.json, "
                                                         "metrics.csv, model.safetensors, "
                                                         "checkpoint.safetensors), expected a "
                                                         "new or empty directory; continue "
                                                         "that run with --resume")
                                             .c_str()),
                       Error);
  // --force replaces it; a killed save's temporary file goes at the next start.
  std::ofstream(out / "model.safetensors.tmp.12345.0") << "half a file";
  const cli::TrainResult forced = train(run_args("linear", 4, out, {"--force"}));
  CHECK(forced.records.size() == 4);
  CHECK(!fs::exists(out / "model.safetensors.tmp.12345.0"));
  CHECK(forced.removed_temporaries ==
        std::vector<std::string>{(out / "model.safetensors.tmp.12345.0").string()});
  {
    // A run holding the directory's lock keeps a second one out.
    const cli::RunDirectory holder((out / "busy").string(), cli::RunDirectory::Mode::fresh, "test");
    CHECK_THROWS_WITH_AS(
        train(run_args("linear", 3, out / "busy")),
        doctest::Contains(("is in use by another run (pid " + std::to_string(getpid())).c_str()),
        Error);
  }
  (void)train(run_args("linear", 2, out / "busy"));  // free again
  fs::remove_all(out);
}

TEST_CASE("resume: what cannot resume is an error naming the directory and the flag") {
  const fs::path out = scratch("bad");
  CHECK_THROWS_WITH_AS(parse_cli({"train", "--resume", out.string()}),
                       doctest::Contains("has no checkpoint.safetensors"), Error);
  (void)train(run_args("linear", 6, out));
  CHECK_THROWS_WITH_AS(parse_cli({"train", "--resume", out.string(), "--lr", "0.1"}),
                       doctest::Contains("--lr cannot change when a run resumes"), Error);
  CHECK_THROWS_WITH_AS(parse_cli({"train", "--resume", out.string(), "--beta", "0.5"}),
                       doctest::Contains("--beta cannot change when a run resumes"), Error);
  CHECK_THROWS_WITH_AS(parse_cli({"train", "--resume", out.string(), "--force"}),
                       doctest::Contains("--force and --resume given together"), Error);
  CHECK_THROWS_WITH_AS(train({"train", "--resume", out.string(), "--steps", "3", "--quiet"}),
                       doctest::Contains(("--steps is 3 but the run in " + out.string() +
                                          " has done 6 steps, expected --steps ≥ 6")
                                             .c_str()),
                       Error);
  // A damaged checkpoint: a NaN in the optimizer's moments.
  SafetensorsFile file = load_safetensors((out / "checkpoint.safetensors").string());
  for (auto& [name, t] : file.tensors)
    if (name == "optim.0.exp_avg") t.data<float>()[0] = NAN;
  save_safetensors((out / "checkpoint.safetensors").string(), file.tensors, file.metadata);
  CHECK_THROWS_WITH_AS(train({"train", "--resume", out.string(), "--steps", "8", "--quiet"}),
                       doctest::Contains("tensor 'optim.0.exp_avg' holds nan at element 0, "
                                         "expected finite values"),
                       Error);
  fs::remove_all(out);
}

TEST_CASE("resume: the options round-trip through the checkpoint's JSON") {
  cli::TrainOptions o = parse_cli({"train", "--model", "momentum", "--beta", "0.3", "--steps", "7",
                                   "--lr", "0.002", "--save-every", "3", "--quiet"})
                            .train;
  const cli::TrainOptions back = cli::train_options_from_json(cli::train_options_json(o), "test");
  CHECK(back.model == "momentum");
  CHECK(back.steps == 7);
  CHECK(back.lr == 0.002);
  CHECK(back.save_every == 3);
  CHECK(back.kind_flags == o.kind_flags);
  CHECK(cli::train_options_json(back) == cli::train_options_json(o));
  CHECK_THROWS_WITH_AS(cli::train_options_from_json("{\"model\": 3}", "here"),
                       doctest::Contains("here: the options have no \"preset\""), Error);
  CHECK_THROWS_WITH_AS(
      cli::train_options_from_json(std::string(100000, '[') + std::string(100000, ']'), "deep"),
      doctest::Contains("deep: the options nest arrays and objects more than 64"), Error);
  CHECK_THROWS_WITH_AS(
      cli::train_options_from_json("{\"model\": \"a\", \"model\": \"b\"}", "twice"),
      doctest::Contains("twice: option \"model\" appears twice"), Error);
}

TEST_CASE("resume: the default model, 2000 steps straight against 1000 and a resume to 2000") {
  // The acceptance run of the default preset (a linear model, L 32, batch 32), on two threads
  // both times: every tensor of the final model and of the checkpoint (the optimizer's moments
  // and steps, the generators) and every metrics row but the wall clock agree bit for bit.
  // Under AddressSanitizer (a Debug build, some 30 times slower) 200 against 100.
#if defined(__SANITIZE_ADDRESS__)
  const int64_t steps = 200;
#else
  const int64_t steps = 2000;
#endif
  const fs::path whole = scratch("default-whole"), parts = scratch("default-parts");
  auto args = [](const fs::path& out, int64_t n) {
    return std::vector<std::string>{"train", "--steps", std::to_string(n), "--threads",
                                    "2",     "--out",   out.string(),      "--quiet"};
  };
  const cli::TrainResult uninterrupted = train(args(whole, steps));
  (void)train(args(parts, steps / 2));
  const cli::TrainResult resumed =
      train({"train", "--resume", parts.string(), "--steps", std::to_string(steps), "--quiet"});
  REQUIRE(resumed.records.size() == static_cast<size_t>(steps));
  check_same_run(resumed, uninterrupted, parts, whole);
}

TEST_CASE("memory: a run that cannot fit is refused before anything is built") {
  const fs::path out = scratch("memory");
  // Each size that grew towards the out-of-memory killer, with the flags that ask for it.
  for (const std::vector<std::string>& flags :
       std::vector<std::vector<std::string>>{{"--layers", "1000000"},
                                             {"--batch", "100000000"},
                                             {"--length", "100000000"},
                                             {"--d-model", "100000000", "--heads", "1"},
                                             {"--model", "performer", "--features", "100000000"}}) {
    std::vector<std::string> args = {"train", "--quiet", "--out", out.string()};
    args.insert(args.end(), flags.begin(), flags.end());
    INFO(flags[0]);
    const auto refused = [&] { (void)train(args); };
    CHECK_THROWS_WITH_AS(refused(), doctest::Contains((flags[0] + " " + flags[1]).c_str()), Error);
    CHECK_THROWS_WITH_AS(refused(), doctest::Contains("available on cpu"), Error);
    CHECK_THROWS_WITH_AS(refused(), doctest::Contains("--max-memory"), Error);
    CHECK(!fs::exists(out / "config.json"));  // refused before the run directory was touched
  }
  // --max-memory: a limit below the estimate refuses a small run; a malformed size is an error.
  const std::vector<std::string> small = run_args("linear", 2, out, {"--max-memory", "64K"});
  CHECK_THROWS_WITH_AS(train(small), doctest::Contains("more than the limit of 64.0 KiB"), Error);
  CHECK_THROWS_WITH_AS(parse_cli(run_args("linear", 2, out, {"--max-memory", "lots"})),
                       doctest::Contains("--max-memory is 'lots', expected a positive size"),
                       Error);
  CHECK(cli::parse_bytes("--max-memory", "8G") == 8.0 * 1024 * 1024 * 1024);
  CHECK(cli::parse_bytes("--max-memory", "1.5MiB") == 1.5 * 1024 * 1024);
  CHECK(cli::parse_bytes("--max-memory", "4096") == 4096);
  for (const char* bad : {"", "-1G", "0", "8X", "G", "nan", "1e308T"})
    CHECK_THROWS_AS(cli::parse_bytes("--max-memory", bad), Error);
  CHECK(train(run_args("linear", 2, out, {"--max-memory", "2G"})).steps_done == 2);
  fs::remove_all(out);
}

TEST_CASE("resume: --steps far beyond the run reserves nothing by the step count") {
  // 10^9 steps used to reserve a metrics row per step up front (std::bad_alloc); the run
  // now starts at once, and Ctrl-C stops it with a checkpoint as usual.
  const fs::path out = scratch("many-steps");
  const cli::TrainResult stopped =
      train(run_args("linear", 1000000000, out), [](const cli::StepRecord& r) {
        if (r.step == 3) std::raise(SIGINT);
      });
  CHECK(stopped.stopped_by == SIGINT);
  CHECK(stopped.steps_done == 3);
  CHECK(fs::exists(out / "checkpoint.safetensors"));
  fs::remove_all(out);
}

TEST_CASE("resume: the metrics rows are a tensor, checkpoints of the first format still resume") {
  const fs::path whole = scratch("v1-whole"), parts = scratch("v1-parts");
  const cli::TrainResult uninterrupted = train(run_args("momentum", 12, whole));
  (void)train(run_args("momentum", 6, parts));
  const std::string path = (parts / "checkpoint.safetensors").string();
  const SafetensorsFile v2 = load_safetensors(path);
  CHECK(v2.metadata.at("polyak.format") == "training-checkpoint/2");
  CHECK(!v2.metadata.contains("train.rows"));

  // train.rows of the wrong shape names the tensor.
  SafetensorsFile bad = v2;
  for (auto& [name, t] : bad.tensors)
    if (name == "train.rows") t = Tensor::zeros({6, 7}, DType::f64);
  save_safetensors(path, bad.tensors, bad.metadata);
  CHECK_THROWS_WITH_AS(
      train({"train", "--resume", parts.string(), "--steps", "12", "--quiet"}),
      doctest::Contains("tensor 'train.rows' is f64 [6,7], expected f64 [steps, 8]"), Error);

  // The first format: the rows as CSV text in the metadata.
  SafetensorsFile v1 = v2;
  std::string text;
  for (auto it = v1.tensors.begin(); it != v1.tensors.end(); ++it) {
    if (it->first != "train.rows") continue;
    const std::vector<double> v = it->second.to_vector();
    char line[512];
    for (size_t i = 0; i < v.size(); i += 8) {
      std::snprintf(line, sizeof line, "%lld,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g\n",
                    static_cast<long long>(v[i]), v[i + 1], v[i + 2], v[i + 3], v[i + 4], v[i + 5],
                    v[i + 6], v[i + 7]);
      text += line;
    }
    v1.tensors.erase(it);
    break;
  }
  v1.metadata["train.rows"] = text;
  v1.metadata["polyak.format"] = "training-checkpoint/1";
  save_safetensors(path, v1.tensors, v1.metadata);
  const cli::TrainResult resumed =
      train({"train", "--resume", parts.string(), "--steps", "12", "--quiet"});
  check_same_rows(resumed.records, uninterrupted.records);
  check_same_tensors(parts / "model.safetensors", whole / "model.safetensors");
  CHECK(load_safetensors(path).metadata.at("polyak.format") == "training-checkpoint/2");
  fs::remove_all(whole);
  fs::remove_all(parts);
}
