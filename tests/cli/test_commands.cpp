// `polyak generate`, `polyak compare` and `polyak ablate`: their flags and defaults, every
// rejected input, and tiny end-to-end runs (train → checkpoint → generate; a two-kind
// comparison that writes its CSVs and, where matplotlib is installed, its PNG).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "cli/copy_run.h"
#include "cli/experiments.h"
#include "cli/generate.h"
#include "cli/options.h"
#include "helpers.h"
#include "polyak/models/checkpoint.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::parse_cli;
using polyak::testing::tiny;
namespace fs = std::filesystem;

namespace {

// A folder of this process alone: test runs in other build folders may run at the same time.
fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / (name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  return dir;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) out.push_back(line);
  return out;
}

bool has_matplotlib(const std::string& python) {
  std::string cmd = python + " -c 'import matplotlib' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace

TEST_CASE("cli: generate flags and their defaults") {
  cli::GenerateCommand g =
      parse_cli({"generate", "--checkpoint", "m.safetensors", "--prompt", "3 5 1 0"}).generate;
  CHECK(g.checkpoint == "m.safetensors");
  CHECK(cli::parse_prompt(g.prompt) == std::vector<int32_t>{3, 5, 1, 0});
  CHECK(g.tokens == 32);
  CHECK(g.copy == 0);
  CHECK(g.temperature == 0.0);
  CHECK(g.stop == -1);

  // Unquoted ids and commas work too.
  cli::GenerateCommand u =
      parse_cli({"generate", "--checkpoint", "m", "--prompt", "3", "5,1", "--tokens", "4",
                 "--temperature", "0.5", "--seed", "9", "--stop", "0"})
          .generate;
  CHECK(cli::parse_prompt(u.prompt) == std::vector<int32_t>{3, 5, 1});
  CHECK(u.tokens == 4);
  CHECK(u.temperature == doctest::Approx(0.5));
  CHECK(u.seed == 9);
  CHECK(u.stop == 0);

  cli::GenerateCommand c = parse_cli({"generate", "--checkpoint", "m", "--copy", "7"}).generate;
  CHECK(c.copy == 7);
  CHECK(c.prompt.empty());
}

TEST_CASE("cli: bad generate input names the flag and the value") {
  check_error([] { parse_cli({"generate", "--copy", "2"}); }, {"--checkpoint", "missing"});
  check_error([] { parse_cli({"generate", "--checkpoint", "m"}); }, {"--prompt", "--copy"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--copy", "2", "--prompt", "1"});
      },
      {"more than one of", "--prompt", "--copy"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--images", "2", "--copy", "1"});
      },
      {"more than one of", "--images"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--images", "0"});
      },
      {"--images", "0"});
  // Token ids are read when the checkpoint says the model is not a text model.
  check_error([] { cli::parse_prompt("3 x 1"); }, {"--prompt", "'x'", "token ids"});
  check_error([] { cli::parse_prompt("3 -1"); }, {"--prompt", "'-1'"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--prompt", " "});
      },
      {"--prompt", "empty"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--prompt", "1", "--tokens", "0"});
      },
      {"--tokens", "0", "≥ 1"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--copy", "0"});
      },
      {"--copy", "0", "≥ 1"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--copy", "2", "--tokens", "5"});
      },
      {"--tokens", "--copy"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--prompt", "1", "--temperature", "-1"});
      },
      {"--temperature", "-1"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--prompt", "1", "--stop", "-4"});
      },
      {"--stop", "-4"});
  check_error(
      [] {
        parse_cli({"generate", "--checkpoint", "m", "--prompt", "1", "--bogus"});
      },
      {"--bogus"});
}

TEST_CASE("cli: compare runs every causal kind on the figure1 preset by default") {
  cli::Command c = parse_cli({"compare"});
  CHECK(c.name == "compare");
  const cli::ExperimentOptions& e = c.experiment;
  CHECK(e.study == "compare");
  CHECK(e.kinds == cli::causal_model_kinds());
  CHECK(e.train.preset == "figure1");
  CHECK(e.train.out == "runs/figure1");
  CHECK(e.python == "/usr/bin/python3");
  CHECK(e.plot_script == cli::default_plot_script());
  CHECK(fs::exists(e.plot_script));

  // Every train flag applies; --kinds picks and orders the kinds.
  cli::ExperimentOptions k =
      parse_cli({"compare", "--kinds", "adaptive, linear", "--steps", "9", "--preset", "paper",
                 "--seed", "5", "--beta", "0.2", "--out", "x"})
          .experiment;
  CHECK(k.kinds == std::vector<std::string>{"adaptive", "linear"});
  CHECK(k.train.steps == 9);
  CHECK(k.train.layers == 4);
  CHECK(std::get<double>(k.train.kind_flags.at("--beta")) == doctest::Approx(0.2));
  CHECK(k.train.out == "x");

  // One seed, hence one data stream, for every run; each run in its own folder.
  std::vector<cli::ExperimentRun> runs = cli::experiment_runs(k);
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].options.model == "adaptive");
  CHECK(runs[1].options.model == "linear");
  CHECK(runs[1].label == "linear");
  for (const cli::ExperimentRun& r : runs) {
    CHECK(r.options.seed == 5);
    CHECK(std::get<double>(r.options.kind_flags.at("--beta")) == doctest::Approx(0.2));
    CHECK(r.options.out == (fs::path("x") / r.name).string());
  }
}

