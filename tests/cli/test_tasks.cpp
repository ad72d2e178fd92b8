// The tasks beside the copy task (cli/tasks.h): each trains end to end on a tiny model and
// small splits, writes its own metrics columns and a checkpoint that loads; runs resume bit
// for bit; and the bad inputs of each are errors naming what is wrong.
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/copy_run.h"
#include "cli/generate.h"
#include "cli/options.h"
#include "cli/tasks.h"
#include "helpers.h"
#include "polyak/data/idx.h"
#include "polyak/data/text.h"
#include "run_checks.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::check_same_run;
using polyak::testing::parse_cli;

namespace {

namespace fs = std::filesystem;

fs::path scratch(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("polyak-tasks-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  return dir;
}

bool have_fashion_mnist() {
  return fs::exists(fs::path(default_fashion_mnist_dir()) / "t10k-labels-idx1-ubyte.gz");
}

// `command` (train, pixels, lra TASK…) on a tiny model: 1 layer, d 16, 4 sequences a step,
// small splits, one thread.
std::vector<std::string> tiny_task(std::vector<std::string> command, const fs::path& out,
                                   int64_t steps = 4, std::vector<std::string> extra = {}) {
  for (const char* a : {"--layers", "1", "--heads", "2", "--d-model", "16", "--ff", "32", "--batch",
                        "4", "--eval-every", "2", "--eval-batches", "1", "--threads", "1",
                        "--quiet", "--dropout", "0.1"})
    command.emplace_back(a);
  command.insert(command.end(), {"--steps", std::to_string(steps), "--out", out.string()});
  command.insert(command.end(), extra.begin(), extra.end());
  return command;
}

cli::TrainResult train(const std::vector<std::string>& args) {
  return cli::train_run(parse_cli(args).train, nullptr);
}

std::string first_line(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

TEST_CASE("tasks: each task trains, evaluates, saves its model and reloads it") {
  struct Case {
    std::vector<std::string> command;
    std::vector<std::string> extra;
    std::string header;  // metrics.csv's columns
    bool fashion;        // needs Fashion-MNIST
    std::string head;
  };
  const std::string clocks = "lr,seconds,train_seconds,";
  const std::vector<Case> cases = {
      {{"train", "--task", "text"},
       {"--length", "16"},
       "step,loss,bits_per_byte," + clocks + "test_bits_per_byte",
       false,
       "tokens"},
      {{"pixels"},
       {"--train-examples", "12", "--test-examples", "6"},
       "step,loss,bits_per_dim," + clocks + "test_bits_per_dim",
       true,
       "mixture"},
      {{"pixels"},
       {"--pixel-head", "softmax", "--train-examples", "12", "--test-examples", "6"},
       "step,loss,bits_per_dim," + clocks + "test_bits_per_dim",
       true,
       "tokens"},
      {{"lra", "listops"},
       {"--test-examples", "8"},
       "step,loss,accuracy," + clocks + "val_accuracy",
       false,
       "classes"},
      {{"lra", "pathfinder", "--model", "momentum"},
       {"--test-examples", "8", "--difficulty", "easy"},
       "step,loss,accuracy," + clocks + "val_accuracy",
       false,
       "classes"},
      {{"lra", "image", "--model", "linformer"},
       {"--train-examples", "16", "--test-examples", "8"},
       "step,loss,accuracy," + clocks + "val_accuracy",
       true,
       "classes"},
  };
  for (const Case& c : cases) {
    const std::string name = c.command.back() + "-" + c.head;
    CAPTURE(name);
    if (c.fashion && !have_fashion_mnist()) {
      MESSAGE("Fashion-MNIST is not installed (dataset-fashion-mnist): ", name, " not run");
      continue;
    }
    if (c.command.back() == "text" && !fs::exists(default_text_path())) {
      MESSAGE("dict-devil is not installed: ", name, " not run");
      continue;
    }
    const fs::path out = scratch(name);
    const cli::TrainResult r = train(tiny_task(c.command, out, 4, c.extra));
    REQUIRE(r.records.size() == 4);
    CHECK(r.records[1].test_accuracy >= 0);  // evaluated at step 2
    CHECK(r.records[0].test_accuracy < 0);
    CHECK(first_line(out / "metrics.csv") == c.header);
    CHECK(std::isfinite(r.test_accuracy));
    if (c.head == "classes") {
      CHECK(r.test_accuracy >= 0);
      CHECK(r.test_accuracy <= 1);
    } else {  // bits per byte or dim of an untrained model: near log2(256) = 8
      CHECK(r.test_accuracy > 4);
      CHECK(r.test_accuracy < 12);
    }
    CHECK(r.data_batches == 4);
    CHECK(!r.summary.empty());
    std::map<std::string, std::string> metadata;
    auto model = load_model((out / "model.safetensors").string(), &metadata);
    CHECK(model->config().head == c.head);
    CHECK(metadata["train.task"] == (c.command[0] == "train"    ? c.command[2]
                                     : c.command[0] == "pixels" ? "pixels"
                                                                : c.command[1]));
    fs::remove_all(out);
  }
}

TEST_CASE("tasks: runs of the classification and pixel tasks resume bit for bit") {
  std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> runs = {
      // Without a warmup the lr is constant, so the run may be resumed to more steps.
      {{"lra", "listops", "--model", "momentum"}, {"--test-examples", "8", "--warmup-steps", "0"}},
  };
  // 8 training images in batches of 4: the resumed run crosses an epoch's reshuffle.
  if (have_fashion_mnist())
    runs.push_back(
        {{"pixels", "--model", "adaptive"}, {"--train-examples", "8", "--test-examples", "4"}});
  for (const auto& [command, extra] : runs) {
    CAPTURE(command[0] + " " + command[1]);
    const fs::path whole = scratch("whole"), parts = scratch("parts");
    const cli::TrainResult uninterrupted = train(tiny_task(command, whole, 6, extra));
    train(tiny_task(command, parts, 3, extra));
    const cli::TrainResult resumed =
        train({"train", "--resume", parts.string(), "--steps", "6", "--quiet"});
    check_same_run(resumed, uninterrupted, parts, whole);
  }
}

TEST_CASE("tasks: bad input is an error naming the file, the flag or the kind") {
  const fs::path dir = scratch("bad");
  fs::create_directories(dir);
  const std::string empty = (dir / "empty.txt").string(), small = (dir / "small.txt").string();
  std::ofstream(empty).close();
  std::ofstream(small) << "too short";
  const fs::path out = dir / "run";
  check_error(
      [&] {
        train(tiny_task({"train", "--task", "text", "--data", empty}, out));
      },
      {"load_text", empty, "is empty"});
  check_error(
      [&] {
        train(tiny_task({"train", "--task", "text", "--data", small}, out, 4, {"--length", "16"}));
      },
      {small, "holds 9 bytes"});
  check_error(
      [&] {
        train(tiny_task({"train", "--task", "text", "--data", (dir / "none").string()}, out));
      },
      {(dir / "none").string()});
  check_error(
      [&] {
        train(tiny_task({"pixels", "--data", (dir / "no-images").string()}, out));
      },
      {"no-images", "dataset-fashion-mnist"});
  // Flags that the command line refuses before anything is read or trained.
  struct BadFlags {
    std::vector<std::string> command, fragments;
  };
  const std::vector<BadFlags> bad_flags = {
      {{"lra", "listops", "--model", "retention"},
       {"--model is 'retention'", "without a non-causal form", "listops",
        "softmax, linear, momentum"}},
      {{"pixels", "--model", "linformer"}, {"--model is", "linformer", "non-causal kind"}},
      {{"lra", "cifar"}, {"polyak lra: TASK is 'cifar'", "listops, pathfinder or image"}},
      {{"train", "--task", "images"},
       {"--task is 'images'", "copy, text, pixels, listops, pathfinder, image"}},
      {{"lra", "listops", "--preset", "pixels"},
       {"--preset pixels is a preset of the pixels task", "--task listops"}},
      {{"pixels", "--length", "100"}, {"--length is 100", "expected 784"}},
      {{"pixels", "--pixel-head", "gauss"}, {"--pixel-head is 'gauss'", "mixture or softmax"}},
      {{"lra", "pathfinder", "--difficulty", "x"},
       {"--difficulty is 'x'", "easy, intermediate or hard"}},
      {{"lra", "image", "--warmup-steps", "9"}, {"--warmup-steps is 9", "below --steps = 4"}},
      {{"lra", "image", "--train-examples", "-1"}, {"--train-examples is -1"}},
  };
  for (const BadFlags& b : bad_flags) {
    std::string command;
    for (const std::string& part : b.command) command += part + " ";
    CAPTURE(command);
    check_error([&] { parse_cli(tiny_task(b.command, out)); }, b.fragments);
  }
  check_error(
      [&] {
        train(tiny_task({"lra", "listops"}, out, 4, {"--train-examples", "3"}));
      },
      {"--batch is 4", "more than the 3 training examples of --train-examples"});
  fs::remove_all(dir);
}

TEST_CASE("tasks: the presets and the paper's per-task momentum settings") {
  const fs::path out = scratch("presets");
  const cli::TrainOptions listops = parse_cli({"lra", "listops", "--out", out.string()}).train;
  CHECK(listops.task == "listops");
  CHECK(listops.preset == "lra-cpu");
  CHECK(listops.length == 2000);
  CHECK(listops.layers == 2);
  CHECK(listops.d_model == 64);
  CHECK(listops.heads == 2);
  CHECK(listops.ff == 128);
  CHECK(std::get<double>(listops.kind_flags.at("--beta")) == 0.1);
  CHECK(std::get<double>(listops.kind_flags.at("--gamma")) == 0.6);
  const cli::TrainOptions image =
      parse_cli({"lra", "image", "--preset", "lra", "--beta", "0.5", "--out", out.string()}).train;
  CHECK(image.batch == 256);
  CHECK(image.steps == 35000);
  CHECK(image.warmup == 175);
  CHECK(image.lr == 1e-4);
  CHECK(std::get<double>(image.kind_flags.at("--beta")) == 0.5);  // given: kept
  CHECK(std::get<double>(image.kind_flags.at("--gamma")) == 0.9);
  const cli::TrainOptions path = parse_cli({"lra", "pathfinder", "--out", out.string()}).train;
  CHECK(std::get<double>(path.kind_flags.at("--beta")) == 0.3);
  CHECK(std::get<double>(path.kind_flags.at("--gamma")) == 0.1);
  const cli::TrainOptions pixels = parse_cli({"pixels", "--out", out.string()}).train;
  CHECK(pixels.length == 784);
  CHECK(std::get<double>(pixels.kind_flags.at("--beta")) == 0.6);
  CHECK(parse_cli({"pixels"}).train.out == "runs/pixels-linear");
  CHECK(parse_cli({"train", "--task", "text"}).train.out == "runs/text-linear");
  // A warmup longer than a short run's steps shrinks to a tenth of them.
  CHECK(parse_cli({"lra", "image", "--steps", "50", "--out", out.string()}).train.warmup == 5);
}

TEST_CASE("tasks: a text model continues a text prompt, a pixel model draws a PNG grid") {
  const fs::path text_run = scratch("gen-text");
  train(tiny_task({"train", "--task", "text"}, text_run, 2, {"--length", "16"}));
  cli::GenerateCommand g;
  g.checkpoint = (text_run / "model.safetensors").string();
  g.prompt = "The devil ";
  g.tokens = 5;
  const cli::GenerateReport text = cli::run_generate(g);
  CHECK(text.task == "text");
  CHECK(text.prompt_tokens == 10);  // the prompt's bytes
  CHECK(text.tokens.size() == 5);
  g.prompt = "";
  g.images = 2;
  check_error([&] { cli::run_generate(g); }, {"the text task", "expected a pixel model"});
  fs::remove_all(text_run);

  if (!have_fashion_mnist()) return;
  const fs::path pixel_run = scratch("gen-pixels");
  const cli::TrainResult r =
      train(tiny_task({"pixels"}, pixel_run, 2, {"--train-examples", "8", "--test-examples", "4"}));
  CHECK(fs::exists(pixel_run / "samples.png"));  // the run's own grid
  CHECK(r.made.find("samples.png") != std::string::npos);
  cli::GenerateCommand p;
  p.checkpoint = (pixel_run / "model.safetensors").string();
  p.images = 3;
  p.png = (pixel_run / "three.png").string();
  const cli::GenerateReport images = cli::run_generate(p);
  CHECK(images.images == 3);
  CHECK(images.state_bytes > 0);
  // A PNG of one row of three 56×56 cells framed by 1-pixel lines: 3·57 + 1 by 57 + 1.
  std::ifstream png(p.png, std::ios::binary);
  std::vector<unsigned char> head(24);
  png.read(reinterpret_cast<char*>(head.data()), 24);
  REQUIRE(png.good());
  CHECK(head[1] == 'P');
  CHECK(head[2] == 'N');
  CHECK(head[3] == 'G');
  auto be32 = [&](size_t at) {
    return (head[at] << 24) | (head[at + 1] << 16) | (head[at + 2] << 8) | head[at + 3];
  };
  CHECK(be32(16) == 3 * 57 + 1);
  CHECK(be32(20) == 57 + 1);
  fs::remove_all(pixel_run);
}

TEST_CASE("tasks: a run with a linear warmup and decay resumes within its schedule only") {
  // Stopped by SIGINT at step 3 of 8 and resumed: the same lr at every step as the run that
  // never stopped (warmup 2, then the decay to 0 at step 8).
  if (!have_fashion_mnist()) return;
  const std::vector<std::string> command = {"lra", "image", "--model", "adaptive"};
  const std::vector<std::string> extra = {"--warmup-steps",  "2", "--train-examples", "16",
                                          "--test-examples", "8"};
  const fs::path whole = scratch("warm-whole"), parts = scratch("warm-parts");
  const cli::TrainResult uninterrupted = train(tiny_task(command, whole, 8, extra));
  CHECK(uninterrupted.records[0].lr < uninterrupted.records[1].lr);  // warming up
  CHECK(uninterrupted.records[7].lr < uninterrupted.records[2].lr);  // decaying
  const cli::TrainResult stopped = cli::train_run(
      parse_cli(tiny_task(command, parts, 8, extra)).train, [](const cli::StepRecord& r) {
        if (r.step == 3) std::raise(SIGINT);
      });
  CHECK(stopped.steps_done == 3);
  check_error(
      [&] {
        parse_cli({"train", "--resume", parts.string(), "--steps", "12"});
      },
      {"--steps is 12", "linear warmup and decay", "expected --steps 8"});
  const cli::TrainResult resumed = train({"train", "--resume", parts.string(), "--quiet"});
  check_same_run(resumed, uninterrupted, parts, whole);
}
