// The collective watchdog (dist/watchdog.h) under mpirun, on real MPI collectives: the last rank
// arrives late at a barrier; every other rank's watchdog (timeout shorter than the delay) must
// report that barrier, naming itself, while the late rank's must not fire. The test's
// end_process records instead of ending the process, so the barrier still completes.

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "dist/watchdog.h"
#include "mpi_test_support.h"

namespace shopclip::dist {
namespace {

using shopclip::test_support::mpi_world;

TEST(WatchdogMpi, RanksWaitingForALatePeerReportTheCollective) {
  Communicator& world = *mpi_world;
  std::mutex mutex;
  std::vector<std::string> reports;
  std::vector<int> codes;
  WatchdogOptions options;
  options.timeout_seconds = 0.8;
  options.host = "h" + std::to_string(world.rank());
  options.report = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex);
    reports.push_back(line);
  };
  options.end_process = [&](int code) {
    std::lock_guard<std::mutex> lock(mutex);
    codes.push_back(code);
  };
  world.barrier();  // start together
  {
    WatchedCommunicator watched(world, options);
    watched.set_activity("the late-peer test");
    const bool late = world.rank() == world.world_size() - 1;
    if (late) std::this_thread::sleep_for(std::chrono::milliseconds(3000));
    watched.barrier();
    if (late) {
      EXPECT_EQ(watched.fired(), 0) << (reports.empty() ? "" : reports[0]);
    } else {
      EXPECT_EQ(watched.fired(), 1);
      ASSERT_EQ(reports.size(), 1u);
      const std::string expected = "rank " + std::to_string(world.rank()) + " of " +
                                   std::to_string(world.world_size()) + " on h" +
                                   std::to_string(world.rank()) + ": barrier has not completed";
      EXPECT_NE(reports[0].find(expected), std::string::npos) << reports[0];
      EXPECT_NE(reports[0].find("during the late-peer test"), std::string::npos) << reports[0];
      EXPECT_EQ(codes, std::vector<int>{kWatchdogExitCode});
    }
    // With every rank present, the same collective is quick and not reported again.
    auto t = torch::ones({3});
    watched.all_reduce(t, ReduceOp::kSum);
    EXPECT_TRUE(torch::equal(t, torch::full({3}, static_cast<float>(world.world_size()))));
    EXPECT_EQ(watched.fired(), late ? 0 : 1);
  }
  world.barrier();
}

}  // namespace
}  // namespace shopclip::dist
