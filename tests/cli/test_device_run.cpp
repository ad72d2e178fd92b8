// `polyak train --device` end to end on the fake device (tests/fake_device.h: CUDA's kernel
// bodies run on the host), against the same run on the CPU: every causal kind trains with the
// same losses, and the step reads nothing back to the host between the reads that
// --sync-every asks for.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cli/copy_run.h"
#include "cli/options.h"
#include "fake_device.h"
#include "helpers.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::parse_cli;

namespace {

// Trains a tiny model; `reads` gets, for each step's record, the number of reads to the host
// made before the record was delivered.
cli::TrainResult tiny_run(const std::string& kind, const std::string& device,
                          const std::string& sync_every, std::vector<int>* reads = nullptr,
                          const std::string& precision = "f32", bool graph = false) {
  const std::filesystem::path out =
      std::filesystem::temp_directory_path() /
      ("polyak-test-device-" + kind + "-" + device + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(out);
  std::vector<std::string> args = {
      "train", "--model",   kind,         "--length",     "16",       "--steps",
      "12",    "--batch",   "4",          "--layers",     "2",        "--heads",
      "2",     "--d-model", "16",         "--ff",         "32",       "--lr",
      "3e-3",  "--dropout", "0.1",        "--eval-every", "5",        "--eval-batches",
      "2",     "--device",  device,       "--sync-every", sync_every, "--threads",
      "1",     "--out",     out.string(), "--precision",  precision,  "--quiet"};
  if (graph) args.push_back("--graph");
  cli::TrainOptions o = parse_cli(args).train;
  testing::fake::calls().erase("to_host");
  cli::TrainResult r = cli::train_run(o, [&](const cli::StepRecord&) {
    if (reads) reads->push_back(testing::fake::calls()["to_host"]);
  });
  std::filesystem::remove_all(out);
  return r;
}

}  // namespace

TEST_CASE("cli: train --device runs the CPU's training on a device, reading it every N steps") {
  (void)testing::fake_device();  // registers the ext backend
  for (const std::string& kind : cli::causal_model_kinds()) {
    INFO(kind);
    const cli::TrainResult cpu = tiny_run(kind, "cpu", "0");
    std::vector<int> reads;
    const cli::TrainResult dev = tiny_run(kind, "ext:0", "4", &reads);
    REQUIRE(dev.records.size() == cpu.records.size());
    for (size_t i = 0; i < cpu.records.size(); ++i) {
      INFO("step " << cpu.records[i].step);
      CHECK(dev.records[i].step == cpu.records[i].step);
      CHECK(dev.records[i].loss == doctest::Approx(cpu.records[i].loss).epsilon(1e-3));
      CHECK(dev.records[i].lr == cpu.records[i].lr);
      CHECK(std::abs(dev.records[i].accuracy - cpu.records[i].accuracy) <= 0.1);
      CHECK((dev.records[i].test_accuracy >= 0) == (cpu.records[i].test_accuracy >= 0));
    }
    // Steps 1 to 4 read nothing; their records come together after step 4, from one read of
    // their four losses and one of their predictions. Step 5 evaluates (reads there), and
    // its record comes at once; steps 6 to 9 read nothing again until their group's two.
    REQUIRE(reads.size() == 12);
    for (size_t i = 0; i < 4; ++i) CHECK(reads[i] == 2);
    CHECK(reads[4] > reads[3] + 2);
    for (size_t i = 5; i < 9; ++i) CHECK(reads[i] == reads[4] + 2);
  }
}

TEST_CASE("cli: train --precision bf16 on a device stays near the f32 run") {
  (void)testing::fake_device();
  for (const std::string kind : {"momentum", "softmax"}) {
    INFO(kind);
    const cli::TrainResult f32 = tiny_run(kind, "ext:0", "0");
    const cli::TrainResult bf16 = tiny_run(kind, "ext:0", "0", nullptr, "bf16");
    REQUIRE(bf16.records.size() == f32.records.size());
    bool differs = false;
    for (size_t i = 0; i < f32.records.size(); ++i) {
      INFO("step " << f32.records[i].step);
      // GEMM inputs rounded to 8 significant bits, f32 accumulation: docs/design.md, "Precision".
      CHECK(bf16.records[i].loss == doctest::Approx(f32.records[i].loss).epsilon(1e-2));
      differs = differs || bf16.records[i].loss != f32.records[i].loss;
    }
    CHECK(differs);
  }
}

TEST_CASE("cli: train --graph replays the captured step with the eager run's losses") {
  (void)testing::fake_device();
  for (const std::string& kind : cli::causal_model_kinds()) {
    INFO(kind);
    const cli::TrainResult eager = tiny_run(kind, "ext:0", "4");
    testing::fake::calls().erase("graph_launch");
    testing::fake::calls().erase("capture_begin");
    std::vector<int> reads;
    const cli::TrainResult graph = tiny_run(kind, "ext:0", "4", &reads, "f32", true);
    // Step 1 eager, step 2 captured, and every step from 2 on a replay of the one capture.
    CHECK(testing::fake::calls()["capture_begin"] == 1);
    CHECK(testing::fake::calls()["graph_launch"] == 11);
    REQUIRE(graph.records.size() == eager.records.size());
    for (size_t i = 0; i < eager.records.size(); ++i) {
      INFO("step " << eager.records[i].step);
      CHECK(graph.records[i].loss == eager.records[i].loss);  // the same launches
      CHECK(graph.records[i].lr == eager.records[i].lr);
      CHECK(graph.records[i].accuracy == eager.records[i].accuracy);
      CHECK(graph.records[i].test_accuracy == eager.records[i].test_accuracy);
    }
    CHECK(graph.test_accuracy == eager.test_accuracy);
    // The replays read nothing back either: the same reads as the eager run.
    REQUIRE(reads.size() == 12);
    for (size_t i = 0; i < 4; ++i) CHECK(reads[i] == 2);
  }
}

TEST_CASE("cli: train --graph on the CPU is an error naming the flags") {
  CHECK_THROWS_WITH_AS(
      parse_cli({"train", "--graph", "--device", "cpu", "--quiet"}),
      doctest::Contains("--graph with --device cpu, expected --device cuda or cuda:N"), Error);
}
