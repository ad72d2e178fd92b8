#include "cli/inspect.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

#include "cli/memory_check.h"
#include "polyak/core/error.h"
#include "polyak/core/files.h"
#include "polyak/core/threads.h"
#include "polyak/models/checkpoint.h"

namespace polyak::cli {
namespace {

namespace fs = std::filesystem;

std::string csv_number(double v) {
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

NormStats stats(const std::vector<double>& values) {
  return {median(values), *std::max_element(values.begin(), values.end())};
}

// A run before it trains: its model, and the copy task it trains and is tested on.
struct Prepared {
  GradRun run;
  std::shared_ptr<TransformerLM> model;
  CopyTask::Options train_task, test_task;
};

Prepared fresh_run(const InspectOptions& options, const std::string& name,
                   const std::string& kind) {
  Prepared p;
  p.run.name = name;
  p.run.kind = kind;
  p.run.options = options.train;
  p.run.options.model = kind;
  p.train_task = {.length = options.train.length, .seed = options.train.seed};
  p.test_task = {.length = options.train.length, .seed = copy_test_seed(options.train.seed)};
  const TransformerConfig config = p.run.options.model_config(CopyTask(p.train_task).vocab());
  check_training_memory(p.run.options, config, Device::cpu());
  p.model = std::make_shared<TransformerLM>(config);
  return p;
}

// A checkpoint written by `polyak train`: its model, trained on with options.train's
// optimiser, batch and seed, on the copy task its metadata records.
Prepared checkpoint_run(const InspectOptions& options, const std::string& name,
                        const std::string& path) {
  Prepared p;
  std::map<std::string, std::string> metadata;
  p.model = load_model(path, &metadata);
  const TransformerConfig& c = p.model->config();
  POLYAK_CHECK(c.causal, "polyak inspect-grads: ", path,
               " holds a non-causal model, expected a causal one (the copy task is causal)");
  p.test_task = copy_task_from_metadata(metadata, path);
  p.train_task = p.test_task;
  p.train_task.seed = options.train.seed;
  p.run.name = name;
  p.run.kind = model_kind(c);
  p.run.checkpoint = path;
  // The flags' optimiser, batch and seed; the checkpoint's model, for the model line.
  TrainOptions& o = p.run.options;
  o = options.train;
  o.model = p.run.kind.empty() ? "custom" : p.run.kind;
  o.length = p.test_task.length;
  o.layers = c.layers;
  o.heads = c.heads;
  o.d_model = c.d_model;
  o.ff = c.resolved_ff_dim();
  o.dropout = c.dropout;
  o.kind_flags.clear();
  for (const Params* params : {&c.attention_params, &c.connection_params}) {
    if (params->empty()) continue;
    for (const ParamField& f : params->schema()->fields) o.kind_flags[f.flag] = params->get(f.name);
  }
  return p;
}

// Trains p.model for run.options.steps steps, recording per options.every; fills p.run.
void train_and_record(Prepared& p, const InspectOptions& options, const InspectCallbacks& cb) {
  GradRun& run = p.run;
  const TrainOptions& o = run.options;
  TransformerLM& model = *p.model;
  model.to(device_flag(o.device));
  const Precision precision = precision_flag(o);
  std::vector<Attention*> attentions;
  for (size_t i = 0; i < model.layers->size(); ++i)
    attentions.push_back((*model.layers)[i]->attention.get());

  CopyTask train_task(p.train_task), test_task(p.test_task);
  model.train();
  CopyOptimizer opt(model, o);
  std::vector<double> losses;
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  try {
    for (int64_t step = 1; step <= o.steps; ++step) {
      const bool record = step == 1 || step % options.every == 0 || step == o.steps;
      std::vector<int64_t> reported;
      for (Attention* a : attentions) {
        a->inspect_gradients(record);
        reported.push_back(a->gradient_norms().backwards);
      }
      Batch batch = train_task.batch(o.batch).to(model.device());
      opt.zero_grad();
      Tensor logits;
      StepRecord r;
      r.step = step;
      r.loss = copy_loss_backward(model, batch, step, &logits, precision);
      losses.push_back(r.loss);
      for (size_t i = 0; record && i < attentions.size(); ++i) {
        const AttentionGradNorms& g = attentions[i]->gradient_norms();
        // A kind whose forward skips Attention::probe would leave last step's norms here.
        POLYAK_CHECK(g.backwards == reported[i] + 1, "polyak inspect-grads: layer ", i, " (",
                     attentions[i]->config().kind,
                     " attention) reported no gradient norms at step ", step,
                     ", expected its forward to probe q, k, v and its output");
        run.records.push_back({step, static_cast<int64_t>(i), g.q, g.k, g.v, g.out, r.loss});
      }
      r.lr = opt.step();
      r.accuracy = copy_accuracy(logits, batch);
      r.seconds = r.train_seconds = std::chrono::duration<double>(Clock::now() - start).count();
      if (cb.on_step) cb.on_step(r);
    }
    run.test_accuracy = evaluate_copy(model, test_task, o.eval_batches, o.batch).tokens;
  } catch (const Error& e) {
    run.ok = false;
    run.error = e.what();
  }
  for (Attention* a : attentions) a->inspect_gradients(false);
  const size_t last = std::min<size_t>(100, losses.size());
  double sum = 0;
  for (size_t i = losses.size() - last; i < losses.size(); ++i) sum += losses[i];
  run.final_loss = last > 0 ? sum / static_cast<double>(last) : 0;
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
}

std::string figure_title(const InspectOptions& options) {
  const TrainOptions& o = options.train;
  std::ostringstream os;
  os << "Copy task: gradient norms at the attention, every " << options.every << " steps — ";
  if (options.checkpoints.empty())
    os << "L " << o.length << ", " << o.layers << " layers, d " << o.d_model << ", " << o.heads
       << " heads, ";
  else
    os << "from checkpoints, ";
  os << "batch " << o.batch << ", seed " << o.seed;
  return os.str();
}

}  // namespace

std::string grad_csv(const std::vector<GradRecord>& records) {
  std::ostringstream os;
  os << "step,layer,q,k,v,out,loss\n";
  for (const GradRecord& r : records)
    os << r.step << ',' << r.layer << ',' << csv_number(r.q) << ',' << csv_number(r.k) << ','
       << csv_number(r.v) << ',' << csv_number(r.out) << ',' << csv_number(r.loss) << '\n';
  return os.str();
}

std::vector<std::string> inspect_run_names(const InspectOptions& options) {
  if (options.checkpoints.empty()) return options.kinds;
  std::vector<std::string> names;
  for (const std::string& path : options.checkpoints) {
    const fs::path p(path);
    std::string name = p.stem().string();
    if (name == "model" && !p.parent_path().filename().empty())
      name = p.parent_path().filename().string();
    names.push_back(name);
  }
  std::vector<std::string> unique = names;
  for (size_t i = 0; i < names.size(); ++i)
    if (std::count(names.begin(), names.end(), names[i]) > 1)
      unique[i] = names[i] + "-" + std::to_string(i + 1);
  return unique;
}

std::vector<LayerGradStats> layer_grad_stats(const GradRun& run) {
  std::map<int64_t, std::vector<const GradRecord*>> by_layer;
  for (const GradRecord& r : run.records) by_layer[r.layer].push_back(&r);
  std::vector<LayerGradStats> out;
  for (const auto& [layer, records] : by_layer) {
    auto column = [&](double GradRecord::*field) {
      std::vector<double> values;
      for (const GradRecord* r : records) values.push_back(r->*field);
      return stats(values);
    };
    LayerGradStats s;
    s.layer = layer;
    if (layer >= 0 && static_cast<size_t>(layer) < run.layer_attention.size())
      s.attention = run.layer_attention[static_cast<size_t>(layer)];
    s.q = column(&GradRecord::q);
    s.k = column(&GradRecord::k);
    s.v = column(&GradRecord::v);
    s.out = column(&GradRecord::out);
    out.push_back(s);
  }
  return out;
}

InspectResult run_inspect(const InspectOptions& options, const InspectCallbacks& cb) {
  set_num_threads(options.train.threads);
  const std::vector<std::string> names = inspect_run_names(options);
  // Every checkpoint is loaded before the first run trains, so that a bad path fails at once.
  std::vector<Prepared> prepared;
  for (size_t i = 0; i < names.size(); ++i)
    prepared.push_back(options.checkpoints.empty()
                           ? fresh_run(options, names[i], options.kinds[i])
                           : checkpoint_run(options, names[i], options.checkpoints[i]));

  const fs::path out(options.train.out);
  fs::create_directories(out);
  InspectResult result;
  std::vector<std::string> plot_args;
  for (size_t i = 0; i < prepared.size(); ++i) {
    Prepared& p = prepared[i];
    const TransformerConfig& c = p.model->config();
    for (int64_t layer = 0; layer < c.layers; ++layer)
      p.run.layer_attention.push_back(c.layer_config(layer).attention.kind);
    p.run.csv_path = (out / (p.run.name + ".csv")).string();
    if (cb.on_run_start) cb.on_run_start(p.run, i, prepared.size());
    train_and_record(p, options, cb);
    write_text_file_atomically(p.run.csv_path, grad_csv(p.run.records), "inspect-grads");
    if (!p.run.ok) ++result.failed_runs;
    if (cb.on_run_end) cb.on_run_end(p.run);
    if (!p.run.records.empty()) plot_args.push_back(p.run.csv_path);
    result.runs.push_back(std::move(p.run));
    p.model.reset();
  }
  result.png_path = (out / "grads.png").string();
  if (plot_args.empty()) {
    result.plot.message = "no run recorded any gradient norms";
    return result;
  }
  plot_args.insert(plot_args.end(), {"--out", result.png_path, "--title", figure_title(options)});
  result.plot = run_plot_script(options.python, options.plot_script, plot_args, result.png_path);
  return result;
}

}  // namespace polyak::cli
