// The attention kinds' flags (TransNormer, Mega, Performer, Linformer), the copy task's
// refusal of non-causal kinds, their FLOP counts, and `polyak inspect-grads`: its flags, its
// CSVs and a tiny run per kind and from checkpoints.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "cli/bench.h"
#include "cli/copy_run.h"
#include "cli/inspect.h"
#include "cli/options.h"
#include "files.h"
#include "helpers.h"
#include "polyak/models/checkpoint.h"
#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;
using polyak::testing::parse_cli;
using polyak::testing::read_bytes;
using polyak::testing::TempDir;
using polyak::testing::tiny;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) out.push_back(line);
  return out;
}

std::vector<double> fields(const std::string& line) {
  std::vector<double> out;
  std::stringstream is(line);
  for (std::string item; std::getline(is, item, ',');) out.push_back(std::stod(item));
  return out;
}

bool has_matplotlib(const std::string& python) {
  std::string cmd = python + " -c 'import matplotlib' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("cli: the attention kinds' flags reach the model's config") {
  // Every kind's defaults, but the preset's block.
  cli::TrainOptions d = parse_cli({"train"}).train;
  CHECK(d.kind_flags == std::map<std::string, ParamValue>{{"--block-size", int64_t{16}}});
  auto params_of = [](cli::TrainOptions o, const std::string& kind) {
    o.model = kind;
    return o.model_config(11).attention_params;
  };
  CHECK(params_of(d, "performer") == Params(PerformerParams{.features = 64, .redraw = 1000}));
  CHECK(params_of(d, "mega-chunk") == Params(MegaChunkParams{.block_size = 16}));
  // TransNormer's own block for the paper's L = 128; blocks of 16 where L is 32 or 64, so
  // that DiagAttention and Mega-chunk do not see the whole sequence.
  auto block = [](const cli::TrainOptions& o) {
    return std::get<int64_t>(o.kind_flags.at("--block-size"));
  };
  CHECK(block(parse_cli({"train", "--preset", "paper"}).train) == 64);
  CHECK(block(parse_cli({"train", "--preset", "figure1"}).train) == 16);

  cli::TrainOptions o =
      parse_cli({"train", "--model", "mega-chunk", "--block-size", "8", "--features", "32",
                 "--redraw", "0", "--linformer-k", "12", "--ema-dim", "4", "--z-dim", "24",
                 "--mega-attention", "laplace"})
          .train;
  TransformerConfig c = o.model_config(11);
  CHECK(model_kind(c) == "mega-chunk");
  CHECK(
      c.attention_params ==
      Params(MegaChunkParams{.ema_dim = 4, .z_dim = 24, .attention = "laplace", .block_size = 8}));
  CHECK(c.causal);
  CHECK(c.max_len == o.length);  // Mega's bias covers the whole sequence
  // The flags of other kinds wait in the options for a kind that has them.
  CHECK(params_of(o, "performer") == Params(PerformerParams{.features = 32, .redraw = 0}));
  CHECK(params_of(o, "transnormer") == Params(TransNormerParams{.block_size = 8}));

  // Every command that configures a model takes them.
  const std::vector<std::string> flags = {"--block-size", "8", "--z-dim", "24"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), flags.begin(), flags.end());
    return parse_cli(args);
  };
  auto z = [](const cli::TrainOptions& t) { return std::get<int64_t>(t.kind_flags.at("--z-dim")); };
  CHECK(block(with({"bench"}).bench.train) == 8);
  CHECK(block(with({"compare"}).experiment.train) == 8);
  CHECK(z(with({"ablate", "beta"}).experiment.train) == 24);
  CHECK(block(with({"ablate", "connection"}).experiment.train) == 8);
  CHECK(z(with({"inspect-grads"}).inspect.train) == 24);
}