TEST_CASE("cli: ablate beta and ablate connection, their runs and labels") {
  cli::ExperimentOptions b = parse_cli({"ablate", "beta"}).experiment;
  CHECK(b.study == "beta");
  CHECK(b.values == std::vector<double>{0, 0.1, 0.3, 0.6, 0.9});
  CHECK(b.train.model == "adaptive");  // the paper's Figure 5
  CHECK(b.train.preset == "figure1");
  CHECK(b.train.out == "runs/ablate-beta");
  cli::ExperimentOptions m = parse_cli({"ablate", "beta", "--values", "0.3,0.6", "--model",
                                        "momentum", "--gamma", "0.9", "--steps", "11"})
                                 .experiment;
  std::vector<cli::ExperimentRun> beta_runs = cli::experiment_runs(m);
  REQUIRE(beta_runs.size() == 2);
  CHECK(beta_runs[0].label == "β = 0.3");
  CHECK(beta_runs[0].name == "beta-0.3");
  CHECK(beta_runs[1].options.model_config(11).attention_params.as<MomentumParams>().beta ==
        doctest::Approx(0.6));
  for (const cli::ExperimentRun& r : beta_runs) {
    CHECK(r.options.model == "momentum");
    // γ stays fixed
    CHECK(r.options.model_config(11).attention_params.as<MomentumParams>().gamma ==
          doctest::Approx(0.9));
    CHECK(r.options.steps == 11);
  }

  cli::ExperimentOptions c = parse_cli({"ablate", "connection"}).experiment;
  CHECK(c.study == "connection");
  CHECK(c.values == std::vector<double>{0.5, 0.9, 0.99});
  CHECK(c.train.out == "runs/ablate-connection");
  std::vector<cli::ExperimentRun> conn_runs = cli::experiment_runs(c);
  REQUIRE(conn_runs.size() == 4);
  CHECK(conn_runs[1].label == "β̃ = 0.9");
  CHECK(conn_runs[1].options.model == "momentum-connection");
  CHECK(
      conn_runs[1].options.model_config(11).connection_params.as<MomentumConnectionParams>().beta ==
      doctest::Approx(0.9));
  CHECK(conn_runs[3].label == "adaptive");
  CHECK(conn_runs[3].options.model == "adaptive");
}

TEST_CASE("cli: bad compare and ablate input names the flag and the value") {
  check_error(
      [] {
        parse_cli({"compare", "--kinds", "linear,quantum"});
      },
      {"--kinds", "quantum", "momentum-connection"});
  check_error([] { parse_cli({"compare", "--kinds", "linear,linear"}); }, {"--kinds", "twice"});
  check_error([] { parse_cli({"compare", "--kinds", ""}); }, {"--kinds"});
  check_error([] { parse_cli({"compare", "--model", "linear"}); }, {"--model", "--kinds"});
  check_error([] { parse_cli({"compare", "--steps", "0"}); }, {"--steps", "0"});
  check_error([] { parse_cli({"compare", "--beta", "1"}); }, {"--beta", "1"});
  check_error([] { parse_cli({"compare", "--python", ""}); }, {"--python"});
  check_error([] { parse_cli({"ablate"}); }, {"ablate", "beta, connection"});
  check_error([] { parse_cli({"ablate", "gamma"}); }, {"gamma", "beta, connection"});
  check_error(
      [] {
        parse_cli({"ablate", "beta", "--values", "0,1"});
      },
      {"--values", "1", "[0, 1)"});
  check_error([] { parse_cli({"ablate", "beta", "--values", "0,abc"}); }, {"--values", "abc"});
  check_error([] { parse_cli({"ablate", "beta", "--values", "0.1,0.1"}); }, {"--values", "twice"});
  check_error([] { parse_cli({"ablate", "beta", "--values", ""}); }, {"--values"});
  check_error(
      [] {
        parse_cli({"ablate", "beta", "--model", "linear"});
      },
      {"--model", "linear", "momentum attention"});
  check_error(
      [] {
        parse_cli({"ablate", "connection", "--values", "-0.5"});
      },
      {"--values", "-0.5", "β̃"});
  check_error([] { parse_cli({"ablate", "connection", "--model", "adaptive"}); }, {"--model"});
}

