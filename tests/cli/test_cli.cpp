// The polyak program's option parsing (every rejected input names the flag, the value and
// what was expected) and a short end-to-end copy-task training run.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "cli/bench.h"
#include "cli/copy_run.h"
#include "cli/options.h"
#include "helpers.h"
#include "polyak/cuda/cuda.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::parse_cli;

TEST_CASE("cli: train defaults and the paper preset") {
  cli::Command d = parse_cli({"train"});
  CHECK(d.name == "train");
  CHECK(d.train.preset == "default");
  CHECK(d.train.steps >= 1);
  CHECK(d.train.out == "runs/copy-" + d.train.model);

  cli::Command p = parse_cli({"train", "--preset", "paper"});
  CHECK(p.train.model == "linear");
  CHECK(p.train.layers == 4);
  CHECK(p.train.heads == 8);
  CHECK(p.train.d_model == 256);
  CHECK(p.train.ff == 1024);
  CHECK(p.train.batch == 64);
  CHECK(p.train.length == 128);
  CHECK(p.train.lr == doctest::Approx(1e-3));
  CHECK(p.train.decay_step == 3000);
  TransformerConfig c = p.train.model_config(11);
  CHECK(c.resolved_head_dim() == 32);

  // Flags given explicitly override the preset, the rest keep it.
  cli::Command o = parse_cli({"train", "--preset", "paper", "--model", "softmax", "--steps", "7",
                              "--layers", "2", "--out", "somewhere"});
  CHECK(o.train.model == "softmax");
  CHECK(o.train.steps == 7);
  CHECK(o.train.layers == 2);
  CHECK(o.train.d_model == 256);
  CHECK(o.train.out == "somewhere");
}

TEST_CASE("cli: every causal model kind trains, with the paper's momentum values by default") {
  const TransformerConfig d = parse_cli({"train", "--model", "adaptive"}).train.model_config(11);
  const MomentumParams& dm = d.attention_params.as<MomentumParams>();
  CHECK(dm.beta == doctest::Approx(0.1));
  CHECK(dm.gamma == doctest::Approx(0.6));
  CHECK(dm.weighting == "exact");
  const AdaptiveConnectionParams& da = d.connection_params.as<AdaptiveConnectionParams>();
  CHECK(da.gamma == doctest::Approx(0.99));
  CHECK(da.delta == doctest::Approx(1e-3));
  CHECK(parse_cli({"train", "--model", "momentum-connection"})
            .train.model_config(11)
            .connection_params.as<MomentumConnectionParams>()
            .beta == doctest::Approx(0.99));
  for (const std::string& kind : cli::causal_model_kinds()) {
    CAPTURE(kind);
    cli::TrainOptions o = parse_cli({"train", "--model", kind}).train;
    CHECK(o.model == kind);
    CHECK(o.out == "runs/copy-" + kind);
    CHECK(model_kind(o.model_config(11)) == kind);
    CHECK(parse_cli({"bench", "--model", kind}).bench.train.model == kind);
  }

  cli::TrainOptions o =
      parse_cli({"train", "--model", "adaptive", "--beta", "0.3", "--gamma", "0.9", "--weighting",
                 "reference", "--conn-beta", "0.5", "--conn-gamma", "0.8", "--delta", "0.01"})
          .train;
  TransformerConfig c = o.model_config(11);
  CHECK(c.attention == "momentum");
  CHECK(c.connection == "adaptive");
  const MomentumParams& m = c.attention_params.as<MomentumParams>();
  CHECK(m.beta == doctest::Approx(0.3));
  CHECK(m.gamma == doctest::Approx(0.9));
  CHECK(m.weighting == "reference");
  const AdaptiveConnectionParams& a = c.connection_params.as<AdaptiveConnectionParams>();
  CHECK(a.gamma == doctest::Approx(0.8));
  CHECK(a.delta == doctest::Approx(0.01));
  // --conn-beta is the momentum connection's: the adaptive one has no β̃ to set.
  CHECK(parse_cli({"train", "--model", "momentum-connection", "--conn-beta", "0.5"})
            .train.model_config(11)
            .connection_params.as<MomentumConnectionParams>()
            .beta == doctest::Approx(0.5));
  CHECK(parse_cli({"train", "--model", "momentum", "--beta", "0"})  // β = 0 is allowed
            .train.model_config(11)
            .attention_params.as<MomentumParams>()
            .beta == 0.0);

  // The figure1 preset: the scaled comparison.
  cli::TrainOptions f = parse_cli({"train", "--preset", "figure1"}).train;
  CHECK(f.length == 64);
  CHECK(f.layers == 2);
  CHECK(f.d_model == 64);
  CHECK(f.eval_every >= 1);
}