TEST_CASE("cli: bad kind settings are errors naming the flag, from the kinds' tables") {
  check_error(
      [] {
        parse_cli({"train", "--block-size", "0"});
      },
      {"--block-size", "is 0", "positive"});
  check_error([] { parse_cli({"train", "--features", "0"}); }, {"--features", "is 0", "positive"});
  check_error([] { parse_cli({"train", "--redraw", "-1"}); }, {"--redraw", "is -1", "≥ 0"});
  check_error([] { parse_cli({"train", "--linformer-k", "0"}); }, {"--linformer-k", "is 0"});
  check_error([] { parse_cli({"train", "--ema-dim", "-2"}); }, {"--ema-dim", "is -2"});
  check_error([] { parse_cli({"train", "--z-dim", "0"}); }, {"--z-dim", "is 0"});
  check_error(
      [] {
        parse_cli({"train", "--mega-attention", "relu"});
      },
      {"--mega-attention", "'relu'", "softmax, laplace"});
  check_error([] { parse_cli({"train", "--block-size", "abc"}); }, {"--block-size", "abc"});
  check_error([] { parse_cli({"compare", "--z-dim", "0"}); }, {"--z-dim", "is 0"});
  check_error(
      [] {
        parse_cli({"inspect-grads", "--block-size", "-1"});
      },
      {"--block-size", "is -1"});
  check_error([] { parse_cli({"bench", "--features", "-3"}); }, {"--features", "is -3"});
}

TEST_CASE("cli: Linformer is non-causal and the copy task is causal") {
  std::vector<std::string> causal;
  for (const std::string& kind : model_kinds())
    if (kind != "linformer") causal.push_back(kind);
  REQUIRE(causal.size() + 1 == model_kinds().size());
  CHECK(cli::causal_model_kinds() == causal);

  const std::vector<std::string> why = {"linformer", "non-causal", "copy task is causal"};
  check_error([] { parse_cli({"train", "--model", "linformer"}); }, why);
  check_error([] { parse_cli({"bench", "--model", "linformer"}); }, why);
  check_error([] { parse_cli({"compare", "--kinds", "linear,linformer"}); }, why);
  check_error([] { parse_cli({"inspect-grads", "--kinds", "linformer"}); }, why);
  check_error([] { parse_cli({"ablate", "beta", "--model", "linformer"}); }, why);
  // The config says so too, for a model built outside the program.
  TransformerConfig c;
  set_model_kind(c, "linformer");
  c.causal = true;
  check_error([&] { c.validate(); }, {"linformer", "causal"});
}

TEST_CASE("cli: the model line names each kind's settings") {
  auto settings = [](std::vector<std::string> args) {
    args.insert(args.begin(), "train");
    return cli::kind_settings(parse_cli(args).train);
  };
  CHECK(settings({"--model", "softmax"}).empty());
  CHECK(settings({"--model", "linear"}) ==
        "linear attention: --feature-map elu, --attention-eps 1e-06");
  const std::string momentum =
      "momentum attention: --feature-map elu, --attention-eps 1e-06, --beta 0.1, --gamma 0.6, "
      "--weighting exact";
  CHECK(settings({"--model", "momentum"}) == momentum);
  CHECK(settings({"--model", "adaptive", "--delta", "0.01"}) ==
        momentum +
            "; the adaptive connection: --conn-gamma 0.99, --delta 0.01, --conn-eps 1e-06, "
            "--denominator velocity");
  CHECK(settings({"--model", "momentum-connection", "--conn-beta", "0.9"}) ==
        momentum + "; the momentum connection: --conn-beta 0.9, --conn-gamma 0.99");
  CHECK(settings({"--model", "transnormer", "--preset", "figure1", "--layers", "4"}) ==
        "TransNormer (layers diag, diag, norm, norm): --block-size 16, --feature-map elu");
  CHECK(settings({"--model", "mega", "--preset", "figure1"}) ==
        "Mega: --ema-dim 16, --z-dim 64, --v-dim 0, --mega-attention softmax");
  CHECK(settings({"--model", "mega-chunk", "--mega-attention", "laplace", "--block-size", "8"}) ==
        "Mega-chunk: --ema-dim 16, --z-dim 64, --v-dim 0, --mega-attention laplace, "
        "--block-size 8");
  CHECK(settings({"--model", "performer", "--features", "32", "--redraw", "0"}) ==
        "Performer: --features 32, --redraw 0, --attention-eps 1e-06");
}