TEST_CASE("cli: the summary's final loss is the mean of the last 100 steps") {
  cli::TrainResult r;
  for (int64_t step = 1; step <= 150; ++step) {
    cli::StepRecord rec;
    rec.step = step;
    rec.loss = step <= 50 ? 100.0 : 2.0;
    rec.train_seconds = 0.5 * static_cast<double>(step);
    if (step % 10 == 0) rec.test_accuracy = step >= 120 ? 0.95 : 0.5;
    r.records.push_back(rec);
  }
  r.train_seconds = 75;
  r.seconds = 80;
  r.test_accuracy = 0.97;
  cli::ExperimentRun run{"linear", "linear", {}};
  run.options.model = "linear";
  cli::RunSummary s = cli::summarize(run, r);
  CHECK(s.final_train_loss == doctest::Approx(2.0));
  CHECK(s.final_test_accuracy == doctest::Approx(0.97));
  CHECK(s.seconds_per_100_steps == doctest::Approx(50.0));
  CHECK(s.total_seconds == doctest::Approx(80.0));
  CHECK(s.steps_to_90 == 120);
  CHECK(s.train_seconds_to_90 == doctest::Approx(60.0));

  std::vector<std::string> csv = lines(cli::summary_csv({s}));
  REQUIRE(csv.size() == 2);
  CHECK(csv[0].rfind("run,label,kind,status,steps,final_train_loss,final_test_accuracy", 0) == 0);
  CHECK(csv[1].rfind("linear,linear,linear,ok,150,2,0.97,50,75,80,120,60", 0) == 0);
}