TEST_CASE("cli: bench defaults to the paper preset and a few steps") {
  cli::Command b = parse_cli({"bench"});
  CHECK(b.name == "bench");
  CHECK(b.bench.train.preset == "paper");
  CHECK(b.bench.train.steps == 10);
  cli::Command s = parse_cli({"bench", "--steps", "3", "--model", "softmax", "--json", "x.json"});
  CHECK(s.bench.train.steps == 3);
  CHECK(s.bench.train.model == "softmax");
  CHECK(s.bench.json == "x.json");
}

TEST_CASE("cli: bad input is a polyak::Error naming the flag and the value") {
  check_error([] { parse_cli({}); }, {"polyak"});
  check_error([] { parse_cli({"fly"}); }, {"fly"});
  check_error(
      [] {
        parse_cli({"train", "--bogus"});
      },
      {"polyak train: unknown flag --bogus, see --help"});
  // A typo gets the nearest flag of the command, kind flags included.
  check_error(
      [] {
        parse_cli({"train", "--featurs", "3"});
      },
      {"polyak train: unknown flag --featurs, did you mean --features?"});
  check_error(
      [] {
        parse_cli({"bench", "--gemm-sise=3"});
      },
      {"polyak bench: unknown flag --gemm-sise, did you mean --gemm-size?"});
  check_error(
      [] {
        parse_cli({"ablate", "beta", "--valus", "0.1"});
      },
      {"polyak ablate beta: unknown flag --valus, did you mean --values?"});
  check_error([] { parse_cli({"train", "--steps", "2x"}); }, {"--steps", "2x"});
  check_error([] { parse_cli({"train", "--steps", "0"}); }, {"--steps", "0", "≥ 1"});
  check_error([] { parse_cli({"train", "--steps", "abc"}); }, {"--steps", "abc"});
  check_error([] { parse_cli({"train", "--batch", "-3"}); }, {"--batch", "-3", "≥ 1"});
  check_error([] { parse_cli({"train", "--layers", "-1"}); }, {"--layers", "-1"});
  check_error([] { parse_cli({"train", "--heads", "0"}); }, {"--heads", "0"});
  check_error([] { parse_cli({"train", "--d-model", "-64"}); }, {"--d-model", "-64"});
  check_error([] { parse_cli({"train", "--threads", "-2"}); }, {"--threads", "-2"});
  check_error(
      [] {
        parse_cli({"train", "--model", "quantum"});
      },
      {"--model", "quantum", "softmax"});
  check_error([] { parse_cli({"train", "--preset", "huge"}); }, {"--preset", "huge", "paper"});
  check_error([] { parse_cli({"train", "--lr", "-0.1"}); }, {"--lr", "-0.1"});
  check_error([] { parse_cli({"train", "--dropout", "1.5"}); }, {"--dropout", "1.5"});
  check_error(
      [] {
        parse_cli({"train", "--d-model", "30", "--heads", "4"});
      },
      {"--d-model", "--heads"});
  check_error([] { parse_cli({"train", "--length", "4"}); }, {"--length", "4"});
  check_error(
      [] {
        parse_cli({"train", "--model", "quantum"});
      },
      {"--model", "quantum", "momentum-connection", "adaptive"});
  check_error(
      [] {
        parse_cli({"bench", "--model", "quantum"});
      },
      {"--model", "quantum", "adaptive"});
  check_error([] { parse_cli({"train", "--beta", "1"}); }, {"--beta", "1", "[0, 1)"});
  check_error([] { parse_cli({"train", "--beta", "-0.1"}); }, {"--beta", "-0.1", "[0, 1)"});
  check_error([] { parse_cli({"train", "--beta", "nan"}); }, {"--beta"});
  check_error(
      [] {
        parse_cli({"train", "--gamma", "0"});
      },
      {"--gamma", "0", "expected a finite value > 0"});
  check_error(
      [] {
        parse_cli({"train", "--gamma", "-2"});
      },
      {"--gamma", "-2", "expected a finite value > 0"});
  check_error(
      [] {
        parse_cli({"train", "--weighting", "fancy"});
      },
      {"--weighting", "fancy", "exact, reference"});
  check_error([] { parse_cli({"train", "--conn-beta", "1.5"}); }, {"--conn-beta", "1.5", "[0, 1)"});
  check_error([] { parse_cli({"train", "--conn-gamma", "0"}); }, {"--conn-gamma", "0", "> 0"});
  check_error([] { parse_cli({"train", "--delta", "0"}); }, {"--delta", "0", "(0, 1)"});
  check_error([] { parse_cli({"train", "--delta", "1"}); }, {"--delta", "1", "(0, 1)"});
  check_error([] { parse_cli({"bench", "--beta", "2"}); }, {"--beta", "2"});
  check_error([] { parse_cli({"bench", "--gemm-size", "0"}); }, {"--gemm-size", "0"});
  check_error([] { parse_cli({"bench", "--warmup", "-1"}); }, {"--warmup", "-1"});
}