TEST_CASE("cli: inspect-grads flags and their defaults") {
  cli::Command c = parse_cli({"inspect-grads"});
  CHECK(c.name == "inspect-grads");
  const cli::InspectOptions& d = c.inspect;
  CHECK(d.kinds == std::vector<std::string>{"linear", "transnormer", "momentum"});
  CHECK(d.checkpoints.empty());
  CHECK(d.train.preset == "figure1");
  CHECK(d.train.out == "runs/grads");
  CHECK(d.train.steps == 2000);
  CHECK(d.every == 10);
  CHECK(d.python == "/usr/bin/python3");
  CHECK(d.plot_script == cli::default_plot_script("plot_grads.py"));
  CHECK(fs::exists(d.plot_script));

  cli::InspectOptions o =
      parse_cli({"inspect-grads", "--kinds", "softmax, performer", "--steps", "30", "--every", "7",
                 "--seed", "3", "--lr", "2e-3", "--out", "x"})
          .inspect;
  CHECK(o.kinds == std::vector<std::string>{"softmax", "performer"});
  CHECK(o.train.steps == 30);
  CHECK(o.every == 7);
  CHECK(o.train.seed == 3);
  CHECK(o.train.lr == doctest::Approx(2e-3));
  CHECK(o.train.out == "x");
  CHECK(cli::inspect_run_names(o) == o.kinds);

  cli::InspectOptions k =
      parse_cli({"inspect-grads", "--checkpoints",
                 "runs/figure1/linear/model.safetensors,runs/x/momentum.safetensors,"
                 "other/linear/model.safetensors"})
          .inspect;
  CHECK(k.kinds.empty());
  REQUIRE(k.checkpoints.size() == 3);
  CHECK(k.checkpoints[1] == "runs/x/momentum.safetensors");
  CHECK(cli::inspect_run_names(k) == std::vector<std::string>{"linear-1", "momentum", "linear-3"});

  check_error([] { parse_cli({"inspect-grads", "--every", "0"}); }, {"--every", "0", "≥ 1"});
  check_error([] { parse_cli({"inspect-grads", "--steps", "0"}); }, {"--steps", "0"});
  check_error(
      [] {
        parse_cli({"inspect-grads", "--kinds", "linear", "--checkpoints", "m.safetensors"});
      },
      {"--kinds", "--checkpoints", "one of them"});
  check_error(
      [] {
        parse_cli({"inspect-grads", "--checkpoints", ""});
      },
      {"--checkpoints", "empty"});
  check_error(
      [] {
        parse_cli({"inspect-grads", "--checkpoints", "a,,b"});
      },
      {"--checkpoints", "'a,,b'", "empty entry"});
  check_error([] { parse_cli({"inspect-grads", "--kinds", "quantum"}); }, {"--kinds", "quantum"});
  check_error(
      [] {
        parse_cli({"inspect-grads", "--kinds", "linear,linear"});
      },
      {"--kinds", "twice"});
  check_error([] { parse_cli({"inspect-grads", "--model", "linear"}); }, {"--model", "--kinds"});
  check_error([] { parse_cli({"inspect-grads", "--python", ""}); }, {"--python"});
}

TEST_CASE("cli: the gradient CSV and the per-layer median and maximum") {
  cli::GradRun run;
  run.layer_attention = {"diag", "norm"};
  // Layer 0 has q = 1, 2, 3, 10 over four steps; layer 1 has q = 5, 4 over two.
  const double q0[] = {1, 2, 3, 10};
  for (int64_t i = 0; i < 4; ++i)
    run.records.push_back({i + 1, 0, q0[i], 0.5, 2.0 * static_cast<double>(i + 1), 1, 2.5});
  run.records.push_back({1, 1, 5, 1, 1, 1, 2.5});
  run.records.push_back({2, 1, 4, 3, 1, 1, 2.4});

  std::vector<cli::LayerGradStats> s = cli::layer_grad_stats(run);
  REQUIRE(s.size() == 2);
  CHECK(s[0].layer == 0);
  CHECK(s[0].attention == "diag");
  CHECK(s[0].q.median == doctest::Approx(2.5));
  CHECK(s[0].q.max == doctest::Approx(10));
  CHECK(s[0].k.median == doctest::Approx(0.5));
  CHECK(s[0].v.median == doctest::Approx(5));
  CHECK(s[0].v.max == doctest::Approx(8));
  CHECK(s[1].attention == "norm");
  CHECK(s[1].q.median == doctest::Approx(4.5));
  CHECK(s[1].k.max == doctest::Approx(3));

  std::vector<std::string> csv = lines(cli::grad_csv(run.records));
  REQUIRE(csv.size() == 7);
  CHECK(csv[0] == "step,layer,q,k,v,out,loss");
  CHECK(csv[4] == "4,0,10,0.5,8,1,2.5");
  CHECK(csv[6] == "2,1,4,3,1,1,2.4");
}

