#include "cli/experiments.h"

#include "cli/tasks.h"

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "polyak/core/autograd.h"
#include "polyak/core/error.h"
#include "polyak/core/files.h"
#include "polyak/nn/kinds.h"

namespace polyak::cli {
namespace {

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// A double for the CSV: full precision, so that the plot and later analysis lose nothing.
std::string csv_number(double v) {
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

// One shell word: the text in single quotes, each ' written as '\''.
std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'')
      quoted += "'\\''";
    else
      quoted += c;
  }
  return quoted + "'";
}

}  // namespace

std::vector<ExperimentRun> experiment_runs(const ExperimentOptions& e) {
  const std::filesystem::path out(e.train.out);
  std::vector<ExperimentRun> runs;
  auto add = [&](const std::string& name, const std::string& label, TrainOptions o) {
    o.out = (out / name).string();
    runs.push_back({name, label, o});
  };
  if (e.study == "compare") {
    for (const std::string& kind : e.kinds) {
      TrainOptions o = e.train;
      o.model = kind;
      add(kind, kind, o);
    }
  } else if (e.study == "beta") {
    for (double v : e.values) {
      TrainOptions o = e.train;
      o.kind_flags["--beta"] = v;
      add("beta-" + number_text(v), "β = " + number_text(v), o);
    }
  } else if (e.study == "connection") {
    for (double v : e.values) {
      TrainOptions o = e.train;
      o.model = "momentum-connection";
      o.kind_flags["--conn-beta"] = v;
      add("conn-beta-" + number_text(v), "β̃ = " + number_text(v), o);
    }
    TrainOptions o = e.train;
    o.model = "adaptive";
    add("adaptive", "adaptive", o);
  } else {
    fail("experiment_runs: study is '", e.study, "', expected one of: compare, beta, connection");
  }
  return runs;
}

RunSummary summarize(const ExperimentRun& run, const TrainResult& result) {
  RunSummary s;
  s.name = run.name;
  s.label = run.label;
  s.kind = run.options.model;
  s.steps = static_cast<int64_t>(result.records.size());
  const size_t last = std::min<size_t>(100, result.records.size());
  double loss = 0;
  for (size_t i = result.records.size() - last; i < result.records.size(); ++i)
    loss += result.records[i].loss;
  s.final_train_loss = last > 0 ? loss / static_cast<double>(last) : 0;
  s.final_test_accuracy = result.test_accuracy;
  s.train_seconds = result.train_seconds;
  s.seconds_per_100_steps =
      s.steps > 0 ? 100 * result.train_seconds / static_cast<double>(s.steps) : 0;
  s.total_seconds = result.seconds;
  for (const StepRecord& r : result.records) {
    if (run.options.task == "copy" && r.test_accuracy >= 0.9) {
      s.steps_to_90 = r.step;
      s.train_seconds_to_90 = r.train_seconds;
      break;
    }
  }
  return s;
}

std::string summary_csv(const std::vector<RunSummary>& rows, const std::string& task) {
  // The final figure's column: final_test_accuracy for the copy task, final_test_bits_per_dim,
  // … for the others (the classification tasks' final figure is on their test split).
  const std::string final_column = is_classification_task(task)
                                       ? "final_test_accuracy"
                                       : "final_" + std::string(task_metrics(task).test);
  std::ostringstream os;
  os << "run,label,kind,status,steps,final_train_loss," << final_column
     << ",seconds_per_100_steps,train_seconds,total_seconds,steps_to_90,train_seconds_to_90\n";
  for (const RunSummary& r : rows) {
    os << r.name << ',' << r.label << ',' << r.kind << ',' << (r.ok ? "ok" : "failed") << ',';
    if (!r.ok) {
      os << ",,,,,,,\n";
      continue;
    }
    os << r.steps << ',' << csv_number(r.final_train_loss) << ','
       << csv_number(r.final_test_accuracy) << ',' << csv_number(r.seconds_per_100_steps) << ','
       << csv_number(r.train_seconds) << ',' << csv_number(r.total_seconds) << ',';
    if (r.steps_to_90 >= 0)
      os << r.steps_to_90 << ',' << csv_number(r.train_seconds_to_90);
    else
      os << ',';
    os << '\n';
  }
  return os.str();
}

std::string figure_name(const ExperimentOptions& e) {
  if (e.study == "compare")
    return e.train.task == "copy" ? "figure1.png" : "compare-" + e.train.task + ".png";
  return "ablate-" + e.study + ".png";
}

