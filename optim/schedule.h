// Learning-rate schedules: lr as a function of the number of completed optimizer steps.
//
// `lr_at(s)` is the lr of the (s+1)-th update, s = optimizer.step_count() before it.
// `apply(opt)` sets it on the optimizer; call it before each opt.step():
//   StepDecay schedule({.lr = 1e-3, .milestones = {3000}, .gamma = 0.1});
//   schedule.apply(opt);  opt.step();          // 1e-3 for s < 3000, 1e-4 from s = 3000 on
//
// StepDecay:     lr_at(s) = lr · gamma^k,  k = number of milestones ≤ s   (MultiStepLR)
// LinearAnneal:  lr_at(s) = lr · (s + 1) / W                       for s < W (warmup)
//                         = lr + (final_lr − lr) · (s − W) / (S − W)  for W ≤ s < S
//                         = final_lr                                 for s ≥ S
//                (W = warmup_steps, S = total_steps; the warmup never runs a step at lr 0)
#pragma once

#include <cstdint>
#include <vector>

#include "polyak/optim/optimizer.h"

namespace polyak {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual double lr_at(int64_t step) const = 0;
  // Sets opt's lr to lr_at(opt.step_count()) and returns it.
  double apply(Optimizer& opt) const;
};

class StepDecay final : public LrSchedule {
 public:
  struct Options {
    double lr = 1e-3;                      // before the first milestone, ≥ 0
    std::vector<int64_t> milestones = {};  // strictly increasing, ≥ 1
    double gamma = 0.1;                    // factor at each milestone, > 0
  };
  explicit StepDecay(Options options);
  double lr_at(int64_t step) const override;
  const Options& options() const { return options_; }

 private:
  Options options_;
};

class LinearAnneal final : public LrSchedule {
 public:
  struct Options {
    double lr = 1e-3;          // peak lr, reached at the end of the warmup, ≥ 0
    int64_t warmup_steps = 0;  // W ≥ 0
    int64_t total_steps = 1;   // S > W: the step from which final_lr holds
    double final_lr = 0;       // ≥ 0
  };
  explicit LinearAnneal(Options options);
  double lr_at(int64_t step) const override;
  const Options& options() const { return options_; }

 private:
  Options options_;
};

}  // namespace polyak