TEST_CASE("cli: a tiny inspect-grads run records finite, positive norms per kind and layer") {
  TempDir dir("polyak-test-inspect");
  cli::InspectOptions o =
      parse_cli(tiny({"inspect-grads", "--kinds", "linear,transnormer", "--every", "2"}, dir.path))
          .inspect;
  std::vector<std::string> started;
  int64_t steps_seen = 0;
  cli::InspectCallbacks cb;
  cb.on_run_start = [&](const cli::GradRun& run, size_t, size_t count) {
    started.push_back(run.name);
    CHECK(count == 2);
  };
  cb.on_step = [&](const cli::StepRecord&) { ++steps_seen; };
  cli::InspectResult r = cli::run_inspect(o, cb);
  CHECK(started == std::vector<std::string>{"linear", "transnormer"});
  CHECK(steps_seen == 12);
  CHECK(r.failed_runs == 0);
  REQUIRE(r.runs.size() == 2);
  CHECK(r.runs[0].layer_attention == std::vector<std::string>{"linear", "linear"});
  CHECK(r.runs[1].layer_attention == std::vector<std::string>{"diag", "norm"});

  for (const cli::GradRun& run : r.runs) {
    CAPTURE(run.name);
    CHECK(run.ok);
    CHECK(run.kind == run.name);
    CHECK(run.final_loss > 0);
    CHECK((run.test_accuracy >= 0 && run.test_accuracy <= 1));
    REQUIRE(run.csv_path == dir.file(run.name + ".csv"));
    std::vector<std::string> csv = lines(read_bytes(run.csv_path));
    REQUIRE(csv.size() == 1 + 4 * 2);  // steps 1, 2, 4, 6 (every 2, and the last), 2 layers
    CHECK(csv[0] == "step,layer,q,k,v,out,loss");
    std::set<int64_t> steps, layers;
    std::map<int64_t, double> loss_at;
    for (size_t i = 1; i < csv.size(); ++i) {
      std::vector<double> row = fields(csv[i]);
      REQUIRE(row.size() == 7);
      steps.insert(static_cast<int64_t>(row[0]));
      layers.insert(static_cast<int64_t>(row[1]));
      for (size_t j = 2; j < 7; ++j) {
        INFO(csv[i]);
        CHECK(std::isfinite(row[j]));
        CHECK(row[j] > 0);
      }
      // Both layers' rows of a step carry that step's loss.
      auto [it, fresh] = loss_at.emplace(static_cast<int64_t>(row[0]), row[6]);
      if (!fresh) CHECK(it->second == row[6]);
    }
    CHECK(steps == std::set<int64_t>{1, 2, 4, 6});
    CHECK(layers == std::set<int64_t>{0, 1});
    REQUIRE(run.records.size() == 8);
    // The records are the steps' own: the norms change as the model trains.
    CHECK(run.records[0].q != run.records[6].q);
    CHECK(cli::layer_grad_stats(run).size() == 2);
  }

  // One seed, one data stream: a second run of a kind records the same numbers.
  TempDir again_dir("polyak-test-inspect-again");
  cli::InspectOptions again = o;
  again.kinds = {"linear"};
  again.train.out = again_dir.path.string();
  again.python = "/nonexistent/python3";  // no figure: only the CSV matters here
  cli::InspectResult a = cli::run_inspect(again);
  CHECK(read_bytes(a.runs[0].csv_path) == read_bytes(r.runs[0].csv_path));

  CHECK(r.png_path == dir.file("grads.png"));
  if (has_matplotlib(o.python)) {
    INFO(r.plot.message);
    REQUIRE(r.plot.drawn);
    CHECK(read_bytes(r.png_path).rfind("\x89PNG\r\n\x1a\n", 0) == 0);
  } else {
    MESSAGE("matplotlib is not installed: the PNG is not checked");
    CHECK(!r.plot.drawn);
  }
}

