#pragma once
// The wall-clock side of training: a budget (train.max_minutes) that spans resumes and fits the
// learning-rate schedule's end to the time left, and the samples/s meter. Both take their clock
// from the caller, so tests drive them with a fake one.

#include <cstdint>
#include <functional>

namespace shopclip {

// Seconds on a monotonic clock.
using SecondsClock = std::function<double()>;
// std::chrono::steady_clock in seconds.
SecondsClock steady_seconds();

class TimeBudget {
 public:
  // budget_seconds 0 = no budget. elapsed_before: training time of earlier processes of the run.
  // started_at: the clock's reading when this process started (its set-up counts too).
  TimeBudget(double budget_seconds, double elapsed_before, SecondsClock clock, double started_at);

  bool enabled() const { return budget_seconds_ > 0; }
  // Training time of the run so far: elapsed_before plus this process's time since started_at.
  double elapsed() const;
  // enabled() and the budget is spent.
  bool exhausted() const;

  // The step the schedule can end at so that the remaining steps and the evaluations still due
  // fit the time left: `step` steps are done, each further one takes seconds_per_step, an
  // evaluation takes seconds_per_eval and comes every steps_per_eval steps, plus one where the
  // schedule ends inside an epoch and the final one of the best checkpoint. Never below `step`.
  std::int64_t affordable_end(std::int64_t step, double seconds_per_step, double seconds_per_eval,
                              double steps_per_eval) const;

 private:
  double budget_seconds_, elapsed_before_, start_;
  SecondsClock clock_;
};

// Samples per second of training steps. The first step of a process pays one-off costs
// (allocations, lazy initialisation) and is not timed.
class ThroughputMeter {
 public:
  explicit ThroughputMeter(std::int64_t samples_per_step) : samples_per_step_(samples_per_step) {}
  void add_step(double seconds);
  std::int64_t timed_steps() const { return timed_steps_; }
  double timed_seconds() const { return timed_seconds_; }
  double seconds_per_step() const;    // 0 before any timed step
  double samples_per_second() const;  // 0 before any timed step

 private:
  std::int64_t samples_per_step_;
  std::int64_t steps_ = 0, timed_steps_ = 0;
  double timed_seconds_ = 0;
};

}  // namespace shopclip
