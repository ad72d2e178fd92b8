// Checks shared by the cli suites that compare two runs: the same metrics rows, tensors and
// metrics.csv but for the wall clock.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/copy_run.h"
#include "polyak/core/safetensors.h"
#include "testing.h"

namespace polyak::testing {

namespace fs = std::filesystem;

// The same rows but for the wall clock.
inline void check_same_rows(const std::vector<cli::StepRecord>& a,
                            const std::vector<cli::StepRecord>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("row " << i);
    CHECK(a[i].step == b[i].step);
    CHECK(a[i].loss == b[i].loss);
    CHECK(a[i].accuracy == b[i].accuracy);
    CHECK(a[i].lr == b[i].lr);
    CHECK(a[i].test_accuracy == b[i].test_accuracy);
    CHECK(a[i].test_reference_accuracy == b[i].test_reference_accuracy);
  }
}

// The values of a tensor; of a checkpoint's metrics rows (train.rows [steps, 8]) without the
// two wall-clock columns.
inline std::vector<double> values_of(const std::string& name, const Tensor& t) {
  std::vector<double> v = t.to_vector();
  if (name != "train.rows") return v;
  std::vector<double> kept;
  for (size_t i = 0; i < v.size(); ++i)
    if (i % 8 != 4 && i % 8 != 5) kept.push_back(v[i]);
  return kept;
}

// Every tensor of two safetensors files, bit for bit (wall clocks aside).
inline void check_same_tensors(const fs::path& a, const fs::path& b) {
  const SafetensorsFile fa = load_safetensors(a.string()), fb = load_safetensors(b.string());
  REQUIRE(fa.tensors.size() == fb.tensors.size());
  for (size_t i = 0; i < fa.tensors.size(); ++i) {
    const std::string& name = fa.tensors[i].first;
    INFO(name);
    CHECK(name == fb.tensors[i].first);
    CHECK(values_of(name, fa.tensors[i].second) == values_of(name, fb.tensors[i].second));
  }
}

// metrics.csv without the two wall-clock columns.
inline std::string metrics_without_clock(const fs::path& csv) {
  std::ifstream in(csv);
  std::string text, line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    size_t start = 0;
    for (size_t at; (at = line.find(',', start)) != std::string::npos; start = at + 1)
      cells.push_back(line.substr(start, at - start));
    cells.push_back(line.substr(start));
    for (size_t c = 0; c < cells.size(); ++c)
      if (c != 4 && c != 5) text += cells[c] + ",";
    text += "\n";
  }
  return text;
}

// A resumed run in `parts` against the run that never stopped in `whole`: the same rows, test
// accuracy, model, checkpoint and metrics.csv but for the wall clock. Removes both folders.
inline void check_same_run(const cli::TrainResult& resumed, const cli::TrainResult& uninterrupted,
                           const fs::path& parts, const fs::path& whole) {
  check_same_rows(resumed.records, uninterrupted.records);
  CHECK(resumed.test_accuracy == uninterrupted.test_accuracy);
  check_same_tensors(parts / "model.safetensors", whole / "model.safetensors");
  check_same_tensors(parts / "checkpoint.safetensors", whole / "checkpoint.safetensors");
  CHECK(metrics_without_clock(parts / "metrics.csv") ==
        metrics_without_clock(whole / "metrics.csv"));
  fs::remove_all(whole);
  fs::remove_all(parts);
}

}  // namespace polyak::testing