namespace {

// The number a kind flag has in `o`: given, or its field's default.
double flag_number(const TrainOptions& o, const std::string& flag) {
  auto it = o.kind_flags.find(flag);
  const ParamValue v =
      it != o.kind_flags.end() ? it->second : fields_of_flag(flag).front()->default_value;
  return std::get<double>(convert_param(v, 0.0, flag));
}

}  // namespace

std::string figure_title(const ExperimentOptions& e) {
  const TrainOptions& o = e.train;
  std::ostringstream os;
  if (e.study == "compare" && o.task != "copy")
    os << o.task << " task: model kinds";
  else if (e.study == "compare")
    os << "Copy task: model kinds";
  else if (e.study == "beta")
    os << "Copy task: " << o.model
       << ", momentum attention's β (γ = " << number_text(flag_number(o, "--gamma")) << ")";
  else
    os << "Copy task: momentum connection's β̃ (γ̃ = " << number_text(flag_number(o, "--conn-gamma"))
       << ") and adaptive";
  os << " — L " << o.length << ", " << o.layers << " layers, d " << o.d_model << ", " << o.heads
     << " heads, batch " << o.batch << ", seed " << o.seed;
  return os.str();
}

PlotResult draw_plot(const std::string& python, const std::string& script,
                     const std::string& folder, const std::string& png, const std::string& title) {
  return run_plot_script(python, script, {folder, "--out", png, "--title", title}, png);
}

PlotResult run_plot_script(const std::string& python, const std::string& script,
                           const std::vector<std::string>& args, const std::string& png) {
  PlotResult r;
  std::error_code ec;
  if (python.find('/') != std::string::npos && !std::filesystem::exists(python, ec)) {
    r.message = python + " not found (install python3 and python3-matplotlib: scripts/setup.sh)";
    return r;
  }
  if (!std::filesystem::exists(script, ec)) {
    r.message = "the plot script " + script + " is missing (give its path with --plot-script)";
    return r;
  }
  std::string cmd = shell_quote(python);
  cmd.append(" ").append(shell_quote(script));
  for (const std::string& arg : args) cmd.append(" ").append(shell_quote(arg));
  cmd.append(" 2>&1");
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) {
    r.message = "could not start " + python;
    return r;
  }
  std::string output;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) output.append(buf, n);
  const int status = pclose(pipe);
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  r.drawn = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
            std::filesystem::exists(png, ec);
  if (r.drawn)
    r.message = output;
  else if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 127)
    r.message = python + " could not be run (install python3 and python3-matplotlib)";
  else
    r.message = output.empty() ? python + " " + script + " failed" : output;
  return r;
}

ExperimentResult run_experiment(const ExperimentOptions& e, const ExperimentCallbacks& cb) {
  std::vector<ExperimentRun> runs = experiment_runs(e);
  std::filesystem::create_directories(e.train.out);
  ExperimentResult result;
  result.summary_path = (std::filesystem::path(e.train.out) / "summary.csv").string();
  result.png_path = (std::filesystem::path(e.train.out) / figure_name(e)).string();
  for (size_t i = 0; i < runs.size(); ++i) {
    if (cb.on_run_start) cb.on_run_start(runs[i], i, runs.size());
    RunSummary s;
    // --resume: a run with a checkpoint continues from it (a finished one only evaluates
    // again), one without starts afresh over whatever it left.
    TrainOptions& o = runs[i].options;
    if (e.resume) {
      const bool saved =
          std::filesystem::exists(std::filesystem::path(o.out) / "checkpoint.safetensors");
      o.resume = saved;
      o.force = !saved;
    }
    try {
      const TrainResult trained = train_run(o, cb.on_step);
      if (trained.stopped_by != 0) {
        result.stopped_by = trained.stopped_by;
        break;
      }
      s = summarize(runs[i], trained);
    } catch (const Error& err) {
      s.name = runs[i].name;
      s.label = runs[i].label;
      s.kind = runs[i].options.model;
      s.ok = false;
      s.error = err.what();
      ++result.failed_runs;
    }
    result.runs.push_back(s);
    write_text_file_atomically(result.summary_path, summary_csv(result.runs, e.train.task),
                               "experiment");
    if (cb.on_run_end) cb.on_run_end(s);
  }
  result.plot = draw_plot(e.python, e.plot_script, e.train.out, result.png_path, figure_title(e));
  return result;
}

}  // namespace polyak::cli