TEST_CASE("cli: --help is not an error") {
  bool helped = false;
  try {
    parse_cli({"train", "--help"});
  } catch (const cli::HelpRequested& h) {
    helped = h.text.find("--steps") != std::string::npos;
  }
  CHECK(helped);
}

TEST_CASE("cli: the FLOP count of a step follows the model's shapes") {
  TransformerConfig c;
  c.layers = 1;
  c.d_model = 4;
  c.heads = 1;
  c.ff_dim = 8;
  c.vocab = 3;
  c.attention = "linear";
  // per token: qkv 2·4·12 + out 2·4·4 + ff 2·2·4·8 + attention 2·16+2·16+16 + head 2·4·3
  double per_token = 96 + 32 + 128 + (32 + 32 + 16) + 24;
  CHECK(cli::forward_flops(c, 2, 5) == doctest::Approx(10 * per_token));
}

// The convergence check of the whole stack: a tiny copy task learns to > 90% word accuracy.
TEST_CASE("cli: a small softmax transformer learns the copy task") {
  std::filesystem::path out =
      std::filesystem::temp_directory_path() / ("polyak-test-copy-" + std::to_string(getpid()));
  std::filesystem::remove_all(out);
  cli::TrainOptions o =
      parse_cli({"train",      "--model",      "softmax", "--length",  "16", "--steps",
                 "400",        "--batch",      "32",      "--layers",  "2",  "--heads",
                 "2",          "--d-model",    "32",      "--ff",      "64", "--lr",
                 "3e-3",       "--eval-every", "400",     "--threads", "1",  "--out",
                 out.string(), "--quiet"})
          .train;
  cli::TrainResult r = cli::train_run(o, nullptr);
  INFO("test accuracy " << r.test_accuracy);
  CHECK(r.test_accuracy > 0.9);
  CHECK(r.test_reference_accuracy < r.test_accuracy);  // the separator cannot be predicted
  std::ifstream metrics(r.metrics_path);
  std::string header;
  std::getline(metrics, header);
  CHECK(header.rfind("step,loss,accuracy,lr,seconds,train_seconds", 0) == 0);
  CHECK(std::filesystem::exists(r.config_path));
  CHECK(std::filesystem::exists(r.model_path));
  CHECK(r.records.size() == 400);
  CHECK(r.train_seconds <= r.seconds);
  std::filesystem::remove_all(out);
}

