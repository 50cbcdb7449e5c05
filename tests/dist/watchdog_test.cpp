// The collective watchdog (dist/watchdog.h) on one process: an inner communicator whose calls
// take a chosen time stands in for a lost peer. The watchdog must report a call that outlives
// the timeout (naming it, the activity, rank, host and the wait) and end the process with
// kWatchdogExitCode, once per call; calls that finish in time are never reported.

#include "dist/watchdog.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_support.h"

namespace shopclip::dist {
namespace {

using test_support::Contains;

void sleep_s(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

// One process whose barrier and asynchronous all-reduce wait take `delay` seconds.
class SlowCommunicator final : public Communicator {
 public:
  double delay = 0;

  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_world_size() const override { return 1; }
  std::string backend() const override { return "slow"; }
  void all_reduce(torch::Tensor& tensor, ReduceOp op) override { inner_.all_reduce(tensor, op); }
  std::unique_ptr<Work> all_reduce_async(torch::Tensor&, ReduceOp) override {
    class SlowWork final : public Work {
     public:
      explicit SlowWork(double delay) : delay_(delay) {}
      void wait() override { sleep_s(delay_); }

     private:
      double delay_;
    };
    return std::make_unique<SlowWork>(delay);
  }
  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    return inner_.all_gather(tensor);
  }
  torch::Tensor reduce_scatter(const torch::Tensor& tensor,
                               const std::vector<std::int64_t>& counts) override {
    return inner_.reduce_scatter(tensor, counts);
  }
  void broadcast(torch::Tensor& tensor, int root) override { inner_.broadcast(tensor, root); }
  void barrier() override { sleep_s(delay); }
  [[noreturn]] void abort(int exit_code) override { inner_.abort(exit_code); }

 private:
  SingleProcessCommunicator inner_;
};

// What the watchdog reported and how it tried to end the process.
struct Recorder {
  std::mutex mutex;
  std::vector<std::string> reports;
  std::vector<int> exit_codes;

  WatchdogOptions options(double timeout) {
    WatchdogOptions o;
    o.timeout_seconds = timeout;
    o.host = "host-a";
    o.report = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(mutex);
      reports.push_back(line);
    };
    o.end_process = [this](int code) {
      std::lock_guard<std::mutex> lock(mutex);
      exit_codes.push_back(code);
    };
    return o;
  }
};

TEST(Watchdog, ACallThatOutlivesTheTimeoutIsReportedAndEndsTheProcess) {
  SlowCommunicator slow;
  slow.delay = 0.6;
  Recorder recorder;
  WatchedCommunicator watched(slow, recorder.options(0.15));
  watched.set_activity("train step 12");
  watched.barrier();  // returns after 0.6 s here; a real lost peer never returns
  EXPECT_EQ(watched.fired(), 1);
  ASSERT_EQ(recorder.reports.size(), 1u);
  const std::string& line = recorder.reports[0];
  for (const char* part : {"rank 0 of 1 on host-a", "barrier has not completed after",
                           "dist.timeout_s 0.15", "during train step 12", "exit 75"}) {
    EXPECT_TRUE(Contains(line, part)) << line;
  }
  EXPECT_EQ(recorder.exit_codes, std::vector<int>{kWatchdogExitCode});
}

TEST(Watchdog, CallsThatFinishInTimeAreNeverReported) {
  SlowCommunicator slow;
  slow.delay = 0.01;
  Recorder recorder;
  WatchedCommunicator watched(slow, recorder.options(1.0));
  auto t = torch::ones({4});
  for (int i = 0; i < 120; ++i) {  // 120 x 10 ms: longer than the timeout in all, never one call
    watched.barrier();
    watched.all_reduce(t, ReduceOp::kSum);
  }
  sleep_s(1.2);  // idle past the timeout: nothing is pending, nothing to report
  EXPECT_EQ(watched.fired(), 0);
  EXPECT_TRUE(recorder.reports.empty());
  EXPECT_TRUE(torch::equal(t, torch::ones({4})));  // forwarded to the inner communicator
}

TEST(Watchdog, WaitingForAnAsynchronousCollectiveIsWatched) {
  SlowCommunicator slow;
  slow.delay = 0.5;
  Recorder recorder;
  WatchedCommunicator watched(slow, recorder.options(0.1));
  auto t = torch::ones({4});
  auto work = watched.all_reduce_async(t, ReduceOp::kSum);  // starting it is quick
  EXPECT_EQ(watched.fired(), 0);
  work->wait();
  EXPECT_EQ(watched.fired(), 1);
  ASSERT_EQ(recorder.reports.size(), 1u);
  EXPECT_TRUE(Contains(recorder.reports[0], "all_reduce_async (wait)")) << recorder.reports[0];
}

TEST(Watchdog, EachLateCallIsReportedOnce) {
  SlowCommunicator slow;
  slow.delay = 0.35;
  Recorder recorder;
  WatchedCommunicator watched(slow, recorder.options(0.1));
  watched.barrier();
  watched.barrier();
  EXPECT_EQ(watched.fired(), 2);
  EXPECT_EQ(recorder.reports.size(), 2u);
}

TEST(Watchdog, TheTimeoutMustBePositive) {
  SlowCommunicator slow;
  Recorder recorder;
  EXPECT_THROW(WatchedCommunicator(slow, recorder.options(0)), std::invalid_argument);
  EXPECT_THROW(WatchedCommunicator(slow, recorder.options(-1)), std::invalid_argument);
}

}  // namespace
}  // namespace shopclip::dist
