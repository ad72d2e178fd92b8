// Learning-rate schedules (formulas in schedule.h).
#include "polyak/optim/schedule.h"

#include <cmath>
#include <utility>

#include "polyak/core/error.h"

namespace polyak {

double LrSchedule::apply(Optimizer& opt) const {
  const double lr = lr_at(opt.step_count());
  opt.set_lr(lr);
  return lr;
}

StepDecay::StepDecay(Options options) : options_(std::move(options)) {
  const Options& o = options_;
  POLYAK_CHECK(std::isfinite(o.lr) && o.lr >= 0, "StepDecay: lr = ", o.lr,
               ", expected a finite value >= 0");
  POLYAK_CHECK(std::isfinite(o.gamma) && o.gamma > 0, "StepDecay: gamma = ", o.gamma,
               ", expected a finite value > 0");
  for (size_t i = 0; i < o.milestones.size(); ++i) {
    POLYAK_CHECK(o.milestones[i] >= 1, "StepDecay: milestones[", i, "] = ", o.milestones[i],
                 ", expected >= 1");
    POLYAK_CHECK(i == 0 || o.milestones[i] > o.milestones[i - 1], "StepDecay: milestones[", i,
                 "] = ", o.milestones[i], ", expected > milestones[", i - 1,
                 "] = ", o.milestones[i - 1], " (strictly increasing)");
  }
}

double StepDecay::lr_at(int64_t step) const {
  double lr = options_.lr;
  for (int64_t m : options_.milestones) {
    if (step >= m) lr *= options_.gamma;
  }
  return lr;
}

LinearAnneal::LinearAnneal(Options options) : options_(options) {
  const Options& o = options_;
  POLYAK_CHECK(std::isfinite(o.lr) && o.lr >= 0, "LinearAnneal: lr = ", o.lr,
               ", expected a finite value >= 0");
  POLYAK_CHECK(std::isfinite(o.final_lr) && o.final_lr >= 0,
               "LinearAnneal: final_lr = ", o.final_lr, ", expected a finite value >= 0");
  POLYAK_CHECK(o.warmup_steps >= 0, "LinearAnneal: warmup_steps = ", o.warmup_steps,
               ", expected >= 0");
  POLYAK_CHECK(o.total_steps > o.warmup_steps, "LinearAnneal: total_steps = ", o.total_steps,
               ", expected > warmup_steps = ", o.warmup_steps);
}

double LinearAnneal::lr_at(int64_t step) const {
  const Options& o = options_;
  if (step < 0) step = 0;
  if (step < o.warmup_steps) {
    return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
  }
  if (step >= o.total_steps) return o.final_lr;
  const double frac = static_cast<double>(step - o.warmup_steps) /
                      static_cast<double>(o.total_steps - o.warmup_steps);
  return o.lr + (o.final_lr - o.lr) * frac;
}

}  // namespace polyak