TEST_CASE("cli: train writes a checkpoint that generate runs on") {
  fs::path dir = fresh_dir("polyak-test-generate");
  cli::TrainOptions o = parse_cli(tiny({"train", "--model", "momentum"}, dir)).train;
  cli::TrainResult r = cli::train_run(o, nullptr);
  CHECK(fs::exists(dir / "metrics.csv"));
  CHECK(fs::exists(dir / "config.json"));
  REQUIRE(r.model_path == (dir / "model.safetensors").string());
  REQUIRE(fs::exists(r.model_path));
  const std::string config_json = read_file(dir / "config.json");
  CHECK(config_json.find("\"attention_params\"") != std::string::npos);
  CHECK(config_json.find("\"weighting\"") != std::string::npos);

  std::map<std::string, std::string> meta;
  std::shared_ptr<TransformerLM> model = load_model(r.model_path, &meta);
  CHECK(model_kind(model->config()) == "momentum");
  CHECK(meta.at("copy.length") == "16");
  CHECK(meta.at("train.steps") == "6");

  cli::GenerateReport g = cli::run_generate(
      parse_cli({"generate", "--checkpoint", r.model_path, "--prompt", "3 5 1 0", "--tokens", "5"})
          .generate);
  CHECK(g.kind == "momentum");
  REQUIRE(g.tokens.size() == 5);
  for (int32_t t : g.tokens) CHECK((t >= 0 && t < 11));
  CHECK(g.prompt_tokens == 4);
  CHECK(g.generated_tokens == 5);
  CHECK(g.timed_tokens == 4);

  // Greedy generation is deterministic and matches the model's own argmax chain.
  cli::GenerateReport again = cli::run_generate(
      parse_cli({"generate", "--checkpoint", r.model_path, "--prompt", "3 5 1 0", "--tokens", "5"})
          .generate);
  CHECK(again.tokens == g.tokens);

  cli::GenerateReport c = cli::run_generate(
      parse_cli({"generate", "--checkpoint", r.model_path, "--copy", "3"}).generate);
  CHECK(c.words == 3);
  CHECK(c.words_exact <= 3);
  CHECK(c.word_tokens >= 3 * 4);  // L = 16: words of 4 to 6 symbols
  CHECK(c.word_tokens_right <= c.word_tokens);
  CHECK(c.generated_tokens == c.word_tokens);
  CHECK(c.prompt_tokens == c.word_tokens + 3);  // "w 0"
  CHECK(c.examples.size() == 3);

  // Bad input against a real checkpoint.
  check_error(
      [&] {
        cli::run_generate(
            parse_cli({"generate", "--checkpoint", r.model_path, "--prompt", "3 11"}).generate);
      },
      {"--prompt", "11", "[0, 11)"});
  check_error(
      [&] {
        cli::run_generate(
            parse_cli({"generate", "--checkpoint", r.model_path, "--prompt", "3", "--stop", "12"})
                .generate);
      },
      {"--stop", "12"});
  fs::path missing = dir / "missing.safetensors";
  check_error(
      [&] {
        cli::run_generate(
            parse_cli({"generate", "--checkpoint", missing.string(), "--prompt", "1"}).generate);
      },
      {missing.string()});
  fs::path corrupt = dir / "corrupt.safetensors";
  std::string bytes = read_file(r.model_path);
  std::ofstream(corrupt, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  check_error(
      [&] {
        cli::run_generate(
            parse_cli({"generate", "--checkpoint", corrupt.string(), "--prompt", "1"}).generate);
      },
      {corrupt.string()});

  // A checkpoint saved without the copy task's metadata cannot serve --copy.
  fs::path bare = dir / "bare.safetensors";
  save_model(*model, bare.string());
  check_error(
      [&] {
        cli::run_generate(
            parse_cli({"generate", "--checkpoint", bare.string(), "--copy", "1"}).generate);
      },
      {bare.string(), "copy.length"});

  // A non-causal model cannot generate.
  TransformerConfig nc = model->config();
  nc.causal = false;
  TransformerLM encoder(nc);
  fs::path encoder_path = dir / "encoder.safetensors";
  save_model(encoder, encoder_path.string());
  check_error(
      [&] {
        cli::run_generate(
            parse_cli({"generate", "--checkpoint", encoder_path.string(), "--prompt", "1"})
                .generate);
      },
      {encoder_path.string(), "non-causal"});
  fs::remove_all(dir);
}

TEST_CASE("cli: a tiny comparison writes every run's files, the summary and the figure") {
  fs::path dir = fresh_dir("polyak-test-compare");
  cli::ExperimentOptions e =
      parse_cli(tiny({"compare", "--kinds", "linear,momentum-connection"}, dir)).experiment;
  std::vector<std::string> started;
  cli::ExperimentCallbacks cb;
  cb.on_run_start = [&](const cli::ExperimentRun& run, size_t, size_t) {
    started.push_back(run.name);
  };
  cli::ExperimentResult r = cli::run_experiment(e, cb);
  CHECK(started == std::vector<std::string>{"linear", "momentum-connection"});
  CHECK(r.failed_runs == 0);
  for (const char* kind : {"linear", "momentum-connection"}) {
    CAPTURE(kind);
    CHECK(fs::exists(dir / kind / "metrics.csv"));
    CHECK(fs::exists(dir / kind / "config.json"));
    CHECK(fs::exists(dir / kind / "model.safetensors"));
    std::vector<std::string> metrics = lines(read_file(dir / kind / "metrics.csv"));
    CHECK(metrics.size() == 7);  // header and 6 steps
  }
  REQUIRE(r.summary_path == (dir / "summary.csv").string());
  std::vector<std::string> summary = lines(read_file(r.summary_path));
  REQUIRE(summary.size() == 3);
  CHECK(summary[1].rfind("linear,linear,linear,ok,6,", 0) == 0);
  CHECK(summary[2].rfind("momentum-connection,momentum-connection,momentum-connection,ok,6,", 0) ==
        0);
  REQUIRE(r.runs.size() == 2);
  CHECK(r.runs[0].final_train_loss > 0);

  CHECK(r.png_path == (dir / "figure1.png").string());
  if (has_matplotlib(e.python)) {
    INFO(r.plot.message);
    REQUIRE(r.plot.drawn);
    std::string png = read_file(r.png_path);
    CHECK(png.rfind("\x89PNG\r\n\x1a\n", 0) == 0);
  } else {
    MESSAGE("matplotlib is not installed: the PNG is not checked");
    CHECK(!r.plot.drawn);
  }

  // Without a usable Python the CSVs stand and the result says why no PNG was drawn.
  cli::PlotResult missing = cli::draw_plot("/nonexistent/python3", e.plot_script, dir.string(),
                                           (dir / "other.png").string(), "title");
  CHECK(!missing.drawn);
  CHECK(missing.message.find("/nonexistent/python3") != std::string::npos);
  CHECK(!fs::exists(dir / "other.png"));
  fs::remove_all(dir);
}