TEST_CASE("cli: inspect-grads trains on from checkpoints, and a failing run leaves the others") {
  TempDir dir("polyak-test-inspect-checkpoints");
  const fs::path good_dir = dir.path / "momentum";
  cli::TrainResult trained = cli::train_run(
      parse_cli(
          tiny({"train", "--model", "momentum", "--beta", "0.3", "--block-size", "4"}, good_dir))
          .train,
      nullptr);

  // The same model with a huge (finite: a checkpoint with a NaN does not load) weight in its
  // second layer: its activations overflow, and its loss is not finite at step 1.
  std::map<std::string, std::string> metadata;
  std::shared_ptr<TransformerLM> model = load_model(trained.model_path, &metadata);
  {
    NoGradGuard no_grad;
    float* w = model->parameter("layers.1.feed_forward.linear1.weight").data<float>();
    for (int i = 0; i < 64; ++i) w[i] = std::numeric_limits<float>::max();
  }
  fs::create_directories(dir.path / "broken");
  const std::string broken = (dir.path / "broken" / "model.safetensors").string();
  save_model(*model, broken, metadata);

  cli::InspectOptions o = parse_cli(tiny({"inspect-grads", "--checkpoints",
                                          broken + "," + trained.model_path, "--every", "3"},
                                         dir.path / "grads"))
                              .inspect;
  o.python = "/nonexistent/python3";  // the figure is the other test's
  cli::InspectResult r = cli::run_inspect(o);
  CHECK(!r.plot.drawn);
  CHECK(contains(r.plot.message, "/nonexistent/python3"));
  REQUIRE(r.runs.size() == 2);
  CHECK(r.failed_runs == 1);

  const cli::GradRun& bad = r.runs[0];
  CHECK(bad.name == "broken");
  CHECK(!bad.ok);
  CHECK(contains(bad.error, "step 1"));
  CHECK(contains(bad.error, "layer 1"));
  CHECK(lines(read_bytes(bad.csv_path)) == std::vector<std::string>{"step,layer,q,k,v,out,loss"});

  const cli::GradRun& good = r.runs[1];
  CHECK(good.ok);
  CHECK(good.name == "momentum");
  CHECK(good.kind == "momentum");
  CHECK(good.checkpoint == trained.model_path);
  CHECK(good.options.length == 16);  // from the checkpoint's copy task
  CHECK(good.options.layers == 2);
  // The checkpoint's settings, not the flags'.
  CHECK(std::get<double>(good.options.kind_flags.at("--beta")) == doctest::Approx(0.3));
  CHECK(good.options.model_config(11).attention_params.as<MomentumParams>().beta ==
        doctest::Approx(0.3));
  REQUIRE(good.records.size() == 3 * 2);  // steps 1, 3, 6
  CHECK(good.records.back().step == 6);
  for (const cli::GradRecord& rec : good.records) {
    CHECK(std::isfinite(rec.q));
    CHECK(rec.out > 0);
  }

  // A missing checkpoint fails before any run trains; so does a non-causal model.
  const std::string missing = (dir.path / "missing.safetensors").string();
  cli::InspectOptions m = o;
  m.checkpoints = {trained.model_path, missing};
  check_error([&] { cli::run_inspect(m); }, {missing});
  TransformerConfig nc = model->config();
  nc.causal = false;
  TransformerLM encoder(nc);
  const std::string encoder_path = (dir.path / "encoder.safetensors").string();
  save_model(encoder, encoder_path, metadata);
  m.checkpoints = {encoder_path};
  check_error([&] { cli::run_inspect(m); }, {encoder_path, "non-causal"});
}

TEST_CASE("cli: the FLOP count follows each layer's attention") {
  TransformerConfig c;
  c.layers = 2;
  c.d_model = 4;
  c.heads = 1;
  c.ff_dim = 8;
  c.vocab = 3;
  set_model_kind(c, "transnormer");
  c.attention_params = TransNormerParams{.block_size = 2};
  // per token and layer: qkv 2·4·12 + out 2·4·4 + ff 2·2·4·8 = 256; layer 0 (diag, blocks of
  // 2, causal: 1.5 keys per query) 4·4·1.5 = 24; layer 1 (norm) 2·16 + 2·16 + 4·4 = 80;
  // head 2·4·3 = 24
  const double per_token = 256 + 24 + 256 + 80 + 24;
  CHECK(cli::forward_flops(c, 2, 5) == doctest::Approx(10 * per_token));

  // Blocks make the count linear in N; the whole sequence makes it quadratic.
  TransformerConfig mega = c, chunk = c;
  set_model_kind(mega, "mega");
  set_model_kind(chunk, "mega-chunk");
  const double mega_growth = cli::forward_flops(mega, 1, 4096) / cli::forward_flops(mega, 1, 1024);
  const double chunk_growth =
      cli::forward_flops(chunk, 1, 4096) / cli::forward_flops(chunk, 1, 1024);
  CHECK(chunk_growth == doctest::Approx(4));
  CHECK(mega_growth > 10);
}