TEST_CASE("cli: a non-finite loss names the step and the first layer that produced it") {
  cli::TrainOptions o = parse_cli({"train", "--length", "16", "--layers", "3", "--heads", "2",
                                   "--d-model", "16", "--ff", "32"})
                            .train;
  CopyTask task({.length = o.length, .seed = 3});
  TransformerLM model(o.model_config(task.vocab()));
  Batch batch = task.batch(4);
  Tensor w = model.parameter("layers.1.feed_forward.linear1.weight");
  {
    NoGradGuard no_grad;
    w.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  }
  check_error([&] { cli::copy_loss_backward(model, batch, 17, nullptr); },
              {"step 17", "layer 1", "loss"});
}

TEST_CASE("cli: --device names a device that is present, on every command that trains or runs") {
  CHECK(parse_cli({"train", "--device", "cpu"}).train.device == "cpu");
  CHECK(parse_cli({"generate", "--checkpoint", "m.safetensors", "--prompt", "1", "--device", "cpu"})
            .generate.device == "cpu");
  for (const char* command : {"train", "bench", "compare"}) {
    INFO(command);
    check_error(
        [&] {
          parse_cli({command, "--device", "gpu"});
        },
        {"--device", "'gpu' is not a device", "cpu, cuda, cuda:N"});
    check_error([&] { parse_cli({command, "--device", "cuda:x"}); }, {"--device", "'cuda:x'"});
  }
  if (!cuda::is_available()) {
    // A build without CUDA, or one with CUDA on a machine without a GPU: either way the
    // error says which, and how to run here.
    check_error([] { parse_cli({"train", "--device", "cuda"}); }, {"--device", "cuda:0"});
    check_error(
        [] {
          parse_cli(
              {"generate", "--checkpoint", "m.safetensors", "--prompt", "1", "--device", "cuda:1"});
        },
        {"--device", "cuda:1"});
  }
}

TEST_CASE("cli: --precision is f32 or bf16, and bf16 needs a GPU device") {
  for (const char* command : {"train", "bench", "compare"}) {
    INFO(command);
    const cli::Command f32 = parse_cli({command, "--precision", "f32"});
    CHECK(cli::precision_flag(command == std::string("train") ? f32.train
                              : command == std::string("bench")
                                  ? f32.bench.train
                                  : f32.experiment.train) == Precision::f32);
    check_error(
        [&] {
          parse_cli({command, "--precision", "fp16"});
        },
        {"--precision", "'fp16'", "f32 or bf16"});
    check_error(
        [&] {
          parse_cli({command, "--precision", "bf16"});
        },
        {"--precision bf16", "--device cpu", "GPU"});
    check_error(
        [&] {
          parse_cli({command, "--precision", "bf16", "--device", "cpu"});
        },
        {"--precision bf16", "--device cpu"});
  }
  CHECK(parse_cli({"train"}).train.precision == "f32");
  cli::TrainOptions on_gpu;
  on_gpu.device = "cuda:0";
  on_gpu.precision = "bf16";
  CHECK(cli::precision_flag(on_gpu) == Precision::bf16);  // the flag alone; not the GPU's presence
}

TEST_CASE("cli: a negative seed, too many threads and an empty --out are errors") {
  check_error(
      [] {
        parse_cli({"train", "--seed", "-1"});
      },
      {"--seed is -1, expected an integer ≥ 0"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--copy", "1", "--seed", "-5"});
      },
      {"--seed is -5, expected an integer ≥ 0"});
  CHECK(parse_cli({"train", "--seed", "18446744073709551615"}).train.seed == UINT64_MAX);
  check_error(
      [] {
        parse_cli({"train", "--threads", "1000"});
      },
      {"--threads is 1000, expected 0 (every core) to", "hardware threads here"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--copy", "1", "--threads", "-2"});
      },
      {"--threads is -2"});
  check_error(
      [] {
        parse_cli({"train", "--out", ""});
      },
      {"polyak: --out is empty, expected a directory for the run"});
  CHECK(parse_cli({"train"}).train.out == "runs/copy-linear");
}
