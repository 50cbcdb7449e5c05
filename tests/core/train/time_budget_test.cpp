// The time budget and the throughput meter, driven by a fake clock.

#include "core/train/time_budget.h"

#include <gtest/gtest.h>

namespace shopclip {
namespace {

// A clock the test sets by hand.
struct FakeClock {
  double now = 1000.0;
  SecondsClock function() {
    return [this] { return now; };
  }
};

TEST(TimeBudget, ElapsedSpansEarlierProcessesAndThisOnesSetUp) {
  FakeClock clock;
  const double started_at = clock.now;
  clock.now += 3;  // set-up before the budget object exists still counts
  TimeBudget budget(60, 100, clock.function(), started_at);
  EXPECT_DOUBLE_EQ(budget.elapsed(), 103);
  clock.now += 7;
  EXPECT_DOUBLE_EQ(budget.elapsed(), 110);
}

TEST(TimeBudget, ExhaustedExactlyAtTheBudgetAndNeverWithoutOne) {
  FakeClock clock;
  TimeBudget budget(30, 10, clock.function(), clock.now);
  EXPECT_TRUE(budget.enabled());
  clock.now += 19.5;
  EXPECT_FALSE(budget.exhausted());
  clock.now += 0.5;
  EXPECT_TRUE(budget.exhausted());
  TimeBudget none(0, 1e9, clock.function(), clock.now);
  EXPECT_FALSE(none.enabled());
  EXPECT_FALSE(none.exhausted());
}

// 90 s left, 1 s per step, 5 s per evaluation every 20 steps: 65 more steps need 3 periodic
// evaluations, one where the schedule ends and the final one: 65 + 5 * 5 = 90.
TEST(TimeBudget, AffordableEndLeavesTimeForTheEvaluationsStillDue) {
  FakeClock clock;
  TimeBudget budget(100, 10, clock.function(), clock.now);
  EXPECT_EQ(budget.affordable_end(0, 1.0, 5.0, 20.0), 65);
  // From step 30 (one periodic evaluation already behind): the count starts from there.
  EXPECT_EQ(budget.affordable_end(30, 1.0, 5.0, 20.0), 30 + 65);
  // Without evaluations to pay for, every second is a step.
  EXPECT_EQ(budget.affordable_end(0, 0.5, 0.0, 20.0), 180);
}

TEST(TimeBudget, AffordableEndNeverGoesBackwards) {
  FakeClock clock;
  TimeBudget budget(10, 0, clock.function(), clock.now);
  clock.now += 50;  // over budget already
  EXPECT_EQ(budget.affordable_end(42, 1.0, 5.0, 20.0), 42);
}

TEST(ThroughputMeter, TheFirstStepIsNotTimed) {
  ThroughputMeter meter(256);
  EXPECT_EQ(meter.samples_per_second(), 0.0);
  meter.add_step(10.0);  // one-off costs
  EXPECT_EQ(meter.timed_steps(), 0);
  EXPECT_EQ(meter.samples_per_second(), 0.0);
  meter.add_step(0.5);
  meter.add_step(1.5);
  EXPECT_EQ(meter.timed_steps(), 2);
  EXPECT_DOUBLE_EQ(meter.timed_seconds(), 2.0);
  EXPECT_DOUBLE_EQ(meter.seconds_per_step(), 1.0);
  EXPECT_DOUBLE_EQ(meter.samples_per_second(), 256.0);
}

}  // namespace
}  // namespace shopclip
