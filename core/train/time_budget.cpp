#include "core/train/time_budget.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace shopclip {

SecondsClock steady_seconds() {
  return [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
}

TimeBudget::TimeBudget(double budget_seconds, double elapsed_before, SecondsClock clock,
                       double started_at)
    : budget_seconds_(budget_seconds),
      elapsed_before_(elapsed_before),
      start_(started_at),
      clock_(std::move(clock)) {}

double TimeBudget::elapsed() const {
  return elapsed_before_ + (clock_() - start_);
}

bool TimeBudget::exhausted() const {
  return enabled() && elapsed() >= budget_seconds_;
}

std::int64_t TimeBudget::affordable_end(std::int64_t step, double seconds_per_step,
                                        double seconds_per_eval, double steps_per_eval) const {
  const double left = budget_seconds_ - elapsed();
  // Evaluations still due if `steps` more steps run: the periodic ones, one where the schedule
  // ends inside an epoch, and the final one of the best checkpoint.
  auto evaluations_for = [&](double steps) {
    return std::floor((step + steps) / steps_per_eval) - std::floor(step / steps_per_eval) + 2;
  };
  double steps = left / seconds_per_step;
  // The evaluations depend on the steps and the steps on the time the evaluations leave: a few
  // rounds of substitution settle it.
  for (int refine = 0; refine < 3; ++refine) {
    steps = std::max(0.0, (left - evaluations_for(steps) * seconds_per_eval) / seconds_per_step);
  }
  return step + static_cast<std::int64_t>(steps);
}

void ThroughputMeter::add_step(double seconds) {
  if (++steps_ == 1) return;
  timed_seconds_ += seconds;
  ++timed_steps_;
}

double ThroughputMeter::seconds_per_step() const {
  return timed_steps_ ? timed_seconds_ / timed_steps_ : 0.0;
}

double ThroughputMeter::samples_per_second() const {
  return timed_steps_ ? samples_per_step_ * timed_steps_ / timed_seconds_ : 0.0;
}

}  // namespace shopclip
