// The benchmarks' measuring helpers (launch/measure.h), on calls whose cost is known.

#include "launch/measure.h"

#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace shopclip {
namespace {

void sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

TEST(Measure, BestRateIsItemsOverTheFastestCall) {
  int calls = 0;
  // Every call sleeps 20 ms, so the best rate is at most 100 items / 0.02 s = 5000 items/s; the
  // lower bound leaves a loaded machine 80 ms of oversleep on the fastest of the calls.
  const double rate = best_rate(
      [&] {
        ++calls;
        sleep_ms(20);
      },
      100, 0.1);
  EXPECT_LE(rate, 5000.0);
  EXPECT_GT(rate, 1000.0);
  EXPECT_GE(calls, 2);  // the warm-up and at least one timed call
}

TEST(Measure, MeanSecondsPerCallHonoursBothMinimums) {
  int calls = 0;
  const double seconds = mean_seconds_per_call(
      [&] {
        ++calls;
        sleep_ms(5);
      },
      0.0, 3);
  EXPECT_EQ(calls, 4);  // warm-up + 3
  EXPECT_GE(seconds, 0.005);
  EXPECT_LT(seconds, 0.5);  // generous: a loaded machine oversleeps
}

TEST(Measure, PeakMemoryCoversWhatIsResidentNow) {
  const double before = current_rss_mib();
  EXPECT_GT(before, 0.0);
  std::vector<char> block(64 << 20, 1);  // 64 MiB, touched
  const double now = current_rss_mib();
  EXPECT_GE(now, before + 48) << "64 MiB touched but resident memory grew by " << now - before;
  EXPECT_GE(peak_rss_mib() + 1, now);  // the high-water mark (KiB-rounded) is at least that
  EXPECT_EQ(block[12345], 1);
}

}  // namespace
}  // namespace shopclip
