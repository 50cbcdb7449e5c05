// Launch detection and the single-process backend (no MPI launcher needed).

#include <sched.h>

#include <map>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "dist/launch.h"
#include "test_support.h"

namespace shopclip::dist {
namespace {

GetEnv fake_env(std::map<std::string, std::string> values) {
  return [values = std::move(values)](const char* name) -> const char* {
    auto it = values.find(name);
    return it == values.end() ? nullptr : it->second.c_str();
  };
}

TEST(DetectLaunch, NoLauncherIsOneProcess) {
  const LaunchInfo info = detect_launch(fake_env({}));
  EXPECT_EQ(info.world_size, 1);
  EXPECT_EQ(info.rank, 0);
  EXPECT_EQ(info.launcher, "none");
}

TEST(DetectLaunch, OpenMpiVariables) {
  const LaunchInfo info = detect_launch(fake_env({{"OMPI_COMM_WORLD_SIZE", "8"},
                                                  {"OMPI_COMM_WORLD_RANK", "5"},
                                                  {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                                  {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}}));
  EXPECT_EQ(info.launcher, "mpirun");
  EXPECT_EQ(info.world_size, 8);
  EXPECT_EQ(info.rank, 5);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_world_size, 4);
}

TEST(DetectLaunch, SrunStepVariables) {
  const LaunchInfo info = detect_launch(fake_env({{"SLURM_STEP_NUM_TASKS", "4"},
                                                  {"SLURM_PROCID", "3"},
                                                  {"SLURM_LOCALID", "1"},
                                                  {"SLURM_STEP_TASKS_PER_NODE", "2(x2)"}}));
  EXPECT_EQ(info.launcher, "srun");
  EXPECT_EQ(info.world_size, 4);
  EXPECT_EQ(info.rank, 3);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_world_size, 2);
}

TEST(DetectLaunch, TheBatchScriptItselfIsOneProcess) {
  // sbatch sets SLURM_NTASKS and SLURM_PROCID for the script, which is not a task of a step.
  const LaunchInfo info = detect_launch(
      fake_env({{"SLURM_NTASKS", "2"}, {"SLURM_PROCID", "0"}, {"SLURM_JOB_ID", "9"}}));
  EXPECT_EQ(info.world_size, 1);
  EXPECT_EQ(info.launcher, "none");
}

TEST(DetectLaunch, OpenMpiWinsOverSlurm) {
  // mpirun inside an allocation: the processes carry both sets of variables.
  const LaunchInfo info = detect_launch(fake_env({{"OMPI_COMM_WORLD_SIZE", "2"},
                                                  {"OMPI_COMM_WORLD_RANK", "1"},
                                                  {"SLURM_STEP_NUM_TASKS", "1"},
                                                  {"SLURM_PROCID", "0"}}));
  EXPECT_EQ(info.launcher, "mpirun");
  EXPECT_EQ(info.rank, 1);
}

TEST(DetectLaunch, BadValuesAreErrors) {
  EXPECT_THROW(detect_launch(fake_env({{"OMPI_COMM_WORLD_SIZE", "two"}})), DistError);
  EXPECT_THROW(
      detect_launch(fake_env({{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "2"}})),
      DistError);
}

TEST(ThreadsPerRank, SplitsTheNodesCores) {
  EXPECT_EQ(threads_per_rank(0, 1, 16, 16), 16);
  EXPECT_EQ(threads_per_rank(0, 4, 16, 16), 4);
  EXPECT_EQ(threads_per_rank(0, 4, 2, 2), 1);    // never zero
  EXPECT_EQ(threads_per_rank(3, 4, 16, 16), 3);  // an explicit request wins
  EXPECT_EQ(threads_per_rank(0, 4, 6, 16), 6);   // bound by the launcher: its CPUs are ours
  EXPECT_EQ(threads_per_rank(0, 4, 0, 16), 4);   // affinity unknown: share the node
}

TEST(ThreadsPerRank, ReadsThisThreadsAffinity) {
  if (std::thread::hardware_concurrency() < 2)
    SHOPCLIP_SKIP_OR_FAIL_IN_CI("needs 2 CPUs to bind to one");
  int bound = 0;
  std::thread worker([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);  // this thread only
    bound = threads_for_this_rank(0, 1);
  });
  worker.join();
  EXPECT_EQ(bound, 1);
}

TEST(SingleProcess, CollectivesAreIdentities) {
  SingleProcessCommunicator comm;
  auto t = torch::arange(6.0).view({3, 2});
  auto before = t.clone();
  comm.all_reduce(t, ReduceOp::kSum);
  EXPECT_TRUE(t.equal(before));
  auto gathered = comm.all_gather(t);
  EXPECT_TRUE(gathered.equal(t));
  EXPECT_FALSE(gathered.is_same(t));
  EXPECT_TRUE(comm.reduce_scatter(t, {3}).equal(t));
  EXPECT_THROW(comm.reduce_scatter(t, {2}), DistError);
  comm.broadcast(t, 0);
  EXPECT_THROW(comm.broadcast(t, 1), DistError);
  EXPECT_EQ(make_communicator(LaunchInfo{})->backend(), "single");
}

TEST(PartitionOffsets, PrefixSums) {
  EXPECT_EQ(partition_offsets({2, 0, 3}), (std::vector<std::int64_t>{0, 2, 2, 5}));
}

}  // namespace
}  // namespace shopclip::dist
